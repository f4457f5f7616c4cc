"""``OverloadMiddleware``: admission control as the outermost pure ASGI layer.

It must be outermost: a refusal is only cheap if nothing ran before it (no request id, no
metrics, no session lookup, no Redis, no database). The refusal itself is two ``send`` calls
of preallocated bytes: ``503`` ``application/problem+json`` with a jittered ``Retry-After``.
Never-shed requests (probes, ``/metrics``) pass straight through, uncounted, and queue behind
nothing.

Cheaper still, a server can ask before it builds the ASGI request at all: the middleware puts
its :meth:`OverloadMiddleware.door` into the lifespan state (``scope["state"]`` under
:data:`DOOR_STATE_KEY`), and ``fleetkit serve``'s protocol (:mod:`fleetkit.overload.server`)
writes the refusal's preallocated bytes straight to the socket: no ASGI task, no middleware.
The door takes the whole decision; a request it lets in carries it in ``scope`` under
:data:`DECISION_KEY` (a slot taken, or a place in the queue), so every request the door lets
in must reach this middleware: that is another reason it is outermost.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import orjson

from fleetkit.errors import ConfigError
from fleetkit.overload import metrics
from fleetkit.overload.admission import ADMITTED, REFUSED, AdmissionController, Priority
from fleetkit.overload.classify import RouteClassifier
from fleetkit.overload.sampler import LoopLagSampler
from fleetkit.types import ASGIApp, Receive, Scope, Send

__all__ = ["DECISION_KEY", "DOOR_STATE_KEY", "PROBLEM_TYPE", "OverloadMiddleware", "refusal_body"]

PROBLEM_TYPE = "overloaded"
#: Lifespan-state key of the door (``Callable[[Scope], bytes | None]``) a server may call.
DOOR_STATE_KEY = "fleetkit.overload.door"
#: Scope key of the door's decision for a request it let in, honoured by the middleware.
DECISION_KEY = "fleetkit.overload.decision"


def refusal_body() -> bytes:
    """The RFC 9457 body of every refusal (the same bytes each time: nothing to build)."""
    return orjson.dumps({
        "type": PROBLEM_TYPE, "title": "Service Unavailable", "status": 503,
        "detail": "this instance is overloaded; retry after the time given in Retry-After "
                  "(another instance may answer sooner)",
    })


#: A queued request: the future its waiter resolves, and the waiter (to discard it).
_Ticket = tuple["asyncio.Future[str | None]", Callable[[str | None], None]]


def _resolver(future: asyncio.Future[str | None]) -> Callable[[str | None], None]:
    def resolve(reason: str | None) -> None:
        if not future.done():
            future.set_result(reason)
    return resolve


class OverloadMiddleware:
    """Admit, queue or refuse each HTTP request by its class (see :mod:`.admission`).

    ``classifier``: request → :class:`Priority` (default: :class:`RouteClassifier` with the
    reference service's routes). ``retry_after``: refusals carry ``Retry-After`` drawn
    uniformly from 1..``retry_after`` seconds, so refused clients do not return in lockstep.
    ``sampler``: the loop-lag sampler; started on the first request if nobody started it.
    """

    def __init__(self, app: ASGIApp, *, controller: AdmissionController,
                 classifier: Callable[[Scope], Priority] | None = None,
                 sampler: LoopLagSampler | None = None, retry_after: int = 3) -> None:
        if retry_after < 1:
            raise ConfigError("retry_after must be >= 1")
        self.app = app
        self.controller = controller
        self.classifier = classifier or RouteClassifier()
        self.sampler = sampler or LoopLagSampler(controller)
        body = refusal_body()
        base = [(b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()), (b"cache-control", b"no-store"),
                (b"x-content-type-options", b"nosniff")]
        # One prebuilt message per Retry-After value: a refusal allocates nothing but dicts.
        self._starts = [[*base, (b"retry-after", str(s).encode())]
                        for s in range(1, retry_after + 1)]
        self._body = body
        # The same responses as whole HTTP/1.1 messages, for the door.
        self._raw = [b"HTTP/1.1 503 Service Unavailable\r\n"
                     + b"".join(b"%s: %s\r\n" % pair for pair in start) + b"\r\n" + body
                     for start in self._starts]
        self._random = random.Random().random
        # Counter children resolved once: .labels() costs as much as the rest of a refusal.
        self._refused = {(p, reason): metrics.REFUSED.labels(p.label, reason)
                         for p in Priority for reason in ("limit", "queue_timeout", "evicted")}
        if controller.on_window is None:
            controller.on_window = metrics.publish

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan" and "state" in scope:
                scope["state"][DOOR_STATE_KEY] = self.door
            await self.app(scope, receive, send)
            return
        decided: tuple[Priority, _Ticket | None] | None = scope.pop(DECISION_KEY, None)
        if decided is None:  # no door ran (another server, or no lifespan): decide here
            priority = self.classifier(scope)
            if priority is Priority.NEVER:
                await self.app(scope, receive, send)
                return
            verdict = self._admit(priority)
            if verdict == REFUSED:
                await self._refuse(send, priority, "limit")
                return
            ticket = None if verdict == ADMITTED else self._enqueue(priority)
        else:
            priority, ticket = decided
        controller = self.controller
        if ticket is not None:
            reason = await self._wait(ticket)
            if reason is not None:
                await self._refuse(send, priority, reason)
                return
        started = controller.clock()
        try:
            await self.app(scope, receive, send)
        finally:
            controller.release(started)

    def door(self, scope: Scope) -> bytes | None:
        """A whole 503 response to write instead of running the request, or None to run it.

        Called by the server with the request's scope as it starts the request's task (see the
        module docstring): the one admission decision for that request. A refusal is returned
        as bytes; an admitted or queued request carries the decision in its scope
        (:data:`DECISION_KEY`) to :meth:`__call__`, which serves it or waits. Deciding here,
        not in the task, matters for a burst: every request read in one loop iteration passes
        the door before any task runs, so a door that only refused what the queue could not
        hold would let the whole burst through, to be refused one task at a time.
        """
        if scope["type"] != "http":
            return None
        priority = self.classifier(scope)
        if priority is Priority.NEVER:
            return None
        verdict = self._admit(priority)
        if verdict == REFUSED:
            self._refused[priority, "limit"].inc()
            raw = self._raw
            return raw[int(self._random() * len(raw))]
        scope[DECISION_KEY] = (priority, None if verdict == ADMITTED else self._enqueue(priority))
        return None

    def _admit(self, priority: Priority) -> int:
        if not self.sampler.running:
            self.sampler.start()
        return self.controller.try_admit(priority)

    def _enqueue(self, priority: Priority) -> _Ticket:
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        waiter = _resolver(future)
        self.controller.enqueue(priority, waiter)
        return future, waiter

    async def _wait(self, ticket: _Ticket) -> str | None:
        future, waiter = ticket
        try:
            return await future
        except asyncio.CancelledError:
            # The server cancelled the request (client gone): give the slot or place back.
            if not self.controller.discard(waiter) and future.done() and not future.cancelled() \
                    and future.result() is None:
                self.controller.release(self.controller.clock())
            raise

    async def _refuse(self, send: Send, priority: Priority, reason: str) -> None:
        self._refused[priority, reason].inc()
        starts = self._starts
        headers = starts[int(self._random() * len(starts))]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": self._body})
