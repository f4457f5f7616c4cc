"""Flip readiness to 503 the moment SIGTERM arrives, before the server closes its listener.

Uvicorn closes its listening socket as soon as it handles SIGTERM and runs the lifespan shutdown
only afterwards, too late for a load balancer to notice. :func:`drain_on_signal` wraps whatever
handler the server installed: the wrapper marks the registry as shutting down at once and hands
the signal to the server's handler ``delay`` seconds later, while the listener still accepts
and /health/ready answers 503. Kubernetes does the same with a ``preStop`` sleep; this covers
servers without one (Docker, systemd). A second signal is forwarded at once.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from types import FrameType

from fleetkit.health.registry import HealthRegistry
from fleetkit.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CloseWhileDraining", "drain_on_signal"]

_Handler = Callable[[int, FrameType | None], object]


def drain_on_signal(
    registry: HealthRegistry, *, delay: float,
    signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT),
) -> Callable[[], None]:
    """Install the wrappers (call from the event loop thread, e.g. lifespan startup).

    Returns a function restoring the previous handlers.
    """
    loop = asyncio.get_running_loop()
    previous: dict[int, object] = {}

    def forward(signum: int, frame: FrameType | None) -> None:
        handler = previous.get(signum)
        if callable(handler):
            handler(signum, frame)
        elif handler == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if registry.shutting_down:
            forward(signum, frame)
            return
        registry.begin_shutdown()
        # Signal handlers run between bytecodes of the loop thread: schedule, do not await.
        loop.call_soon_threadsafe(loop.call_later, delay, forward, signum, None)

    for sig in signals:
        previous[sig] = signal.signal(sig, on_signal)

    def restore() -> None:
        for sig, handler in previous.items():
            if signal.getsignal(sig) is on_signal:
                signal.signal(sig, handler)  # type: ignore[arg-type]

    return restore


class CloseWhileDraining:
    """While ``registry`` is shutting down, every HTTP/1.x response says ``Connection: close``.

    A balancer then drops each connection to a draining instance after its response instead of
    keeping it for the next request, so when the listener closes no idle connection is left
    that a request could race into (Nginx does not re-send a POST that met a closed connection),
    and the balancer's next request opens a connection that is answered or refused before
    anything was sent. Outermost, so it covers answers of every layer (refusals included).

    Decided when the response starts, not when the request arrived: a request already in flight
    at SIGTERM (a slow login) closes its connection too. Kept alive, that connection could sit
    idle in the balancer's pool up to its idle timeout, past the listener's close if the request
    ended late in ``SHUTDOWN_DELAY``. Costs one wrapped ``send`` per response while not draining.
    """

    def __init__(self, app: ASGIApp, *, registry: HealthRegistry) -> None:
        self.app = app
        self.registry = registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("http_version", "1.1") not in ("1.0", "1.1"):
            await self.app(scope, receive, send)
            return
        registry = self.registry

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start" and registry.shutting_down:
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower()
                           != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, closing)
