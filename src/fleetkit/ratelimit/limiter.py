"""The rate limiter: Redis scripts through the coalescer, a local deny cache, and a fallback.

States: ``redis`` (every decision is one coalesced EVALSHA) and ``fallback`` (Redis failed:
decide locally per ``failure_mode`` until a probe, retried with exponential backoff, succeeds).
``local`` fallback uses the in-memory twin with each limit divided by the live instances last
counted by the heartbeat (or ``fallback_instances``), so the fleet as a whole stays close to the
limit. No Redis error ever reaches the caller.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import struct
import time
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any, Literal, NamedTuple

from fleetkit.health import ComponentStatus
from fleetkit.keys import (
    RATELIMIT_ALGORITHM_TAGS,
    RATELIMIT_PREFIX,
    escape_tag,
    ratelimit_instances_key,
)
from fleetkit.ratelimit import metrics
from fleetkit.ratelimit.limits import HEADER, HIT_HEADER, Limit
from fleetkit.ratelimit.memory import ALGORITHMS, MemoryBackend
from fleetkit.redis import Coalescer, Script

__all__ = ["Algorithm", "Decision", "FailureMode", "LimitState", "RateLimiter"]

Algorithm = Literal["sliding_window", "sliding_log", "gcra"]
FailureMode = Literal["local", "open", "closed"]


def _lua(name: str) -> str:
    return resources.files("fleetkit.ratelimit").joinpath(f"{name}.lua").read_text("utf-8")


# Each algorithm's script: the shared prologue, its decide() function, the shared epilogue that
# runs decide() for every decision of a (merged) call.
SCRIPTS: dict[str, Script] = {
    name: Script(_lua("prologue") + _lua(name) + _lua("epilogue"), name=name)
    for name in ALGORITHMS
}
HEARTBEAT = Script.from_package("fleetkit.ratelimit", "heartbeat.lua")
# The limiter's own coalescer sends smaller batches, several on the wire at once: its scripts
# cost Redis several microseconds a decision, and with one big batch Python would sit idle
# while Redis runs it. Smaller batches overlap the work here with script execution there.
# (On standalone Redis a batch of decisions is one merged EVALSHA: Coalescer.run_merged.)
COALESCER_BATCH = 32
COALESCER_INFLIGHT = 8

log = logging.getLogger("fleetkit.ratelimit")


class LimitState(NamedTuple):
    """One limit's share of a decision (what the RateLimit header fields report)."""

    limit: Limit
    remaining: int
    reset_after: float
    retry_after: float | None


class Decision:
    """Outcome of one request: ``allowed``, ``remaining``, ``reset_after``, ``retry_after``.

    ``remaining``/``reset_after`` are those of the most constrained limit, ``retry_after`` (only
    when denied) is when every limit would admit the same request again; ``details`` has them per
    limit. ``backend`` says who decided: redis, memory, local, open, closed or cache.
    """

    __slots__ = ("_reply", "allowed", "backend", "limits", "remaining", "reset_after",
                 "retry_after")

    def __init__(self, allowed: bool, remaining: int, reset_after: float,
                 retry_after: float | None, backend: str, limits: tuple[Limit, ...],
                 reply: Sequence[int] | None = None) -> None:
        self.allowed = allowed
        self.remaining = remaining
        self.reset_after = reset_after
        self.retry_after = retry_after
        self.backend = backend
        self.limits = limits
        self._reply = reply

    @property
    def details(self) -> tuple[LimitState, ...]:
        """Per-limit remaining / reset / retry, in the order the limits were given."""
        r = self._reply
        if r is None:
            return tuple(LimitState(lim, self.remaining, self.reset_after, self.retry_after)
                         for lim in self.limits)
        return tuple(
            LimitState(lim, r[3 * i + 1], r[3 * i + 2] / 1000,
                       None if r[3 * i + 3] < 0 else r[3 * i + 3] / 1000)
            for i, lim in enumerate(self.limits)
        )

    def __repr__(self) -> str:
        return (f"Decision(allowed={self.allowed}, remaining={self.remaining}, "
                f"reset_after={self.reset_after}, retry_after={self.retry_after}, "
                f"backend={self.backend!r})")


# The scripts' binary reply (prologue.lua): int8 allowed, then int64 remaining, reset_ms and
# retry_ms per limit.
_ONE = struct.Struct("<bqqq")
_REPLY = [_ONE] + [struct.Struct("<b" + "qqq" * n) for n in range(2, 9)]


