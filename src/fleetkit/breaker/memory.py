"""In-memory backend: ``breaker.lua`` in Python, for embedded mode and local-only fallback.

Same transitions, same generation and version rules, same half-open leases; the clock is the
process's monotonic clock instead of Redis ``TIME``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

from fleetkit.breaker.backend import AdminAction, TrialVerdict
from fleetkit.breaker.rules import BreakerConfig
from fleetkit.breaker.state import Batch, Snapshot, State
from fleetkit.deprecation import renamed
from fleetkit.errors import ConfigError

__all__ = ["MemoryBreakerBackend"]


class MemoryBreakerBackend:
    """Shared state of one breaker inside one process (breakers given the same instance act
    as one fleet). ``seed`` starts from a known state: the local fallback starts from the
    fleet-wide state the instance last saw. Use it from one event loop."""

    kind = "memory"

    def __init__(self, config: BreakerConfig, *, seed: Snapshot | None = None) -> None:
        if not isinstance(config, BreakerConfig):
            raise ConfigError(f"config must be a BreakerConfig, not {type(config).__name__}")
        self._c = config
        self._subscribers: list[Callable[[Snapshot], None]] = []
        now = self._now()
        self._state: State = seed.state if seed else "closed"
        self._version = seed.version if seed else 0
        self._gen = seed.gen if seed else 0
        self._until = now + int(seed.remaining * 1000) if seed else 0
        self._epoch = seed.epoch if seed else uuid.uuid4().hex
        self._opens = 0
        self._consec = 0
        self._trials_ok = 0
        self._buckets: dict[int, list[int]] = {}  # bucket -> [calls, failures, slow]
        self._leases: dict[str, int] = {}  # lease id -> expiry ms

    @staticmethod
    def _now() -> int:
        return int(time.monotonic() * 1000)

    async def watch(self, callback: Callable[[Snapshot], None], *,
                    on_subscribed: Callable[[], None], retry: float) -> None:
        """The in-process pub/sub: ``callback`` runs inside every change, until cancelled."""
        self._subscribers.append(callback)
        try:
            on_subscribed()
            await asyncio.Event().wait()  # a subscription in memory is never lost
        finally:
            self._subscribers.remove(callback)

    # --- transitions (mirror breaker.lua) -------------------------------------------------
    def _snapshot(self, now: int, flag: bool) -> Snapshot:
        return Snapshot(self._state, self._version, self._gen, max(0, self._until - now) / 1000,
                        self._epoch, flag)

    def _save(self, now: int) -> None:
        self._version += 1
        snap = self._snapshot(now, False)
        for callback in list(self._subscribers):
            callback(snap)

    def _open(self, now: int) -> None:
        self._opens += 1
        c = self._c
        wait = min(c.max_wait_open_seconds,
                   c.wait_open_seconds * c.backoff_multiplier ** (self._opens - 1))
        self._state, self._until = "open", now + int(wait * 1000)
        self._consec = self._trials_ok = 0
        self._buckets.clear()
        self._leases.clear()
        self._save(now)

    def _half_open(self, now: int) -> None:
        self._state, self._gen, self._trials_ok = "half_open", self._gen + 1, 0
        self._leases.clear()
        self._save(now)

    def _closed(self, now: int, *, reset_backoff: bool) -> None:
        self._state, self._gen, self._consec, self._trials_ok, self._until = (
            "closed", self._gen + 1, 0, 0, 0)
        if reset_backoff:
            self._opens = 0
        self._buckets.clear()
        self._leases.clear()
        self._save(now)

    def _begin(self) -> tuple[int, int]:
        now = self._now()
        version = self._version
        if self._state == "open" and now >= self._until:
            self._half_open(now)
        return now, version

    def _window(self, current: int) -> tuple[int, int, int]:
        oldest = current - int(self._c.window_seconds * 1000 / self._c.bucket_ms) + 1
        for idx in [i for i in self._buckets if i < oldest]:
            del self._buckets[idx]
        calls = sum(b[0] for b in self._buckets.values())
        fails = sum(b[1] for b in self._buckets.values())
        slow = sum(b[2] for b in self._buckets.values())
        return calls, fails, slow

    # --- operations -----------------------------------------------------------------------
    async def flush(self, batch: Batch) -> Snapshot:
        now, before = self._begin()
        c = self._c
        if self._state == "closed" and batch.gen == self._gen and batch.calls > 0:
            current = now // c.bucket_ms
            bucket = self._buckets.setdefault(current, [0, 0, 0])
            bucket[0] += batch.calls
            bucket[1] += batch.failures
            bucket[2] += batch.slow
            self._consec = batch.trailing if batch.had_success else self._consec + batch.failures
            calls, fails, slow = self._window(current)
            slow_rule = c.slow_call_seconds is not None
            if (c.consecutive_failures and self._consec >= c.consecutive_failures) or (
                calls >= c.minimum_calls
                and (fails / calls >= c.failure_rate_threshold
                     or (slow_rule and slow / calls >= c.slow_call_rate_threshold))
            ):
                self._open(now)
        return self._snapshot(now, self._version != before)

    async def acquire(self, lease_id: str) -> Snapshot:
        now, _ = self._begin()
        admitted = False
        if self._state == "half_open":
            for lease in [k for k, exp in self._leases.items() if exp <= now]:
                del self._leases[lease]
            if len(self._leases) + self._trials_ok < self._c.half_open_permits:
                self._leases[lease_id] = now + int(self._c.lease_seconds * 1000)
                admitted = True
        return self._snapshot(now, admitted)

    async def release(self, lease_id: str, gen: int, verdict: TrialVerdict) -> Snapshot:
        now, _ = self._begin()
        held = self._leases.pop(lease_id, None) is not None
        if self._state != "half_open" or gen != self._gen or not held:
            return self._snapshot(now, True)
        if verdict == "failure":
            self._open(now)
        elif verdict == "success":
            self._trials_ok += 1
            if self._trials_ok >= self._c.half_open_permits:
                self._closed(now, reset_backoff=True)
        return self._snapshot(now, False)

    async def admin(self, action: AdminAction) -> Snapshot:
        now, before = self._begin()
        if action in ("force_open", "disable"):
            self._state = "forced_open" if action == "force_open" else "disabled"
            self._until = 0
            self._buckets.clear()
            self._leases.clear()
            self._save(now)
        else:
            self._closed(now, reset_backoff=action == "reset")
        return self._snapshot(now, self._version != before)


# The old name, also used by fleetkit.ratelimit: kept for one release.
__getattr__ = renamed(__name__, MemoryBackend=(MemoryBreakerBackend, "MemoryBreakerBackend"))
