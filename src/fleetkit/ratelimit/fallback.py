"""The limiter's fallback state machine: ``redis`` <-> ``fallback`` (a failure_mode).

A failed call switches to fallback at once; while there, one request in a while (exponential
backoff from ``probe_interval`` to ``probe_max_interval``) probes Redis and the others decide
locally. The first probe that succeeds switches back. Each switch is a log line, a metric and
the limiter's health (``warn`` while in fallback).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from fleetkit.ratelimit import metrics

__all__ = ["BACKENDS", "Fallback"]

log = logging.getLogger("fleetkit.ratelimit")
#: Values of the ``fleetkit_ratelimit_backend`` gauge's backend label.
BACKENDS = ("redis", "memory", "local", "open", "closed")


def set_backend_gauge(name: str, backend: str) -> None:
    for b in BACKENDS:
        metrics.BACKEND.labels(name, b).set(1 if b == backend else 0)


class Fallback:
    """Whether the limiter is in fallback, since when, and when to probe next."""

    def __init__(self, *, name: str, mode: str, probe_interval: float,
                 probe_max_interval: float, on_change: Callable[[bool], None]) -> None:
        self.name = name
        self.mode = mode
        self.active = False
        self.since = 0.0
        self.last_error: str | None = None
        self.probe_min = probe_interval
        self.probe_max = probe_max_interval
        self._delay = probe_interval
        self.next_probe = 0.0
        self._on_change = on_change

    def failed(self, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self.active:
            return
        self.active = True
        self.since = now = time.monotonic()
        self._delay = self.probe_min
        self.next_probe = now + self._delay
        log.warning("rate limiter %r: Redis failed (%s); deciding %s until it answers",
                    self.name, self.last_error, self.mode)
        metrics.TRANSITIONS.labels(self.name, "fallback").inc()
        set_backend_gauge(self.name, self.mode)
        self._on_change(True)

    def probe_due(self) -> bool:
        """True for the request that probes Redis now; the others keep deciding locally."""
        now = time.monotonic()
        if now < self.next_probe:
            return False
        self._delay = min(self._delay * 2, self.probe_max)
        self.next_probe = now + self._delay
        return True

    def recovered(self) -> None:
        self.active = False
        log.warning("rate limiter %r: Redis answers again after %.1fs; back to Redis",
                    self.name, time.monotonic() - self.since)
        metrics.TRANSITIONS.labels(self.name, "redis").inc()
        set_backend_gauge(self.name, "redis")
        self._on_change(False)

    def retry_after(self) -> float:
        """What a ``closed`` denial tells the client: until the next probe."""
        return max(self.next_probe - time.monotonic(), self.probe_min)
