"""Audit events for the rate-limit middleware's 429s, aggregated so a flood is not an audit flood.

A :class:`DenialAudit` is the middleware's ``on_deny`` hook. Per (policy, key) and fixed interval
(``interval`` seconds, 60 by default) it records:

* the **first** denial as one ``ratelimit.deny`` event (``denied``, reason ``rate limit
  exceeded``) with the request's actor, client address, user agent, request id, method and path;
* the **rest** as one count: at the interval's end, one ``ratelimit.deny`` event per key that
  was denied again (reason ``repeated denials``, ``metadata.count``, ``metadata.first_event``
  linking the first one).

At most ``max_keys`` keys are tracked per interval; denials of further keys (a botnet of
addresses) are one ``ratelimit.deny`` event on ``ratelimit/*`` with their count per policy. So an
interval costs at most ``2 * max_keys + 1`` events per process, whatever the request rate.

The hot path is a dict lookup and an integer increment: no Redis command of its own. Events go
to :meth:`AuditLog.log_many` in a background task (batched with the app's other events, never
awaited by the 429); the interval ends on a timer that runs only while something was denied,
and :meth:`aclose` records the counts of the interval in progress.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from fleetkit.audit.events import AuditEvent
from fleetkit.observability import get_request_id
from fleetkit.ratelimit.decision import Decision
from fleetkit.ratelimit.keys import client_ip
from fleetkit.types import Scope

if TYPE_CHECKING:
    from fleetkit.audit import AuditLog

__all__ = ["DenialAudit"]

log = logging.getLogger("fleetkit.ratelimit")
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class _Entry:
    __slots__ = ("count", "first")

    def __init__(self, first: AuditEvent) -> None:
        self.first = first
        self.count = 0  # denials after the first, this interval


class DenialAudit:
    """``on_deny`` hook of :class:`~fleetkit.ratelimit.RateLimitMiddleware` writing to ``audit``.

    ``trusted_proxies``: the networks whose ``X-Forwarded-For`` is believed (the same as the
    limiter's key function), for the events' ``client_ip``.
    """

    def __init__(self, audit: AuditLog, *, trusted_proxies: Iterable[str] = (),
                 interval: float = 60.0, max_keys: int = 1000) -> None:
        self.audit = audit
        self.trusted = tuple(ipaddress.ip_network(c, strict=False) for c in trusted_proxies)
        self.interval = interval
        self.max_keys = max_keys
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._overflow: dict[str, int] = {}
        self._started = 0.0  # monotonic start of the interval in progress
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    # --- hot path ---------------------------------------------------------------------------

    def __call__(self, scope: Scope, denied: Sequence[tuple[str, str, Decision]]) -> None:
        """Count the denial of ``denied`` (policy, key, decision) for this request."""
        if self._closed:
            return
        if self._timer is None:  # first denial of an interval
            self._started = time.monotonic()
            loop = asyncio.get_running_loop()
            self._timer = loop.call_at(loop.time() + self.interval, self._roll)
        entries = self._entries
        first: list[AuditEvent] = []
        for policy, key, _ in denied:
            entry = entries.get((policy, key))
            if entry is not None:
                entry.count += 1
            elif len(entries) < self.max_keys:
                event = self._first_event(scope, policy, key)
                entries[(policy, key)] = _Entry(event)
                first.append(event)
            else:
                self._overflow[policy] = self._overflow.get(policy, 0) + 1
        if first:
            self._emit(first)

    def _first_event(self, scope: Scope, policy: str, key: str) -> AuditEvent:
        state = scope.get("state") or {}
        uid = state.get("user_id") if isinstance(state, dict) else None
        ua = next((v for k, v in scope.get("headers") or () if k == b"user-agent"), None)
        return AuditEvent(
            actor=str(uid) if uid else "anonymous", action="ratelimit.deny",
            resource=f"ratelimit/{policy}/{key}", outcome="denied",
            reason="rate limit exceeded", client_ip=client_ip(scope, self.trusted),
            user_agent=ua[:512].decode("latin-1") if ua else None,
            request_id=get_request_id(),
            metadata={"policy": policy, "method": scope.get("method"),
                      "path": str(scope.get("path", ""))[:256], "interval": self.interval})

    # --- interval end -----------------------------------------------------------------------

    def _summaries(self) -> list[AuditEvent]:
        """The counts of the interval in progress, as events; starts a new interval."""
        entries, overflow = self._entries, self._overflow
        self._entries, self._overflow = {}, {}
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        seconds = round(time.monotonic() - self._started, 3)
        out = [AuditEvent(actor=e.first.actor, action="ratelimit.deny",
                          resource=e.first.resource, outcome="denied",
                          reason="repeated denials",
                          metadata={"policy": policy, "count": e.count, "seconds": seconds,
                                    "first_event": e.first.event_id})
               for (policy, _), e in entries.items() if e.count]
        if overflow:
            out.append(AuditEvent(
                actor="anonymous", action="ratelimit.deny", resource="ratelimit/*",
                outcome="denied", reason="denials of keys over the audit's key cap",
                metadata={"count": sum(overflow.values()), "policies": overflow,
                          "max_keys": self.max_keys, "seconds": seconds}))
        return out

    def _roll(self) -> None:
        self._timer = None
        summaries = self._summaries()
        if summaries:
            self._emit(summaries)

    def _emit(self, events: list[AuditEvent]) -> None:
        task = asyncio.get_running_loop().create_task(self._log(events))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _log(self, events: list[AuditEvent]) -> None:
        try:
            await self.audit.log_many(events)
        except Exception:  # never a failed request; the producer spools what Redis refuses
            log.exception("rate-limit denial audit events could not be recorded")

    # --- lifecycle --------------------------------------------------------------------------

    async def flush(self) -> None:
        """End the interval now: record its counts, and wait for every event to be logged."""
        summaries = self._summaries()
        if summaries:
            self._emit(summaries)
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def aclose(self) -> None:
        """Record the interval in progress (before the audit log closes)."""
        await self.flush()
        self._closed = True
