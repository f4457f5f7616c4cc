"""The admission algorithm: an adaptive concurrency limit, a CoDel queue, priorities.

No I/O and no asyncio: the clock is injected (``clock=``), waiters are plain callables, so the
whole behaviour runs on a fake clock in tests. The ASGI layer (:mod:`fleetkit.overload.asgi`)
and the loop-lag sampler (:mod:`fleetkit.overload.sampler`) feed it.

How it decides (docs/overload.md has the reasons):

* **Limit** (AIMD, like Netflix concurrency-limits' Vegas/Gradient and Envoy's adaptive
  concurrency filter): every ``window`` seconds the controller compares the window's signals with
  their targets: the mean **event-loop lag** (on a single-threaded server that *is* the time a
  request waits before any middleware runs) against ``target_delay``, and, when the limit was
  binding, the mean **latency** of admitted requests against ``target_latency``. Lag that is
  there even with no more than ``min_limit`` requests in flight is external (CPU steal,
  throttling) and raises the lag target to 1.5x it, decaying, so it cannot pin the limit at its
  floor while the instance could serve more; so does lag that three cuts in a row did not lower
  (the loop's own cost of refusing a flood), up to 2.5x ``target_delay``. Over target:
  the limit drops to ``min(limit, peak in-flight) * max(0.5, target / observed)`` (at most
  halved, at least 10% off). Under target with the limit in use: it grows by ``sqrt(limit)``.
  Never below ``min_limit`` or above ``max_limit``.
* **Queue** (CoDel + adaptive LIFO, as Facebook runs its server queues): a request over the limit
  waits in a bounded queue, highest priority first. While the queue keeps emptying it is FIFO
  with a ``queue_timeout`` deadline; once it has not been empty for ``queue_timeout`` (a standing
  queue: offered load above capacity) it turns LIFO and the deadline shrinks to
  ``target_delay``, so the requests served are the fresh ones and the rest are refused early;
  it then holds only what the last window's completions drain within ``target_delay``.
* **Priorities**: critical requests may exceed the limit by ``critical_reserve`` (a share of it)
  and are dequeued first; a full queue evicts its lowest-priority waiter for a more important
  arrival; sheddable requests are refused at once, never queued, while overloaded.
"""

from __future__ import annotations

import enum
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from fleetkit.errors import ConfigError
from fleetkit.health.status import ComponentStatus

__all__ = ["ADMITTED", "QUEUE", "REFUSED", "AdmissionController", "Priority", "Waiter"]


class Priority(enum.IntEnum):
    """Request classes; a lower value is more important."""

    NEVER = 0  # never shed: probes, /metrics (not counted against the limit)
    CRITICAL = 1  # login, logout
    NORMAL = 2
    SHEDDABLE = 3

    @property
    def label(self) -> str:
        return self.name.lower()


#: Outcomes of :meth:`AdmissionController.try_admit`.
ADMITTED = 0
QUEUE = 1
REFUSED = 2

#: Called once with ``None`` (admitted: the caller now holds a slot) or a refusal reason.
Waiter = Callable[[str | None], None]

_QUEUED = (Priority.CRITICAL, Priority.NORMAL, Priority.SHEDDABLE)
#: Per window (100 ms): the external-lag floor halves in about 3.5 s once it is not renewed.
_FLOOR_DECAY = 0.98
#: Consecutive cuts after which a lag that has not fallen is judged not the admitted requests'.
_FUTILE_CUTS = 3
#: The most such a judgement may raise the lag tolerated, in multiples of ``target_delay``.
_FUTILE_CAP = 2.5


