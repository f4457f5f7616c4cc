"""The health registry: cached, single-flight, deadline-bounded and damped checks.

Checks run in the background every ``interval`` seconds, all in parallel, each under its own
timeout. A request never runs a check itself: it reads the cached result and, when a result is
due, starts its refresh (stale-while-revalidate). Each check has at most one run in flight and
runs at most once per ``interval``, so a burst of probes costs one run per check. The only
time a request waits is for a check that has never produced a result, and then at most
``deadline`` seconds: an endpoint answers in well under 100 ms even when a dependency hangs,
and flags the result it could not refresh as stale.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from fleetkit.errors import ConfigError
from fleetkit.health import metrics as m
from fleetkit.health.liveness import LivenessCallback, LoopLagMonitor
from fleetkit.health.status import ComponentStatus, Status
from fleetkit.tasks import cancel_and_wait

__all__ = ["CheckFunc", "CheckResult", "HealthRegistry", "HealthReport"]

log = logging.getLogger("fleetkit.health")

CheckFunc = Callable[[], Awaitable[ComponentStatus]]
Kind = Literal["health", "ready", "live"]
_RANK: dict[Status, int] = {"pass": 0, "warn": 1, "fail": 2}


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check as an endpoint reports it (``status`` is the damped status)."""

    name: str
    measurement: str
    component_type: str
    critical: bool
    status: Status
    result: ComponentStatus | None
    observed_at: float | None  # wall clock (time.time()) of ``result``
    stale: bool


@dataclass(frozen=True, slots=True)
class HealthReport:
    """What one endpoint answers: overall status and the checks behind it."""

    kind: Kind
    status: Status
    checks: tuple[CheckResult, ...]
    shutting_down: bool = False

    @property
    def http_status(self) -> int:
        return 503 if self.status == "fail" else 200

    @property
    def stale(self) -> bool:
        return any(c.stale for c in self.checks)


class _Check:
    """State of one registered check (only touched from the event loop)."""

    def __init__(self, name: str, func: CheckFunc, *, measurement: str, component_type: str | None,
                 critical: bool, timeout: float, fail_after: int, recover_after: int) -> None:
        self.name = name
        self.func = func
        self.measurement = measurement
        self.component_type = component_type
        self.critical = critical
        self.timeout = timeout
        self.fail_after = fail_after
        self.recover_after = recover_after
        self.result: ComponentStatus | None = None
        self.reported: Status | None = None
        self.observed_at: float | None = None
        self.observed_mono = 0.0
        self.fails = 0
        self.oks = 0
        self.started = -float("inf")
        self.task: asyncio.Task[None] | None = None

    def record(self, result: ComponentStatus) -> None:
        """Store a raw result and update the damped status (N fails to fail, M oks to recover)."""
        bad = result.status == "fail"
        self.fails, self.oks = (self.fails + 1, 0) if bad else (0, self.oks + 1)
        if self.reported is None:
            self.reported = result.status  # no history yet: the first result stands
        elif bad:
            if self.reported != "fail" and self.fails >= self.fail_after:
                self.reported = "fail"
        elif self.reported != "fail" or self.oks >= self.recover_after:
            self.reported = result.status  # pass <-> warn moves at once: warn is not a failure
        self.result = result
        self.observed_at = time.time()
        self.observed_mono = time.monotonic()
        m.CHECK_STATUS.labels(self.name, str(self.critical).lower()).set(
            m.STATUS_VALUE[self.reported])