def _unpack(reply: bytes, n: int) -> tuple[int, ...]:
    if n <= len(_REPLY):
        return _REPLY[n - 1].unpack(reply)
    return struct.unpack("<b" + "qqq" * n, reply)


def _from_reply(reply: Sequence[int], limits: tuple[Limit, ...], backend: str) -> Decision:
    allowed = reply[0] == 1
    if len(limits) == 1:  # the common case, kept cheap
        return Decision(allowed, reply[1], reply[2] / 1000,
                        None if allowed else reply[3] / 1000, backend, limits, reply)
    remaining = reply[1]
    reset = reply[2]
    retry = reply[3]
    for i in range(4, len(reply), 3):
        if reply[i] < remaining or (reply[i] == remaining and reply[i + 1] > reset):
            remaining, reset = reply[i], reply[i + 1]
        retry = max(retry, reply[i + 2])
    return Decision(allowed, remaining, reset / 1000, None if allowed else retry / 1000, backend,
                    limits, reply)


class _Pending(NamedTuple):
    """A decision whose script is queued in the coalescer (see RateLimiter._begin)."""

    future: asyncio.Future[Any]
    keys: list[str]
    limits: tuple[Limit, ...]
    cost: int
    dry: bool
    now: float


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved: no "exception was never retrieved" report


