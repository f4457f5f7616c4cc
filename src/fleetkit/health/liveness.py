"""Process liveness: event loop lag (a ticker) and registered worker-process callbacks.

Liveness never looks at an external dependency: a Redis or PostgreSQL outage must not make an
orchestrator restart every instance at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from fleetkit.health.metrics import LOOP_LAG
from fleetkit.health.status import ComponentStatus, Status
from fleetkit.tasks import cancel_and_wait

__all__ = ["LivenessCallback", "LoopLagMonitor"]

#: A cheap synchronous test of a worker process, e.g. ``process.is_alive``.
LivenessCallback = Callable[[], "bool | ComponentStatus"]


class LoopLagMonitor:
    """Sleeps ``tick`` seconds in a loop and records how late each wake-up is."""

    def __init__(self, *, tick: float = 0.1, warn_after: float = 0.25, fail_after: float = 5.0
                 ) -> None:
        self.tick = tick
        self.warn_after = warn_after
        self.fail_after = fail_after
        self.lag: float | None = None
        self._last_tick = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag")

    async def aclose(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            start = time.monotonic()
            await asyncio.sleep(self.tick)
            now = time.monotonic()
            self.lag = max(0.0, now - start - self.tick)
            self._last_tick = now
            LOOP_LAG.set(self.lag)

    def status(self) -> ComponentStatus:
        if self._task is None or self.lag is None:
            return ComponentStatus("pass", "system", output="lag not measured yet")
        if self._task.done():
            return ComponentStatus("fail", "system", output="loop lag ticker stopped")
        # A tick overdue right now counts too (the loop was blocked until this request ran).
        lag = max(self.lag, time.monotonic() - self._last_tick - self.tick)
        status: Status = ("fail" if lag >= self.fail_after
                          else "warn" if lag >= self.warn_after else "pass")
        return ComponentStatus(status, "system", observed_value=round(lag * 1000, 3),
                               observed_unit="ms")