class AdmissionController:
    """Adaptive concurrency limit with a priority CoDel queue for one event loop (one process).

    ``try_admit(priority)`` → ``ADMITTED`` (call :meth:`release` when done), ``REFUSED``, or
    ``QUEUE`` (call :meth:`enqueue` with a waiter, which is later called exactly once).
    """

    def __init__(self, *, min_limit: int = 8, max_limit: int = 1024,
                 initial_limit: float | None = None, target_delay: float = 0.02,
                 target_latency: float = 0.25, queue_timeout: float = 0.05,
                 window: float = 0.1, critical_reserve: float = 0.1,
                 shed_memory: float = 5.0, clock: Callable[[], float] = time.monotonic,
                 on_window: Callable[[AdmissionController], Any] | None = None) -> None:
        if min_limit < 1 or max_limit < min_limit:
            raise ConfigError(f"need 1 <= min_limit <= max_limit (got {min_limit}, {max_limit})")
        for name, value in (("target_delay", target_delay), ("target_latency", target_latency),
                            ("window", window)):
            if not value > 0:
                raise ConfigError(f"{name} must be > 0 (got {value!r})")
        if queue_timeout < 0 or critical_reserve < 0 or shed_memory <= 0:
            raise ConfigError("queue_timeout and critical_reserve must be >= 0, shed_memory > 0")
        self.min_limit = min_limit
        self.max_limit = max_limit
        self.target_delay = target_delay
        self.target_latency = target_latency
        self.queue_timeout = queue_timeout
        self.window = window
        self.critical_reserve = critical_reserve
        self.shed_memory = shed_memory
        self.clock = clock
        self.on_window = on_window
        start = 32.0 if initial_limit is None else float(initial_limit)
        self.limit = float(min(max(start, min_limit), max_limit))
        self._standing_cap = max_limit
        self._set_caps()
        self.in_flight = 0
        #: Mean event-loop lag and mean queue wait of the last window (what requests waited).
        self.loop_lag = 0.0
        self.queue_delay = 0.0
        self.overloaded = False  # the last window was over target
        self.refused: dict[Priority, int] = dict.fromkeys(Priority, 0)
        self.last_refusal = -math.inf
        self._queues: dict[Priority, deque[tuple[float, Waiter]]] = {p: deque() for p in _QUEUED}
        self._queued = 0
        self._nonempty_since: float | None = None  # when the queue last became non-empty
        now = clock()
        self._window_end = now + window
        self._peak = 0
        self._blocked = False  # someone was queued or refused in this window
        self._lag_sum = 0.0
        self._lag_n = 0
        # Lag seen with few requests in flight is not ours to fix (CPU steal, CFS throttling,
        # a noisy neighbour): shedding more would not lower it. Remembered, decaying.
        self._lag_floor = 0.0
        # (lag, peak in flight) of the consecutive windows that cut the limit, newest last.
        self._cuts: deque[tuple[float, int]] = deque(maxlen=_FUTILE_CUTS)
        self._last_tick: float | None = None
        self._tick_interval = 0.0
        self._lat_sum = 0.0
        self._lat_n = 0
        self._wait_sum = 0.0
        self._wait_n = 0

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> AdmissionController:
        """From :class:`fleetkit.config.Settings` (the ``OVERLOAD_*`` settings)."""
        options: dict[str, Any] = {
            "min_limit": settings.overload_min_limit, "max_limit": settings.overload_max_limit,
            "target_delay": settings.overload_target_delay,
            "target_latency": settings.overload_target_latency,
            "queue_timeout": settings.overload_queue_timeout,
            # Remember a refusal at least until the next health check has run.
            "shed_memory": max(5.0, settings.health_interval),
        }
        return cls(**{**options, **overrides})

    # --- admission ----------------------------------------------------------------------
    def _set_caps(self) -> None:
        # Derived from the limit, which only changes once per window: not worked out per call.
        critical = self.limit + max(1.0, self.limit * self.critical_reserve)
        self._caps = {Priority.CRITICAL: critical, Priority.NORMAL: self.limit,
                      Priority.SHEDDABLE: self.limit}
        self._queue_cap = max(1, int(self.limit))
        self._standing_cap = min(self._queue_cap, self._standing_cap)

    def _cap(self, priority: Priority) -> float:
        return self._caps[priority]

    def try_admit(self, priority: Priority) -> int:
        """Admit now, refuse now, or tell the caller to queue (see the class docstring)."""
        now = self.clock()
        if now >= self._window_end:
            self._roll(now)
        if priority is Priority.NEVER:
            return ADMITTED
        in_flight = self.in_flight
        if in_flight < self._caps[priority]:
            self.in_flight = in_flight = in_flight + 1
            if in_flight > self._peak:
                self._peak = in_flight
            return ADMITTED
        # The refusal path: as little work as possible, it runs twice per served request at 3x.
        self._blocked = True
        if self._hopeless(priority, now) and (
                priority is Priority.SHEDDABLE or not self._evict_below(priority, now)):
            self.refused[priority] += 1
            self.last_refusal = now
            return REFUSED
        return QUEUE

    def enqueue(self, priority: Priority, waiter: Waiter) -> None:
        """Queue a request :meth:`try_admit` answered ``QUEUE`` for; ``waiter`` is called later."""
        now = self.clock()
        if self._queued == 0:
            self._nonempty_since = now
        self._queues[priority].append((now, waiter))
        self._queued += 1

    def discard(self, waiter: Waiter) -> bool:
        """Forget a waiter whose request went away (client gone); False if it was not queued."""
        for dq in self._queues.values():
            for entry in dq:
                if entry[1] is waiter:
                    dq.remove(entry)
                    self._queued -= 1
                    if self._queued == 0:
                        self._nonempty_since = None
                    return True
        return False

    def release(self, started: float) -> None:
        """An admitted request finished; ``started`` is the clock value when it was admitted."""
        now = self.clock()
        self.in_flight -= 1
        self._lat_sum += now - started
        self._lat_n += 1
        if self._queued:
            self._drain(now)
        if now >= self._window_end:
            self._roll(now)

    def tick(self, lag: float, *, interval: float) -> None:
        """The loop-lag sampler woke up ``lag`` seconds late (it sleeps ``interval``)."""
        now = self.clock()
        self._lag_sum += lag
        self._lag_n += 1
        self._last_tick = now
        self._tick_interval = interval
        if self._queued:
            self._expire(now)
        if now >= self._window_end:
            self._roll(now)

    # --- state --------------------------------------------------------------------------
    @property
    def queued(self) -> int:
        return self._queued

    def shedding(self, within: float | None = None) -> bool:
        """True if a request was refused in the last ``within`` (default ``shed_memory``) s."""
        return self.clock() - self.last_refusal <= (within or self.shed_memory)

    async def health(self) -> ComponentStatus:
        """``warn`` while shedding (never ``fail``: a busy instance must stay in rotation)."""
        details = {"limit": round(self.limit, 1), "inFlight": self.in_flight,
                   "queued": self._queued, "loopLagMs": round(self.loop_lag * 1000, 2),
                   "refused": {p.label: n for p, n in self.refused.items() if n}}
        if self.shedding():
            return ComponentStatus("warn", "component", observed_value=round(self.limit, 1),
                                   observed_unit="requests", details=details,
                                   output="overloaded: refusing requests (503) by priority")
        return ComponentStatus("pass", "component", observed_value=round(self.limit, 1),
                               observed_unit="requests", details=details)

    # --- internals ----------------------------------------------------------------------
    def _count_refusal(self, priority: Priority, now: float) -> None:
        self.refused[priority] += 1
        self.last_refusal = now

    def _standing(self, now: float) -> bool:
        # CoDel: a queue that has not been empty for a whole interval is a standing queue.
        since = self._nonempty_since
        return since is not None and now - since > self.queue_timeout

    def _hopeless(self, priority: Priority, now: float) -> bool:
        # No slot free: a full queue, or a sheddable request while overloaded (it never queues).
        # A standing queue holds only what the completions free within target_delay: anyone
        # queued beyond that would wait out the deadline and be refused late, after costing an
        # ASGI task, where refusing now costs one write and no wait.
        standing = self._standing(now)
        cap = self._standing_cap if standing else self._queue_cap
        return self._queued >= cap or (priority is Priority.SHEDDABLE and (
            self.overloaded or standing))

    def _has_below(self, priority: Priority) -> bool:
        return any(self._queues[p] for p in _QUEUED if p > priority)

    def _evict_below(self, priority: Priority, now: float) -> bool:
        """Refuse the oldest waiter less important than ``priority``; False if none."""
        for p in reversed(_QUEUED):
            if p <= priority:
                return False
            dq = self._queues[p]
            if dq:
                _, waiter = dq.popleft()
                self._queued -= 1
                self._count_refusal(p, now)
                waiter("evicted")
                return True
        return False

    def _expire(self, now: float) -> None:
        timeout = self.target_delay if self._standing(now) else self.queue_timeout
        for p in _QUEUED:
            dq = self._queues[p]
            while dq and now - dq[0][0] > timeout:
                _, waiter = dq.popleft()
                self._queued -= 1
                self._count_refusal(p, now)
                waiter("queue_timeout")
        if self._queued == 0:
            self._nonempty_since = None

    def _drain(self, now: float) -> None:
        self._expire(now)
        lifo = self._standing(now)
        for p in _QUEUED:
            dq = self._queues[p]
            cap = self._cap(p)
            while dq and self.in_flight < cap:
                enqueued, waiter = dq.pop() if lifo else dq.popleft()
                self._queued -= 1
                self.in_flight += 1
                self._wait_sum += now - enqueued
                self._wait_n += 1
                waiter(None)
            if dq:
                break  # a more important class still waits: nobody less important goes first
        if self._peak < self.in_flight:
            self._peak = self.in_flight
        if self._queued == 0:
            self._nonempty_since = None

    def _futile(self, lag: float) -> bool:
        """The last cuts lowered the in-flight peak by a fifth or more, not the lag by a tenth."""
        if len(self._cuts) < _FUTILE_CUTS:
            return False
        first_lag, first_peak = self._cuts[0]
        return (lag > self.target_delay and lag >= 0.9 * first_lag
                and self._peak <= 0.8 * first_peak)

    def _roll(self, now: float) -> None:
        """Close the window: judge its signals, move the limit, start the next window."""
        lag = self._lag_sum / self._lag_n if self._lag_n else 0.0
        if self._last_tick is not None:
            # A tick overdue right now is lag too (the loop was blocked until this call).
            lag = max(lag, now - self._last_tick - self._tick_interval)
        saturated = self._blocked or self._peak >= self.limit - 0.5
        if self._lag_n and self._peak <= self.min_limit:
            self._lag_floor = lag
        elif self._futile(lag):
            # Cut after cut, far fewer requests in flight, and the lag has not fallen: it is
            # not theirs (e.g. the loop refusing a flood at the door, whose rate grows as
            # refused clients come back sooner). Cutting on would only trade goodput for more
            # refusals, so this lag is tolerated, up to _FUTILE_CAP x the target.
            self._lag_floor = max(self._lag_floor, min(lag, _FUTILE_CAP / 1.5 *
                                                       self.target_delay))
        else:
            self._lag_floor *= _FLOOR_DECAY
        over = lag / max(self.target_delay, 1.5 * self._lag_floor)
        if saturated and self._lat_n:
            over = max(over, self._lat_sum / self._lat_n / self.target_latency)
        if over > 1.0:
            factor = max(0.5, min(0.9, 1.0 / over))
            # From what was really in flight (a limit far above it would not bind), but at
            # most halved for that: a light-load hiccup must not collapse the limit.
            base = min(self.limit, max(float(self._peak), self.limit / 2))
            self.limit = max(float(self.min_limit), base * factor)
            self.overloaded = True
            self._cuts.append((lag, self._peak))
        else:
            self.overloaded = False
            self._cuts.clear()
            if saturated:
                self.limit = min(float(self.max_limit), self.limit + math.sqrt(self.limit))
        # What the last window's completions would drain from a standing queue in target_delay.
        self._standing_cap = max(1, math.ceil(self._lat_n / self.window * self.target_delay))
        self._set_caps()
        self.loop_lag = lag
        self.queue_delay = lag + (self._wait_sum / self._wait_n if self._wait_n else 0.0)
        self._lag_sum = self._lat_sum = self._wait_sum = 0.0
        self._lag_n = self._lat_n = self._wait_n = 0
        self._peak = self.in_flight
        self._blocked = False
        # Windows keep their phase; after an idle stretch the next one starts now.
        self._window_end += self.window
        if self._window_end <= now:
            self._window_end = now + self.window
        if self._queued:
            self._drain(now)
        if self.on_window is not None:
            self.on_window(self)
