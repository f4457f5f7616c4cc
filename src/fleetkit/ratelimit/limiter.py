"""The rate limiter: decisions through a backend contract, a local deny cache, and a fallback.

States: ``redis`` (every decision is one coalesced EVALSHA) and ``fallback`` (Redis failed:
decide locally per ``failure_mode`` until a probe, retried with exponential backoff, succeeds).
``local`` fallback uses the in-memory backend with each limit divided by the live instances last
counted by the heartbeat (or ``fallback_instances``), so the fleet as a whole stays close to the
limit. No Redis error ever reaches the caller.

The limiter is written against :class:`~fleetkit.ratelimit.backend.RateLimitBackend` only;
``redis=`` picks :class:`~fleetkit.ratelimit.redis.RedisRateLimitBackend`, ``None`` the memory
one. The jobs around a decision live next to it: :mod:`.decision` (reply format),
:mod:`.denycache`, :mod:`.fallback`, :mod:`.heartbeat` and :mod:`.counting` (metrics).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple

from fleetkit.errors import ConfigError, InvalidArgument, RateLimitExceeded
from fleetkit.health import ComponentStatus
from fleetkit.keys import (
    RATELIMIT_ALGORITHM_TAGS,
    RATELIMIT_PREFIX,
    escape_tag,
    ratelimit_instances_key,
)
from fleetkit.ratelimit import metrics
from fleetkit.ratelimit.backend import Algorithm, RateLimitBackend
from fleetkit.ratelimit.counting import DecisionCounts
from fleetkit.ratelimit.decision import Decision, LimitState, from_reply, unpack_reply
from fleetkit.ratelimit.denycache import DenyCache
from fleetkit.ratelimit.fallback import Fallback, set_backend_gauge
from fleetkit.ratelimit.heartbeat import Heartbeat
from fleetkit.ratelimit.limits import HEADER, HIT_HEADER, Limit
from fleetkit.ratelimit.memory import MemoryRateLimitBackend
from fleetkit.ratelimit.redis import COALESCER, SCRIPTS, RedisRateLimitBackend
from fleetkit.redis import Coalescer, CoalescerConfig

if TYPE_CHECKING:
    from fleetkit.config import Settings
    from fleetkit.redis import RedisClients

__all__ = ["Algorithm", "Decision", "FailureMode", "LimitState", "RateLimiter"]

FailureMode = Literal["local", "open", "closed"]
# Kept for callers that sized their own coalescer like the limiter's (RateLimiter.COALESCER).
COALESCER_BATCH = COALESCER.max_batch
COALESCER_INFLIGHT = COALESCER.max_inflight


class _Pending(NamedTuple):
    """A decision queued in the backend (see RateLimiter._begin)."""

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

    ``coalescer`` shares an existing :class:`~fleetkit.redis.Coalescer` (e.g.
    ``clients.coalescer("ratelimit", RateLimiter.COALESCER)``); otherwise the limiter makes and
    closes its own with :attr:`COALESCER`. ``backend`` passes any
    :class:`~fleetkit.ratelimit.backend.RateLimitBackend` instead of ``redis``. ``clock``
    (seconds) replaces Redis ``TIME`` and is meant for tests only. :meth:`from_settings` builds
    it as the reference service runs it.
    """

    #: The coalescer batching the limiter is tuned for and benchmarked with.
    COALESCER: ClassVar[CoalescerConfig] = COALESCER

    def __init__(
        self, *, redis: Any = None, algorithm: Algorithm = "sliding_window",
        prefix: str = RATELIMIT_PREFIX, failure_mode: FailureMode = "local",
        fallback_instances: int = 1, instance_id: str | None = None,
        heartbeat_interval: float = 5.0, probe_interval: float = 0.25,
        probe_max_interval: float = 5.0, max_local_keys: int = 100_000,
        deny_cache: bool = True, max_deny_cache: int = 10_000,
        coalescer: Coalescer | None = None, name: str = "default",
        clock: Callable[[], float] | None = None, backend: RateLimitBackend | None = None,
    ) -> None:
        if algorithm not in SCRIPTS:
            raise ConfigError(f"unknown algorithm {algorithm!r}; use one of {sorted(SCRIPTS)}")
        if failure_mode not in ("local", "open", "closed"):
            raise ConfigError(f"unknown failure_mode {failure_mode!r}")
        if fallback_instances < 1:
            raise ConfigError("fallback_instances must be >= 1")
        self.algorithm: Algorithm = algorithm
        self.failure_mode: FailureMode = failure_mode
        self.name = name
        self.prefix = prefix
        self.fallback_instances = fallback_instances
        self.instance_id = instance_id or (
            f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}")
        #: Local decisions while the backend is down (and the whole state in embedded mode).
        self.local = MemoryRateLimitBackend(algorithm=algorithm, max_keys=max_local_keys)
        if backend is None:
            backend = self.local if redis is None else RedisRateLimitBackend(
                redis, algorithm=algorithm, coalescer=coalescer)
        self._backend: RateLimitBackend = backend
        self._shared = backend.distributed
        self._label = backend.name
        self._memory = self.local.store
        self._coalescer = coalescer if coalescer is not None else getattr(
            backend, "coalescer", None)
        self._script = SCRIPTS[algorithm]
        self._base = f"{prefix}{{"
        self._end = f"}}:{RATELIMIT_ALGORITHM_TAGS[algorithm]}"
        self._clock = clock
        self._deny = DenyCache(max_keys=max_deny_cache) if deny_cache and self._shared else None
        self._denied = self._deny.entries if self._deny is not None else {}
        self._fallback = Fallback(name=name, mode=failure_mode, probe_interval=probe_interval,
                                  probe_max_interval=probe_max_interval,
                                  on_change=self._fallback_changed)
        self._heartbeat = Heartbeat(backend, key=ratelimit_instances_key(prefix),
                                    instance_id=self.instance_id, interval=heartbeat_interval,
                                    name=name)
        # A never-due heartbeat when there is no fleet to count.
        if not self._shared:
            self._heartbeat.due = float("inf")
        self._closed = False
        self._counts = DecisionCounts()
        self._count = self._counts.count
        self._latency = metrics.REDIS_SECONDS.labels(name)
        self._sample = 0
        set_backend_gauge(name, self._label)
        # True while hit() may take its inlined path (one limit, cost 1, backend clock).
        self._fast = clock is None

    @classmethod
    def from_settings(cls, settings: Settings, *, redis_clients: RedisClients,
                      **overrides: Any) -> RateLimiter:
        """From ``RATE_LIMIT_*`` settings on the ``ratelimit`` role client (``None``: memory),
        through that client's shared coalescer with :attr:`COALESCER` batching; ``overrides``
        are constructor keywords. The caller closes ``redis_clients`` (and the coalescer)."""
        options: dict[str, Any] = dict(
            redis=redis_clients.ratelimit,
            coalescer=redis_clients.coalescer("ratelimit", cls.COALESCER),
            algorithm=settings.rate_limit_algorithm, failure_mode=settings.rate_limit_failure_mode,
            fallback_instances=settings.rate_limit_fallback_instances,
            instance_id=settings.instance_id,
        )
        options.update(overrides)
        return cls(**options)

    # --- public API --------------------------------------------------------------------------

    async def hit(self, key: str, limit: Limit, *, cost: int = 1,
                  policy: str = "default") -> Decision:
        """Consume ``cost`` from ``limit`` for ``key`` if it fits."""
        # The common case inlined (one limit, cost 1, backend healthy, nothing cached): this is
        # the per-decision Python work on top of the coalesced EVALSHA (bench/ratelimit.py).
        if not (self._fast and cost == 1 and not self._denied and key and "{" not in key
                and "}" not in key and "%" not in key):
            return await self._check(key, (limit,), cost, False, policy)
        rkey = self._base + key + self._end + limit.suffix
        now = time.monotonic()
        if now >= self._heartbeat.due:
            self._heartbeat.start(now)
        # The reply: int8 allowed, 3 x int64 (one limit).
        future = self._backend.submit((rkey,), limit.hit_arg, 25)
        decision = await self._settle(_Pending(future, [rkey], (limit,), 1, False, now))
        self._count(policy, decision)
        return decision

    async def hit_many(self, key: str, limits: Sequence[Limit], *, cost: int = 1,
                       policy: str = "default") -> Decision:
        """Consume from every limit in one script, or from none of them if any is exhausted."""
        return await self._check(key, tuple(limits), cost, False, policy)

    async def acquire(self, key: str, limits: Limit | Sequence[Limit], *, cost: int = 1,
                      policy: str = "default") -> Decision:
        """:meth:`hit_many` that raises :class:`~fleetkit.errors.RateLimitExceeded` (with the
        decision and its ``retry_after``) when denied, for code that treats a denial as an
        error rather than a value."""
        limits = (limits,) if isinstance(limits, Limit) else tuple(limits)
        decision = await self._check(key, limits, cost, False, policy)
        if not decision.allowed:
            raise RateLimitExceeded(f"rate limit exceeded for policy {policy!r}",
                                    retry_after=decision.retry_after, decision=decision)
        return decision

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
        if self._deny is not None:
            self._deny.forget(keys)
        await self.local.delete(keys)
        if self._backend is not self.local:
            try:
                await self._backend.delete(keys)
            except Exception as exc:  # reset is best effort when Redis is down
                self._fallback.failed(exc)

    @property
    def backend(self) -> str:
        """``redis``, ``memory`` (embedded) or the fallback mode in use."""
        return self.failure_mode if self._fallback.active else self._label

    @property
    def live_instances(self) -> int | None:
        return self._heartbeat.live

    async def health(self) -> ComponentStatus:
        """pass on Redis or in embedded mode, warn while in fallback (never raises)."""
        self.flush_metrics()
        details: dict[str, Any] = {"algorithm": self.algorithm, "backend": self.backend,
                                   "live_instances": self._heartbeat.live,
                                   "deny_cache_keys": len(self._denied)}
        if not self._shared:
            details["local_keys"] = len(self._memory)
            return ComponentStatus("pass", "component", "memory", None,
                                   "embedded: limits are per instance", details)
        fb = self._fallback
        if fb.active:
            details["local_keys"] = len(self._memory)
            details["last_error"] = fb.last_error
            since = time.monotonic() - fb.since
            return ComponentStatus(
                "warn", "datastore", round(since, 3), "s",
                f"Redis unavailable, {self.failure_mode} fallback for {since:.1f}s", details)
        return ComponentStatus("pass", "datastore", self._heartbeat.live, "instances", None,
                               details)

    def flush_metrics(self) -> None:
        """Hand the pending decision counts to Prometheus."""
        self._counts.flush()

    async def instances(self) -> int | None:
        """Announce this instance now and return how many are live (None if Redis fails)."""
        if not self._shared:
            return None
        return await self._heartbeat.now()

    async def aclose(self) -> None:
        """Leave the heartbeat set (best effort) and close the backend the limiter made."""
        if self._closed:
            return
        self._closed = True
        self.flush_metrics()
        hb = self._heartbeat
        await hb.aclose(leave=self._shared and not self._fallback.active and hb.live is not None)
        await self._backend.aclose()

    async def __aenter__(self) -> RateLimiter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- decisions ---------------------------------------------------------------------------

    def _keys(self, key: str, limits: tuple[Limit, ...]) -> list[str]:
        if not key:
            raise InvalidArgument("the rate limit key must not be empty")
        base = self._base + escape_tag(key) + self._end
        return [base + lim.suffix for lim in limits]

    async def _check(self, key: str, limits: tuple[Limit, ...], cost: int, dry: bool,
                     policy: str) -> Decision:
        step = self._begin(key, limits, cost, dry)
        if isinstance(step, _Pending):
            step = await self._settle(step)
        self._count(policy, step)
        return step

    def _arg(self, limits: tuple[Limit, ...], cost: int, dry: bool) -> bytes:
        # The scripts take one binary argument: a header, then window and amount per limit.
        if self._clock is None and cost == 1 and not dry:
            head = HIT_HEADER
        else:
            head = HEADER.pack(cost, dry, -1 if self._clock is None else self._now_us())
        if len(limits) == 1:
            return head + limits[0].packed
        return head + b"".join(lim.packed for lim in limits)

    def _begin(self, key: str, limits: tuple[Limit, ...], cost: int,
               dry: bool) -> Decision | _Pending:
        """Decide now (cache, fallback) or queue the decision in the backend and say so."""
        if not 0 <= cost < 2**31:  # the scripts take an int32
            raise InvalidArgument(f"cost must be between 0 and 2**31 - 1, got {cost}")
        if not limits:
            raise InvalidArgument("at least one limit is required")
        keys = self._keys(key, limits)
        if self._denied and not dry and self._deny is not None:
            cached = self._deny.lookup(keys, limits, cost)
            if cached is not None:
                return cached
        if self._fallback.active and not self._fallback.probe_due():
            return self._fallback_decision(keys, limits, cost, dry)
        now = time.monotonic()
        if now >= self._heartbeat.due:
            self._heartbeat.start(now)
        # The reply: int8 allowed, 3 x int64 per limit.
        future = self._backend.submit(keys, self._arg(limits, cost, dry), 1 + 24 * len(limits))
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
            reply = unpack_reply(raw, len(p.limits))
        except Exception as exc:
            if not self._shared:
                raise
            self._fallback.failed(exc)
            return self._fallback_decision(p.keys, p.limits, p.cost, p.dry)
        if self._fallback.active:
            self._fallback.recovered()
        decision = from_reply(reply, p.limits, self._label)
        if not decision.allowed and self._deny is not None and not p.dry:
            self._deny.remember(p.keys, reply, p.cost, p.now)
        return decision

    def _fallback_decision(self, keys: list[str], limits: tuple[Limit, ...], cost: int,
                           dry: bool) -> Decision:
        if self.failure_mode == "local":
            divisor = self._heartbeat.live or self.fallback_instances
            shares = tuple(Limit(max(1, lim.amount // divisor), lim.window, lim.name)
                           for lim in limits) if divisor > 1 else limits
            reply = self.local.decide(keys, self._arg(shares, cost, dry))
            return from_reply(reply, limits, "local")
        if self.failure_mode == "open":
            least = min(limits, key=lambda lim: lim.amount)
            return Decision(True, least.amount, 0.0, None, "open", limits)
        retry = self._fallback.retry_after()
        return Decision(False, 0, retry, retry, "closed", limits)

    def _fallback_changed(self, active: bool) -> None:
        if active:
            self._fast = False
            if self._deny is not None:
                self._deny.clear()
        else:
            self._fast = self._clock is None
            self.local.clear()
            self._heartbeat.due = 0.0

    def _now_us(self) -> int:
        if self._clock is not None:
            return round(self._clock() * 1_000_000)
        return time.time_ns() // 1000