class RateLimiter:
    """Distributed rate limiter; ``redis=None`` decides in memory (embedded mode).

    >>> limiter = RateLimiter(redis=client, algorithm="sliding_window")
    >>> d = await limiter.hit("user:42", Limit.parse("100/minute"), cost=1)

    ``coalescer`` shares an existing :class:`~fleetkit.redis.Coalescer` (one per client, e.g.
    ``clients.coalescer("ratelimit")``); otherwise the limiter makes and closes its own.
    ``clock`` (seconds) replaces Redis ``TIME`` and is meant for tests only.
    """

    def __init__(
        self, *, redis: Any = None, algorithm: Algorithm = "sliding_window",
        prefix: str = RATELIMIT_PREFIX, failure_mode: FailureMode = "local",
        fallback_instances: int = 1, instance_id: str | None = None,
        heartbeat_interval: float = 5.0, probe_interval: float = 0.25,
        probe_max_interval: float = 5.0, max_local_keys: int = 100_000,
        deny_cache: bool = True, max_deny_cache: int = 10_000,
        coalescer: Coalescer | None = None, name: str = "default",
        clock: Callable[[], float] | None = None,
    ) -> None:
        if algorithm not in SCRIPTS:
            raise ValueError(f"unknown algorithm {algorithm!r}; use one of {sorted(SCRIPTS)}")
        if failure_mode not in ("local", "open", "closed"):
            raise ValueError(f"unknown failure_mode {failure_mode!r}")
        if fallback_instances < 1:
            raise ValueError("fallback_instances must be >= 1")
        self.algorithm: Algorithm = algorithm
        self.failure_mode: FailureMode = failure_mode
        self.name = name
        self.prefix = prefix
        self.fallback_instances = fallback_instances
        self.instance_id = instance_id or (
            f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}")
        self._redis = redis
        self._script = SCRIPTS[algorithm]
        self._evaluate = ALGORITHMS[algorithm]
        self._base = f"{prefix}{{"
        self._end = f"}}:{RATELIMIT_ALGORITHM_TAGS[algorithm]}"
        self._clock = clock
        self._own_coalescer = coalescer is None and redis is not None
        self._coalescer = coalescer or (
            Coalescer(redis, max_batch=COALESCER_BATCH, max_inflight=COALESCER_INFLIGHT)
            if redis is not None else None)
        self._memory = MemoryBackend(max_keys=max_local_keys)
        self._deny_cache = deny_cache
        self._max_deny_cache = max_deny_cache
        self._denied: dict[str, tuple[float, int]] = {}
        # Fallback state machine.
        self._fallback = False
        self._fallback_since = 0.0
        self._last_error: str | None = None
        self._probe_min = probe_interval
        self._probe_max = probe_max_interval
        self._probe_delay = probe_interval
        self._next_probe = 0.0
        # Heartbeat: announced every interval; the count divides limits in local fallback.
        self._heartbeat_interval = heartbeat_interval
        self._heartbeat_key = ratelimit_instances_key(prefix)
        self._next_heartbeat = 0.0
        self._live: int | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        # Metric children resolved once (labels() is too slow for the hot path).
        self._counted: dict[tuple[str, bool, str], list[Any]] = {}
        self._latency = metrics.REDIS_SECONDS.labels(name)
        self._sample = 0
        self._set_backend("memory" if redis is None else "redis")
        # True while hit() may take its inlined Redis path.
        self._fast = self._coalescer is not None and clock is None

    # --- public API --------------------------------------------------------------------------

    async def hit(self, key: str, limit: Limit, *, cost: int = 1,
                  policy: str = "default") -> Decision:
        """Consume ``cost`` from ``limit`` for ``key`` if it fits."""
        # The common case inlined (one limit, cost 1, Redis healthy, nothing cached): this is
        # the per-decision Python work on top of the coalesced EVALSHA (bench/ratelimit.py).
        if not (self._fast and cost == 1 and not self._denied and key and "{" not in key
                and "}" not in key and "%" not in key):
            return await self._check(key, (limit,), cost, False, policy)
        assert self._coalescer is not None
        rkey = self._base + key + self._end + limit.suffix
        now = time.monotonic()
        if now >= self._next_heartbeat:
            self._heartbeat(now)
        # The reply: int8 allowed, 3 x int64 (one limit).
        future = self._coalescer.submit_merged(self._script, (rkey,), limit.hit_arg, 25)
        decision = await self._settle(_Pending(future, [rkey], (limit,), 1, False, now))
        self._count(policy, decision)
        return decision

    async def hit_many(self, key: str, limits: Sequence[Limit], *, cost: int = 1,
                       policy: str = "default") -> Decision:
        """Consume from every limit in one script, or from none of them if any is exhausted."""
        return await self._check(key, tuple(limits), cost, False, policy)

    async def hit_all(self, calls: Sequence[tuple[str, Sequence[Limit], int, str]]
                      ) -> list[Decision]:
        """Several independent ``hit_many`` decisions, ``(key, limits, cost, policy)`` each.

        All are queued before the first is awaited, so they share one pipeline (one script call
        on standalone Redis) without a task per decision: the per-IP and per-user policies of
        one request (:class:`~fleetkit.ratelimit.RateLimitMiddleware`).
        """
        steps: list[Decision | _Pending] = []
        decisions: list[Decision] = []
        try:
            for key, limits, cost, _ in calls:
                steps.append(self._begin(key, tuple(limits), cost, False))
            for step, (_, _, _, policy) in zip(steps, calls, strict=True):
                decision = await self._settle(step) if isinstance(step, _Pending) else step
                self._count(policy, decision)
                decisions.append(decision)
        finally:
            for step in steps[len(decisions):]:  # cancelled or refused: nobody awaits the rest
                if isinstance(step, _Pending):
                    step.future.add_done_callback(_consume)
        return decisions

    async def peek(self, key: str, limits: Limit | Sequence[Limit], *,
                   cost: int = 1) -> Decision:
        """Would a request of ``cost`` be allowed? Consumes nothing."""
        limits = (limits,) if isinstance(limits, Limit) else tuple(limits)
        return await self._check(key, limits, cost, True, "peek")

    async def reset(self, key: str, limits: Limit | Sequence[Limit]) -> None:
        """Forget ``key``'s usage of ``limits`` (in Redis and locally)."""
        limits = (limits,) if isinstance(limits, Limit) else tuple(limits)
        keys = self._keys(key, limits)
        for k in keys:
            self._denied.pop(k, None)
        self._memory.delete(*keys)
        if self._coalescer is not None:
            try:
                await self._coalescer.execute("DEL", *keys)
            except Exception as exc:  # reset is best effort when Redis is down
                self._failed(exc)

    @property
    def backend(self) -> str:
        """``redis``, ``memory`` (embedded) or the fallback mode in use."""
        if self._redis is None:
            return "memory"
        return self.failure_mode if self._fallback else "redis"

    @property
    def live_instances(self) -> int | None:
        return self._live

    async def health(self) -> ComponentStatus:
        """pass on Redis or in embedded mode, warn while in fallback (never raises)."""
        self.flush_metrics()
        details: dict[str, Any] = {"algorithm": self.algorithm, "backend": self.backend,
                                   "live_instances": self._live,
                                   "deny_cache_keys": len(self._denied)}
        if self._redis is None:
            details["local_keys"] = len(self._memory)
            return ComponentStatus("pass", "component", "memory", None,
                                   "embedded: limits are per instance", details)
        if self._fallback:
            details["local_keys"] = len(self._memory)
            details["last_error"] = self._last_error
            since = time.monotonic() - self._fallback_since
            return ComponentStatus(
                "warn", "datastore", round(since, 3), "s",
                f"Redis unavailable, {self.failure_mode} fallback for {since:.1f}s", details)
        return ComponentStatus("pass", "datastore", self._live, "instances", None, details)

    async def aclose(self) -> None:
        """Leave the heartbeat set (best effort) and close the limiter's own coalescer."""
        if self._closed:
            return
        self._closed = True
        self.flush_metrics()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._coalescer is not None and not self._fallback and self._live is not None:
            try:
                async with asyncio.timeout(0.5):
                    await self._coalescer.run(HEARTBEAT, [self._heartbeat_key],
                                              [self.instance_id, 1, "1"])
            except Exception:  # noqa: S110 — the entry expires with its TTL anyway
                pass
        if self._own_coalescer and self._coalescer is not None:
            await self._coalescer.aclose()

    async def __aenter__(self) -> RateLimiter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- decisions ---------------------------------------------------------------------------

    def _keys(self, key: str, limits: tuple[Limit, ...]) -> list[str]:
        if not key:
            raise ValueError("the rate limit key must not be empty")
        base = self._base + escape_tag(key) + self._end
        return [base + lim.suffix for lim in limits]

    async def _check(self, key: str, limits: tuple[Limit, ...], cost: int, dry: bool,
                     policy: str) -> Decision:
        step = self._begin(key, limits, cost, dry)
        if isinstance(step, _Pending):
            step = await self._settle(step)
        self._count(policy, step)
        return step

    def _begin(self, key: str, limits: tuple[Limit, ...], cost: int,
               dry: bool) -> Decision | _Pending:
        """Decide now (cache, embedded, fallback) or queue the Redis script and say so."""
        if not 0 <= cost < 2**31:  # the scripts take an int32
            raise ValueError(f"cost must be between 0 and 2**31 - 1, got {cost}")
        if not limits:
            raise ValueError("at least one limit is required")
        keys = self._keys(key, limits)
        if self._denied and not dry:
            cached = self._cached_denial(keys, limits, cost)
            if cached is not None:
                return cached
        if self._coalescer is None:
            return self._local(keys, limits, cost, dry, "memory", 1)
        if self._fallback and not self._probe_due():
            return self._fallback_decision(keys, limits, cost, dry)
        # The scripts take one binary argument: a header, then window and amount per limit.
        if self._clock is None and cost == 1 and not dry:
            head = HIT_HEADER
        else:
            head = HEADER.pack(cost, dry, -1 if self._clock is None else self._now_us())
        arg = head + limits[0].packed if len(limits) == 1 else \
            head + b"".join(lim.packed for lim in limits)
        now = time.monotonic()
        if now >= self._next_heartbeat:
            self._heartbeat(now)
        # The reply: int8 allowed, 3 x int64 per limit.
        future = self._coalescer.submit_merged(self._script, keys, arg, 1 + 24 * len(limits))
        return _Pending(future, keys, limits, cost, dry, now)

    async def _settle(self, p: _Pending) -> Decision:
        self._sample += 1
        try:
            if self._sample & 15:
                raw = await p.future
            else:  # time one decision in 16: the histogram costs as much as the rest
                start = time.perf_counter()
                raw = await p.future
                self._latency.observe(time.perf_counter() - start)
            reply = _unpack(raw, len(p.limits))
        except Exception as exc:
            self._failed(exc)
            return self._fallback_decision(p.keys, p.limits, p.cost, p.dry)
        if self._fallback:
            self._recovered()
        decision = _from_reply(reply, p.limits, "redis")
        if not decision.allowed and self._deny_cache and not p.dry:
            self._remember_denial(p.keys, reply, p.cost, p.now)
        return decision

    def _local(self, keys: list[str], limits: tuple[Limit, ...], cost: int, dry: bool,
               backend: str, divisor: int) -> Decision:
        args: list[int] = []
        for lim in limits:
            args += (lim.window_ms, max(1, lim.amount // divisor))
        reply = self._evaluate(self._memory, keys, args, cost, dry, self._now_us())
        return _from_reply(reply, limits, backend)

    def _fallback_decision(self, keys: list[str], limits: tuple[Limit, ...], cost: int,
                           dry: bool) -> Decision:
        if self.failure_mode == "local":
            return self._local(keys, limits, cost, dry, "local",
                               self._live or self.fallback_instances)
        if self.failure_mode == "open":
            least = min(limits, key=lambda lim: lim.amount)
            return Decision(True, least.amount, 0.0, None, "open", limits)
        retry = max(self._next_probe - time.monotonic(), self._probe_min)
        return Decision(False, 0, retry, retry, "closed", limits)

    def _now_us(self) -> int:
        if self._clock is not None:
            return round(self._clock() * 1_000_000)
        return time.time_ns() // 1000

    def _count(self, policy: str, decision: Decision) -> None:
        # Counter.inc() takes a lock and costs about as much as the rest of a decision, so
        # counts are handed to Prometheus in steps of 64 (and by health() and aclose()).
        label = (policy, decision.allowed, decision.backend)
        entry = self._counted.get(label)
        if entry is None:
            entry = self._counted[label] = [metrics.DECISIONS.labels(
                policy, "allowed" if decision.allowed else "denied", decision.backend), 0]
        entry[1] += 1
        if entry[1] >= 64:
            entry[0].inc(entry[1])
            entry[1] = 0

    def flush_metrics(self) -> None:
        """Hand the pending decision counts to Prometheus."""
        for entry in self._counted.values():
            if entry[1]:
                entry[0].inc(entry[1])
                entry[1] = 0

    # --- deny cache --------------------------------------------------------------------------

    def _remember_denial(self, keys: list[str], reply: Sequence[int], cost: int,
                         now: float) -> None:
        if len(self._denied) >= self._max_deny_cache:
            self._denied = {k: v for k, v in self._denied.items() if v[0] > now}
            while len(self._denied) >= self._max_deny_cache:
                del self._denied[next(iter(self._denied))]
        for i, k in enumerate(keys):
            retry = reply[3 * i + 3]
            if retry > 0:
                self._denied[k] = (now + retry / 1000, cost)

    def _cached_denial(self, keys: list[str], limits: tuple[Limit, ...],
                       cost: int) -> Decision | None:
        now = time.monotonic()
        until = 0.0
        for k in keys:
            entry = self._denied.get(k)
            if entry is None:
                continue
            if entry[0] <= now:
                del self._denied[k]
            elif entry[1] <= cost:  # a smaller request than the denied one may still fit
                until = max(until, entry[0])
        if until == 0.0:
            return None
        wait = until - now
        return Decision(False, 0, wait, wait, "cache", limits)

    # --- fallback state machine --------------------------------------------------------------

    def _failed(self, exc: BaseException) -> None:
        self._last_error = f"{type(exc).__name__}: {exc}"
        if self._fallback:
            return
        self._fallback = True
        self._fast = False
        self._fallback_since = now = time.monotonic()
        self._probe_delay = self._probe_min
        self._next_probe = now + self._probe_delay
        self._denied.clear()
        log.warning("rate limiter %r: Redis failed (%s); deciding %s until it answers",
                    self.name, self._last_error, self.failure_mode)
        metrics.TRANSITIONS.labels(self.name, "fallback").inc()
        self._set_backend(self.failure_mode)

    def _probe_due(self) -> bool:
        now = time.monotonic()
        if now < self._next_probe:
            return False
        # This request probes Redis; the others keep deciding locally until the next probe.
        self._probe_delay = min(self._probe_delay * 2, self._probe_max)
        self._next_probe = now + self._probe_delay
        return True

    def _recovered(self) -> None:
        self._fallback = False
        self._fast = self._clock is None
        self._memory.clear()
        outage = time.monotonic() - self._fallback_since
        log.warning("rate limiter %r: Redis answers again after %.1fs; back to Redis",
                    self.name, outage)
        metrics.TRANSITIONS.labels(self.name, "redis").inc()
        self._set_backend("redis")
        self._next_heartbeat = 0.0

    def _set_backend(self, backend: str) -> None:
        for name in ("redis", "memory", "local", "open", "closed"):
            metrics.BACKEND.labels(self.name, name).set(1 if name == backend else 0)

    # --- heartbeat ---------------------------------------------------------------------------

    def _heartbeat(self, now: float) -> None:
        self._next_heartbeat = now + self._heartbeat_interval
        if self._closed:
            return
        task = asyncio.get_running_loop().create_task(self._beat())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _beat(self) -> None:
        assert self._coalescer is not None
        ttl_ms = max(1000, round(self._heartbeat_interval * 3000))
        try:
            live = await self._coalescer.run(HEARTBEAT, [self._heartbeat_key],
                                             [self.instance_id, ttl_ms, "0"])
        except Exception:  # the decision path notices outages; keep the last known count
            return
        self._live = max(1, int(live))
        metrics.LIVE_INSTANCES.labels(self.name).set(self._live)

    async def instances(self) -> int | None:
        """Announce this instance now and return how many are live (None if Redis fails)."""
        if self._coalescer is None:
            return None
        self._next_heartbeat = time.monotonic() + self._heartbeat_interval
        await self._beat()
        return self._live