class HealthRegistry:
    """Registered checks, their cached results, liveness and the shutdown flag.

    ``interval``: seconds between runs of each check; ``deadline``: the longest a request waits
    for a check that has no result yet; ``fail_after`` / ``recover_after``: consecutive raw
    failures before a check reports ``fail`` and successes before it recovers (flap damping).
    """

    def __init__(self, *, interval: float = 5.0, deadline: float = 0.08, fail_after: int = 2,
                 recover_after: int = 2, loop_lag_warn: float = 0.25, loop_lag_fail: float = 5.0
                 ) -> None:
        if interval <= 0 or deadline <= 0 or fail_after < 1 or recover_after < 1:
            raise ConfigError("interval and deadline must be > 0, thresholds >= 1")
        self.interval = interval
        self.deadline = deadline
        self.fail_after = fail_after
        self.recover_after = recover_after
        self.loop_lag = LoopLagMonitor(warn_after=loop_lag_warn, fail_after=loop_lag_fail)
        self._checks: dict[str, _Check] = {}
        self._liveness: dict[str, LivenessCallback] = {}
        self._shutting_down = False
        self._loop_task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> HealthRegistry:
        """From :class:`fleetkit.config.Settings` (``HEALTH_INTERVAL``, ``HEALTH_TIMEOUT``)."""
        options: dict[str, Any] = {"interval": settings.health_interval,
                                   "deadline": settings.health_timeout}
        return cls(**{**options, **overrides})

    # --- registration -------------------------------------------------------------------
    def add(self, name: str, check: CheckFunc, *, critical: bool, timeout: float = 1.0,
            component_type: str | None = None, measurement: str = "status",
            fail_after: int | None = None, recover_after: int | None = None) -> None:
        """Register ``check`` (an async callable returning :class:`ComponentStatus`)."""
        if name in self._checks:
            raise ConfigError(f"health check {name!r} is already registered")
        if ":" in name or ":" in measurement:
            raise ConfigError("check and measurement names must not contain ':'")
        self._checks[name] = _Check(
            name, check, measurement=measurement, component_type=component_type,
            critical=critical, timeout=timeout,
            fail_after=fail_after or self.fail_after,
            recover_after=recover_after or self.recover_after)

    def add_liveness(self, name: str, callback: LivenessCallback) -> None:
        """Register a cheap sync liveness test of a worker process (e.g. ``proc.is_alive``)."""
        self._liveness[name] = callback

    @property
    def names(self) -> list[str]:
        return list(self._checks)

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        """Start the loop-lag ticker and the background refresh loop (first run at once)."""
        self.loop_lag.start()
        if self._loop_task is None:
            self._loop_task = asyncio.get_running_loop().create_task(
                self._refresh_loop(), name="health-refresh")

    async def aclose(self) -> None:
        tasks = [c.task for c in self._checks.values() if c.task is not None]
        if self._loop_task is not None:
            tasks.append(self._loop_task)
            self._loop_task = None
        await cancel_and_wait(*tasks)
        await self.loop_lag.aclose()

    def begin_shutdown(self) -> None:
        """Readiness answers 503 from now on, so the load balancer drains this instance."""
        if not self._shutting_down:
            log.info("shutdown started: /health/ready now answers 503")
        self._shutting_down = True
        m.READY.set(0)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    async def _refresh_loop(self) -> None:
        # Ticking finer than the interval keeps each check's period close to ``interval``
        # while refresh_due() still guarantees runs are never closer than ``interval``.
        tick = min(self.interval / 10, 1.0)
        while True:
            self.refresh_due()
            await asyncio.sleep(tick)

    # --- running checks -----------------------------------------------------------------
    def refresh_due(self) -> None:
        """Start a run of every check that is idle and last started ``interval`` ago or more."""
        now = time.monotonic()
        for check in self._checks.values():
            if check.task is None and now - check.started >= self.interval:
                check.started = now
                check.task = asyncio.get_running_loop().create_task(
                    self._run(check), name=f"health:{check.name}")

    async def run_all(self) -> None:
        """Run every idle check now (ignoring the interval) and wait for all of them."""
        for check in self._checks.values():
            if check.task is None:
                check.started = time.monotonic()
                check.task = asyncio.get_running_loop().create_task(self._run(check))
        tasks = [c.task for c in self._checks.values() if c.task is not None]
        if tasks:
            await asyncio.wait(tasks)

    async def _run(self, check: _Check) -> None:
        start = time.perf_counter()
        try:
            try:
                async with asyncio.timeout(check.timeout):
                    result = await check.func()
            except TimeoutError:
                result = ComponentStatus("fail", output=f"timed out after {check.timeout:g}s")
            except Exception as exc:  # a check that raises reports fail instead
                result = ComponentStatus("fail", output=f"{type(exc).__name__}: {exc}")
            if not isinstance(result, ComponentStatus):
                result = ComponentStatus("fail", output=f"check returned {type(result).__name__}")
            elapsed = time.perf_counter() - start
            m.CHECK_SECONDS.labels(check.name).observe(elapsed)
            m.CHECK_RUNS.labels(check.name, result.status).inc()
            previous = check.reported
            check.record(result)
            if check.reported != previous and previous is not None:
                log.warning("health check %s: %s -> %s (%s)", check.name, previous,
                            check.reported, result.output or result.status)
        finally:
            check.task = None

    # --- reading ------------------------------------------------------------------------
    async def ready(self) -> HealthReport:
        """Critical checks only, 503 while shutting down."""
        report = await self._report("ready", critical_only=True)
        m.READY.set(1 if report.status != "fail" else 0)
        return report

    async def health(self) -> HealthReport:
        """Every check; a failing non-critical check makes the whole ``warn``."""
        return await self._report("health", critical_only=False)

    def live(self) -> HealthReport:
        """The process only: event loop lag and worker-process callbacks, never a dependency."""
        now = time.time()
        results = [("event-loop", "lag", self.loop_lag.status())]
        for name, callback in self._liveness.items():
            try:
                value = callback()
            except Exception as exc:  # a broken callback means we cannot vouch for the worker
                value = ComponentStatus("fail", "process", output=f"{type(exc).__name__}: {exc}")
            if not isinstance(value, ComponentStatus):
                value = ComponentStatus("pass" if value else "fail", "process",
                                        output=None if value else "worker process not alive")
            results.append((name, "alive", value))
        checks = tuple(CheckResult(n, meas, r.component_type, True, r.status, r, now, False)
                       for n, meas, r in results)
        return HealthReport("live", _worst(c.status for c in checks), checks)

    async def _report(self, kind: Kind, *, critical_only: bool) -> HealthReport:
        self.refresh_due()
        chosen = [c for c in self._checks.values() if c.critical or not critical_only]
        first_runs = [c.task for c in chosen if c.result is None and c.task is not None]
        if first_runs:
            # Only a check without any result is waited for, and only up to the deadline.
            await asyncio.wait(first_runs, timeout=self.deadline)
        now = time.monotonic()
        checks = tuple(self._view(c, now) for c in chosen)
        status = _worst(c.status if c.critical else _soften(c.status) for c in checks)
        if self._shutting_down:
            status = "fail"
        if any(c.stale for c in checks):
            m.STALE_RESPONSES.labels(kind).inc()
        return HealthReport(kind, status, checks, self._shutting_down)

    def _view(self, check: _Check, now: float) -> CheckResult:
        # Stale: a refresh has been running past the deadline (hanging dependency), or nothing
        # refreshed the result for two intervals (no background loop and no traffic).
        running_late = check.task is not None and now - check.started > self.deadline
        stale = running_late or (check.result is not None
                                 and now - check.observed_mono > 2 * self.interval)
        result = check.result
        if result is None:
            status: Status = "fail"
            result = ComponentStatus("fail", output="no result yet: first run still in progress")
            stale = True
        else:
            status = check.reported or result.status
        return CheckResult(check.name, check.measurement,
                           check.component_type or result.component_type, check.critical,
                           status, result, check.observed_at, stale)


def _soften(status: Status) -> Status:
    """A failing non-critical dependency degrades the service, it does not fail it."""
    return "warn" if status == "fail" else status


def _worst(statuses: Iterable[Status]) -> Status:
    worst: Status = "pass"
    for status in statuses:
        if _RANK[status] > _RANK[worst]:
            worst = status
    return worst
