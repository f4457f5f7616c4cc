"""The event-loop lag sampler: the signal of the queueing that happens before the app runs.

On a single-threaded asyncio server a request's bytes sit in the socket and its task in the
ready queue until the loop gets to them: that wait is invisible to any middleware, and it is
where the time goes under overload. A task sleeping ``interval`` seconds wakes up late by about
one loop iteration, which is the wait every new request has just had. It also drives the
controller's clock-based duties (queue deadlines, window ends) when no request does.
"""

from __future__ import annotations

import asyncio
import time

from fleetkit.errors import ConfigError
from fleetkit.overload.admission import AdmissionController
from fleetkit.tasks import cancel_and_wait

__all__ = ["LoopLagSampler"]


class LoopLagSampler:
    """Feeds ``controller.tick(lag)`` every ``interval`` seconds (10 ms: ~0.2% of a core)."""

    def __init__(self, controller: AdmissionController, *, interval: float = 0.01) -> None:
        if not interval > 0:
            raise ConfigError("interval must be > 0")
        self.controller = controller
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start on the running loop (idempotent)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="overload-lag")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _run(self) -> None:
        # time.monotonic, not loop.time(): uvloop's loop time is cached once per iteration,
        # which would hide exactly the ready-queue wait this measures.
        clock = time.monotonic
        interval = self.interval
        tick = self.controller.tick
        while True:
            start = clock()
            await asyncio.sleep(interval)
            tick(max(0.0, clock() - start - interval), interval=interval)
