"""CircuitBreaker: a local cache of the fleet-wide state in front of a shared backend.

The hot path (closed state) is a state check and a few integer increments: no Redis I/O, no
lock, no Prometheus call. Outcomes are flushed every ``flush_interval`` seconds into the
backend, whose script decides transitions from the fleet-wide counts; changes come back by
pub/sub (and with every flush reply, which doubles as the polling safety net). Only half-open
trial calls talk to Redis per call: each one needs a fleet-wide lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import inspect
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from contextvars import ContextVar, Token
from types import EllipsisType, TracebackType
from typing import Any, ParamSpec, TypeVar

from redis.exceptions import RedisError

from fleetkit.breaker import metrics
from fleetkit.breaker.memory import MemoryBackend
from fleetkit.breaker.rules import BreakerConfig, Outcome, classify_error
from fleetkit.breaker.shared import RedisBackend
from fleetkit.breaker.state import STATES, Batch, Snapshot, State
from fleetkit.errors import BackendUnavailable, CircuitOpenError, RedisCommandError
from fleetkit.health import ComponentStatus

__all__ = ["CircuitBreaker", "Fallback", "Listener"]

P = ParamSpec("P")
T = TypeVar("T")
#: ``fallback(exc, *args, **kwargs)``: called instead of raising a rejection or a failure.
Fallback = Callable[..., Any]
#: ``listener(name, old_state, new_state)``; may be a coroutine function.
Listener = Callable[[str, State, State], Any]

log = logging.getLogger("fleetkit.breaker")
_UNAVAILABLE = (BackendUnavailable, RedisCommandError, RedisError, OSError)
_NO_RESULT = object()
_UNRECORDED = -1  # gen of calls admitted while disabled: never counted


class _Call:
    """One admitted call (kept in a context variable between ``__aenter__`` and ``__aexit__``)."""

    __slots__ = ("gen", "lease", "start", "token")

    def __init__(self, gen: int, start: float, lease: str | None = None) -> None:
        self.gen = gen
        self.start = start
        self.lease = lease
        self.token: Token[_Call] | None = None


class CircuitBreaker:
    """A circuit breaker whose state is shared by every instance through ``redis``.

    ``redis=None`` uses the in-memory backend (embedded mode). Options are the fields of
    :class:`BreakerConfig` (``failure_rate_threshold``, ``minimum_calls``, ``window_seconds``,
    ``wait_open_seconds``, ``half_open_permits``, ``slow_call_seconds``...), given as keywords
    or as ``config=``. Call :meth:`aclose` when done: it stops the flush and pub/sub tasks.
    """

    def __init__(self, name: str, *, redis: Any = None, config: BreakerConfig | None = None,
                 fallback: Fallback | None = None, key_prefix: str = "fleetkit:breaker",
                 memory: MemoryBackend | None = None, **options: Any) -> None:
        self.name = name
        self.config = cfg = dataclasses.replace(config or BreakerConfig(), **options)
        self.fallback = fallback
        self._backend: RedisBackend | MemoryBackend
        if redis is not None:
            self._backend = RedisBackend(redis, name, cfg, key_prefix=key_prefix)
        else:
            self._backend = memory or MemoryBackend(cfg)
        self._local: MemoryBackend | None = None  # set while Redis is unreachable
        self._cv: ContextVar[_Call] = ContextVar(f"fleetkit_breaker_{name}")
        self._timed = cfg.slow_call_seconds is not None
        self._slow_s = cfg.slow_call_seconds or 0.0
        self._result_pred = cfg.result_is_failure
        # Local cache of the shared state.
        self._state: State = "closed"
        self._version = -1
        self._gen = 0
        self._epoch = ""
        self._open_until = 0.0
        self._deny_until = 0.0
        self._fast = False  # closed and started: the one check of the hot path
        # Outcomes since the last flush (all admitted under self._gen).
        self._calls = self._failures = self._slow = self._trailing = 0
        self._had_success = False
        self._counts = {"success": 0, "failure": 0, "ignored": 0}
        self._n_slow = 0
        self._listeners: list[Listener] = []
        self._tasks: set[asyncio.Future[Any]] = set()  # flush loop, subscription: cancelled
        self._pending: set[asyncio.Future[Any]] = set()  # lease releases, listeners: awaited
        self._wake: asyncio.Event | None = None
        self._started = self._closed = False
        self._last_flush = time.monotonic()
        self._unsubscribe: Callable[[], None] | None = None
        self._set_state_gauge("closed")
        metrics.LOCAL_ONLY.labels(name).set(0)

    # --- public state ----------------------------------------------------------------------
    @property
    def state(self) -> State:
        """The fleet-wide state as this instance last learned it."""
        return self._state

    @property
    def local_only(self) -> bool:
        """True while Redis is unreachable and decisions use this instance's counts only."""
        return self._local is not None

    @property
    def version(self) -> int:
        return self._version

    @property
    def generation(self) -> int:
        return self._gen

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(name, old, new)`` on every state change this instance sees."""
        self._listeners.append(listener)

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the background tasks and learn the current fleet-wide state (optional: the
        first call starts them too, without waiting for the state)."""
        self._ensure_started()
        await self.flush()

    def _ensure_started(self) -> None:
        if self._started or self._closed:
            return
        self._started = True
        self._wake = asyncio.Event()
        self._spawn(self._flush_loop())
        if isinstance(self._backend, RedisBackend):
            self._spawn(self._backend.listen(self._on_push, on_subscribed=self._wake.set,
                                             retry=self.config.poll_interval))
        else:
            self._unsubscribe = self._backend.subscribe(self._on_push)
        self._fast = self._state == "closed"

    def _spawn(self, coro: Awaitable[Any], *, pending: bool = False) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coro)
        tasks = self._pending if pending else self._tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task

    async def aclose(self) -> None:
        """Stop background tasks, close the subscription and flush the last outcomes."""
        if self._closed:
            return
        self._closed = True
        self._fast = False
        pending = set(self._tasks)
        for _ in range(5):  # a driver may swallow one cancellation mid-reconnect: repeat
            if not pending:
                break
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=1.0)
        if pending:
            log.warning("breaker %s: %d background task(s) did not stop", self.name, len(pending))
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=self.config.poll_interval)
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._started:
            with contextlib.suppress(*_UNAVAILABLE):
                await self.flush()

    async def __aenter__(self) -> CircuitBreaker:
        if self._fast:
            call = _Call(self._gen, time.perf_counter() if self._timed else 0.0)
        else:
            call = await self._admit()
        call.token = self._cv.set(call)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        call = self._cv.get()
        if call.token is not None:
            self._cv.reset(call.token)
        outcome = self._record(call, exc, _NO_RESULT, self._result_pred)
        if call.lease is not None:
            await self._finish_trial(call, outcome, exc)

    # --- calls -----------------------------------------------------------------------------
    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args,
                   **kwargs: P.kwargs) -> T:
        """``await fn(*args, **kwargs)`` through the breaker (with the breaker's fallback)."""
        result: T = await self._guarded(fn, args, kwargs, self._result_pred, self.fallback)
        return result

    def __call__(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        """Decorator: ``@breaker`` on an async function."""
        return self.protect()(fn)

    def protect(self, *, fallback: Fallback | EllipsisType | None = ...,
                result_is_failure: Callable[[Any], bool] | None = None
                ) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
        """Decorator with its own fallback (``None``: none) / result classification."""
        chosen_fallback = self.fallback if isinstance(fallback, EllipsisType) else fallback
        pred = result_is_failure or self._result_pred

        def decorate(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
            @functools.wraps(fn)
            async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
                result: T = await self._guarded(fn, args, kwargs, pred, chosen_fallback)
                return result

            return wrapper

        return decorate

    async def _guarded(self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...],
                       kwargs: dict[str, Any], pred: Callable[[Any], bool] | None,
                       fallback: Fallback | None) -> Any:
        if self._fast:
            call = _Call(self._gen, time.perf_counter() if self._timed else 0.0)
        else:
            try:
                call = await self._admit()
            except CircuitOpenError as exc:
                if fallback is None:
                    raise
                return await _maybe_await(fallback(exc, *args, **kwargs))
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            outcome = self._record(call, exc, _NO_RESULT, pred)
            if call.lease is not None:
                await self._finish_trial(call, outcome, exc)
            if fallback is not None and outcome == "failure":
                return await _maybe_await(fallback(exc, *args, **kwargs))
            raise
        outcome = self._record(call, None, result, pred)
        if call.lease is not None:
            await self._finish_trial(call, outcome, None)
        return result

    def _record(self, call: _Call, exc: BaseException | None, result: Any,
                pred: Callable[[Any], bool] | None) -> Outcome:
        """Classify one outcome and count it locally (trial results are reported separately)."""
        if exc is not None:
            outcome = classify_error(self.config, exc)
        elif pred is not None and result is not _NO_RESULT and pred(result):
            outcome = "failure"
        else:
            outcome = "success"
        self._counts[outcome] += 1
        slow = self._timed and time.perf_counter() - call.start >= self._slow_s
        if slow:
            self._n_slow += 1
        if outcome == "ignored" or call.lease is not None or call.gen != self._gen:
            return outcome  # not counted, a trial, or admitted under an older generation
        self._calls += 1
        if slow:
            self._slow += 1
        if outcome == "failure":
            self._failures += 1
            self._trailing += 1
        else:
            self._had_success = True
            self._trailing = 0
        return outcome

    async def _admit(self) -> _Call:
        """The slow path: not started yet, or not closed."""
        self._ensure_started()
        state = self._state
        now = time.perf_counter() if self._timed else 0.0
        if state == "closed":
            return _Call(self._gen, now)
        if state == "disabled":
            return _Call(_UNRECORDED, now)
        mono = time.monotonic()
        if state == "forced_open" or (state == "open" and mono < self._open_until):
            raise self._reject(state)
        if state == "half_open" and mono < self._deny_until:
            raise self._reject(state)
        lease = uuid.uuid4().hex
        snap = await self._op(lambda b: b.acquire(lease))
        self._apply(snap)
        if snap.flag:
            return _Call(snap.gen, time.perf_counter() if self._timed else 0.0, lease)
        if snap.state == "closed":
            return _Call(snap.gen, now)
        if snap.state == "disabled":
            return _Call(_UNRECORDED, now)
        if snap.state == "half_open":
            # Every permit is taken: nothing changes until a lease ends or the state is pushed.
            self._deny_until = time.monotonic() + self.config.flush_interval
        raise self._reject(snap.state)

    def _reject(self, state: State) -> CircuitOpenError:
        metrics.REJECTED.labels(self.name, state).inc()
        retry = max(0.0, self._open_until - time.monotonic()) if state == "open" else None
        return CircuitOpenError(self.name, state, retry_after=retry)

    async def _finish_trial(self, call: _Call, outcome: Outcome,
                            exc: BaseException | None) -> None:
        """Report a trial's result and free its lease, even when the caller is cancelled."""
        assert call.lease is not None
        lease, gen = call.lease, call.gen
        verdict = "cancel" if outcome == "ignored" else outcome
        task = self._spawn(self._release(lease, gen, verdict), pending=True)
        if isinstance(exc, asyncio.CancelledError):
            return  # the release runs on; the caller's cancellation is not delayed
        await asyncio.shield(task)

    async def _release(self, lease: str, gen: int, verdict: str) -> None:
        try:
            snap = await self._op(lambda b: b.release(lease, gen, verdict))
        except Exception:
            log.exception("breaker %s: could not release a half-open lease", self.name)
            return
        if snap.flag:
            log.info("breaker %s: ignored a trial result of generation %d (now %d)",
                     self.name, gen, snap.gen)
        self._apply(snap)

    # --- shared state ----------------------------------------------------------------------
    async def _op(self, fn: Callable[[Any], Awaitable[Snapshot]]) -> Snapshot:
        """Run ``fn(backend)`` on Redis, or on the local fallback while Redis is unreachable."""
        if self._local is not None:
            return await fn(self._local)
        try:
            return await fn(self._backend)
        except _UNAVAILABLE as exc:
            local = self._go_local(exc)
            return await fn(local)

    def _go_local(self, exc: BaseException) -> MemoryBackend:
        if self._local is None:
            seed = Snapshot(self._state, self._version, self._gen,
                            max(0.0, self._open_until - time.monotonic()), self._epoch)
            self._local = MemoryBackend(self.config, seed=seed)
            metrics.LOCAL_ONLY.labels(self.name).set(1)
            log.warning("breaker %s: Redis unavailable (%s); deciding on local state only",
                        self.name, exc)
        return self._local

    def _take_batch(self) -> Batch:
        batch = Batch(self._gen, self._calls, self._failures, self._slow, self._had_success,
                      self._trailing)
        self._calls = self._failures = self._slow = self._trailing = 0
        self._had_success = False
        return batch

    async def flush(self) -> None:
        """Send the outcomes counted since the last flush and adopt the state it returns."""
        batch = self._take_batch()
        self._export_counts()
        if self._local is not None:
            try:
                snap = await self._backend.flush(batch)
            except _UNAVAILABLE:
                self._apply(await self._local.flush(batch))
            else:
                self._local = None
                metrics.LOCAL_ONLY.labels(self.name).set(0)
                log.warning("breaker %s: Redis is back; rejoined the fleet-wide state (%s)",
                            self.name, snap.state)
                self._apply(snap, force=True)
                self._last_flush = time.monotonic()
        else:
            self._apply(await self._op(lambda b: b.flush(batch)))
            if self._local is None:
                self._last_flush = time.monotonic()
        metrics.FLUSH_LAG.labels(self.name).set(time.monotonic() - self._last_flush)

    def _export_counts(self) -> None:
        for outcome, count in self._counts.items():
            if count:
                metrics.CALLS.labels(self.name, outcome).inc(count)
                self._counts[outcome] = 0
        if self._n_slow:
            metrics.SLOW_CALLS.labels(self.name).inc(self._n_slow)
            self._n_slow = 0

    async def _flush_loop(self) -> None:
        """Flush when there is something to send or to learn; otherwise poll now and then."""
        assert self._wake is not None
        cfg = self.config
        last_poll = -cfg.poll_interval
        while True:
            now = time.monotonic()
            if (self._calls or self._state in ("open", "half_open") or self._local is not None
                    or self._wake.is_set() or now - last_poll >= cfg.poll_interval):
                self._wake.clear()
                last_poll = now
                try:
                    await self.flush()
                except Exception:
                    log.exception("breaker %s: flush failed", self.name)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(cfg.flush_interval):
                    await self._wake.wait()

    def _on_push(self, snap: Snapshot) -> None:
        if self._local is None:
            self._apply(snap)

    def _apply(self, snap: Snapshot, *, force: bool = False) -> None:
        """Adopt ``snap`` unless it is older than what this instance already knows."""
        if not force and snap.epoch == self._epoch and snap.version <= self._version:
            return
        old = self._state
        self._state, self._version, self._epoch = snap.state, snap.version, snap.epoch
        self._open_until = time.monotonic() + snap.remaining
        self._deny_until = 0.0
        if snap.gen != self._gen:
            self._gen = snap.gen
            self._take_batch()  # counts of the older generation would be ignored anyway
        self._fast = snap.state == "closed" and self._started and not self._closed
        if old != snap.state:
            self._transition(old, snap.state)

    def _transition(self, old: State, new: State) -> None:
        metrics.TRANSITIONS.labels(self.name, old, new).inc()
        self._set_state_gauge(new)
        log.info("breaker %s: %s -> %s", self.name, old, new)
        for listener in list(self._listeners):
            try:
                result = listener(self.name, old, new)
                if inspect.isawaitable(result):
                    self._spawn(result, pending=True)
            except Exception:
                log.exception("breaker %s: transition listener failed", self.name)

    def _set_state_gauge(self, current: State) -> None:
        for state in STATES:
            metrics.STATE.labels(self.name, state).set(1 if state == current else 0)

    # --- operator actions (fleet-wide) -------------------------------------------------------
    async def force_open(self) -> State:
        """Reject every call on every instance until :meth:`close` or :meth:`reset`."""
        return await self._admin("force_open")

    async def disable(self) -> State:
        """Let every call through on every instance, recording nothing."""
        return await self._admin("disable")

    async def close(self) -> State:
        """Move the fleet to closed (a new generation; the backoff of re-opens is kept)."""
        return await self._admin("close")

    async def reset(self) -> State:
        """Closed with empty counts and no open backoff, fleet-wide."""
        return await self._admin("reset")

    async def _admin(self, action: str) -> State:
        self._ensure_started()
        snap = await self._op(lambda b: b.admin(action))
        if self._local is not None:
            log.warning("breaker %s: %s applied locally only (Redis unavailable)", self.name,
                        action)
        self._apply(snap)
        return self._state

    async def health(self) -> ComponentStatus:
        """``warn`` in local-only mode, else ``pass``; never raises, no I/O."""
        shared = isinstance(self._backend, RedisBackend)
        mode = "local-only" if self._local is not None else ("redis" if shared else "memory")
        lag = time.monotonic() - self._last_flush if shared else 0.0
        return ComponentStatus(
            "warn" if self._local is not None else "pass",
            component_type="circuit-breaker", observed_value=self._state,
            output="Redis unreachable: breaker decides on local state only"
            if self._local is not None else None,
            details={"breaker": self.name, "state": self._state, "mode": mode,
                     "version": self._version, "generation": self._gen,
                     "flush_lag_seconds": round(lag, 3)},
        )


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value
