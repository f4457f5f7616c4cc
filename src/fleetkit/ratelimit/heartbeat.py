"""The limiter's heartbeat: each instance announces itself and learns how many are live.

The count divides every limit in ``local`` fallback, so the fleet as a whole stays close to the
configured limit while each instance decides alone. Beats ride on decisions (one is started when
one is due, never from a timer), so an idle instance costs Redis nothing.
"""

from __future__ import annotations

import asyncio
import time

from fleetkit.ratelimit import metrics
from fleetkit.ratelimit.backend import RateLimitBackend
from fleetkit.tasks import cancel_and_wait

__all__ = ["Heartbeat"]


class Heartbeat:
    def __init__(self, backend: RateLimitBackend, *, key: str, instance_id: str,
                 interval: float, name: str) -> None:
        self.backend = backend
        self.key = key
        self.instance_id = instance_id
        self.interval = interval
        self.name = name
        #: Monotonic time of the next beat; the hot path compares against it directly.
        self.due = 0.0
        #: Live instances at the last beat (None before the first answer).
        self.live: int | None = None
        self.closed = False
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, now: float) -> None:
        """Start a beat in the background (called by a decision once ``now >= due``)."""
        self.due = now + self.interval
        if self.closed:
            return
        task = asyncio.get_running_loop().create_task(self.beat())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def beat(self) -> None:
        ttl_ms = max(1000, round(self.interval * 3000))
        try:
            live = await self.backend.announce(self.key, self.instance_id, ttl_ms, leave=False)
        except Exception:  # the decision path notices outages; keep the last known count
            return
        self.live = max(1, live)
        metrics.LIVE_INSTANCES.labels(self.name).set(self.live)

    async def now(self) -> int | None:
        """Announce now and return the live count (None if the backend fails)."""
        self.due = time.monotonic() + self.interval
        await self.beat()
        return self.live

    async def aclose(self, *, leave: bool) -> None:
        """Stop beating; with ``leave``, also leave the set (best effort, time-boxed)."""
        self.closed = True
        await cancel_and_wait(*self._tasks, ignore_errors=True)  # beat() keeps its own failures
        if not leave:
            return
        try:
            async with asyncio.timeout(0.5):
                await self.backend.announce(self.key, self.instance_id, 1, leave=True)
        except Exception:  # noqa: S110 — the entry expires with its TTL anyway
            pass
