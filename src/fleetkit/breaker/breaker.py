"""CircuitBreaker: calls admitted from a local view of the fleet-wide state.

The hot path (closed state) is a state check and a few integer increments: no Redis I/O, no
lock, no Prometheus call. Only half-open trial calls talk to the backend per call: each one
needs a fleet-wide lease. Plain functions and ``with`` blocks work too (from any thread): see
:mod:`fleetkit.breaker.sync`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import inspect
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable
from contextvars import ContextVar, Token
from types import EllipsisType, TracebackType
from typing import Any, ParamSpec, TypeVar

from fleetkit.breaker import metrics
from fleetkit.breaker.backend import BreakerBackend
from fleetkit.breaker.memory import MemoryBreakerBackend
from fleetkit.breaker.redis import DEFAULT_KEY_PREFIX, RedisBreakerBackend
from fleetkit.breaker.rules import BreakerConfig, BreakerOutcome, classify_error
from fleetkit.breaker.state import State
from fleetkit.breaker.sync import NoLoop, Tally
from fleetkit.breaker.view import Listener, StateView, log
from fleetkit.errors import CircuitOpenError, ConfigError

__all__ = ["CircuitBreaker", "Fallback", "Listener"]

P = ParamSpec("P")
T = TypeVar("T")
#: ``fallback(exc, *args, **kwargs)``: called instead of raising a rejection or a failure.
Fallback = Callable[..., Any]
_NO_RESULT = object()
_UNRECORDED = -1  # gen of calls admitted while disabled: never counted


class _Call:
    """One admitted call (kept in a context variable between enter and exit)."""

    __slots__ = ("gen", "lease", "start", "token")

    def __init__(self, gen: int, start: float, lease: str | None = None) -> None:
        self.gen = gen
        self.start = start
        self.lease = lease
        self.token: Token[_Call] | None = None


class CircuitBreaker(StateView):
    """A circuit breaker whose state is shared by every instance through ``redis``.

    ``redis=None`` uses the in-memory backend (embedded mode); ``backend=`` takes any
    :class:`~fleetkit.breaker.backend.BreakerBackend` (breakers given one
    :class:`~fleetkit.breaker.memory.MemoryBreakerBackend` act as one fleet). Options are the
    fields of :class:`BreakerConfig` (``failure_rate_threshold``, ``minimum_calls``,
    ``window_seconds``, ``wait_open_seconds``, ``half_open_permits``, ``slow_call_seconds``...),
    given as keywords or as ``config=``. Call :meth:`aclose` (sync code: :meth:`shutdown`) when
    done: it stops the flush and subscription tasks.
    """

    def __init__(self, name: str, *, redis: Any = None, config: BreakerConfig | None = None,
                 fallback: Fallback | None = None, key_prefix: str = DEFAULT_KEY_PREFIX,
                 backend: BreakerBackend | None = None,
                 memory: MemoryBreakerBackend | None = None, **options: Any) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigError("a circuit breaker needs a non-empty name")
        if not isinstance(key_prefix, str) or not key_prefix:
            raise ConfigError("key_prefix must be a non-empty string")
        if config is not None and not isinstance(config, BreakerConfig):
            raise ConfigError(f"config must be a BreakerConfig, not {type(config).__name__}")
        if fallback is not None and not callable(fallback):
            raise ConfigError("fallback must be callable")
        try:
            cfg = dataclasses.replace(config or BreakerConfig(), **options)
        except TypeError as exc:  # an unknown option
            raise ConfigError(f"circuit breaker {name!r}: {exc}") from exc
        if memory is not None:
            warnings.warn("CircuitBreaker(memory=...) is deprecated: use backend=",
                          DeprecationWarning, stacklevel=2)
            backend = backend or memory
        if backend is not None and redis is not None:
            raise ConfigError("give a circuit breaker redis= or backend=, not both")
        if backend is None:
            backend = (RedisBreakerBackend(redis, name, cfg, key_prefix=key_prefix)
                       if redis is not None else MemoryBreakerBackend(cfg))
        super().__init__(name, cfg, backend)
        self.fallback = fallback
        self._redis = redis
        self._cv: ContextVar[_Call] = ContextVar(f"fleetkit_breaker_{name}")
        self._timed = cfg.slow_call_seconds is not None
        self._slow_s = cfg.slow_call_seconds or 0.0
        self._result_pred = cfg.result_is_failure

    @classmethod
    def from_settings(cls, settings: Any, name: str, *, redis: Any = None,
                      **overrides: Any) -> CircuitBreaker:
        """From the ``BREAKER_*`` settings (:class:`fleetkit.config.Settings`); ``redis`` is
        the main role's client (``RedisClients.from_settings(settings).main``)."""
        return cls(name, redis=redis, config=BreakerConfig.from_settings(settings), **overrides)

    # --- lifecycle -------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Shutdown: stop the background tasks and flush the last outcomes."""
        if self._closed:
            return
        thread = self._thread
        if thread is not None and not thread.current:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._stop(),
                                                                       thread.loop))
            thread.stop()
            return
        await self._stop()

    def shutdown(self, *, close_redis: bool = False) -> None:
        """:meth:`aclose` for sync code (not on the breaker's own event loop's thread).

        ``close_redis=True`` also closes the ``redis=`` client, on the loop where its
        connections live: for a program with no event loop, whose client only breakers use.
        """
        with self._start_lock:
            loop, thread = self._loop, self._thread
            if self._closed or loop is None:
                self._closed, self._fast = True, False
                return
            try:
                self._wait_on(loop, self._stop_all(close_redis))
            except NoLoop:
                if loop.is_running() and (thread is None or not thread.current):
                    raise ConfigError(f"breaker {self.name!r}: shutdown() called on the "
                                      "breaker's own event loop; use await aclose()") from None
                self._closed, self._fast = True, False  # its loop is gone: nothing to stop
            if thread is not None:
                thread.stop()

    async def _stop_all(self, close_redis: bool) -> None:
        await self._stop()
        if close_redis and self._redis is not None:
            await self._redis.aclose()

    # --- async calls -----------------------------------------------------------------------
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

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args,
                   **kwargs: P.kwargs) -> T:
        """``await fn(*args, **kwargs)`` through the breaker (with the breaker's fallback)."""
        result: T = await self._guarded(fn, args, kwargs, self._result_pred, self.fallback)
        return result

    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        """Decorator: ``@breaker`` on an ``async def`` or a plain ``def``."""
        return self.protect()(fn)

    def protect(self, *, fallback: Fallback | EllipsisType | None = ...,
                result_is_failure: Callable[[Any], bool] | None = None
                ) -> Callable[[Callable[P, T]], Callable[P, T]]:
        """Decorator with its own fallback (``None``: none) / result classification.

        Generator functions are refused here (what would count: creating the generator, or
        each step?): protect the calls they make instead.
        """
        chosen = self.fallback if isinstance(fallback, EllipsisType) else fallback
        if chosen is not None and not callable(chosen):
            raise ConfigError("fallback must be callable")
        pred = result_is_failure or self._result_pred

        def decorate(fn: Callable[P, T]) -> Callable[P, T]:
            if not callable(fn):
                raise ConfigError(f"breaker {self.name!r} decorates functions, not {fn!r}")
            if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
                raise ConfigError(f"breaker {self.name!r} cannot decorate the generator "
                                  f"function {getattr(fn, '__qualname__', fn)!r}: protect the "
                                  "calls it makes instead")
            if _is_async(fn):
                afn: Callable[..., Awaitable[Any]] = fn  # type: ignore[assignment]

                @functools.wraps(fn)
                async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                    return await self._guarded(afn, args, kwargs, pred, chosen)

                return wrapper  # type: ignore[return-value]
            return self._sync_wrapper(fn, pred, chosen)

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
                pred: Callable[[Any], bool] | None, tally: Tally | None = None
                ) -> BreakerOutcome:
        """Classify one outcome and count it locally (trial results are reported separately):
        on the loop's thread without a lock, or into ``tally`` for a sync call."""
        if exc is not None:
            outcome = classify_error(self.config, exc)
        elif pred is not None and result is not _NO_RESULT and pred(result):
            outcome = "failure"
        else:
            outcome = "success"
        slow = self._timed and time.perf_counter() - call.start >= self._slow_s
        if tally is not None:
            tally.record(None if call.lease is not None else call.gen, outcome, slow)
            return outcome
        self._counts[outcome] += 1
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

    def _decide(self) -> _Call | None:
        """Admission from the local view; ``None``: a trial, which needs a fleet-wide lease."""
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
        return None

    async def _admit(self) -> _Call:
        """The slow path: not started yet, or not closed."""
        self._ensure_started()
        decided = self._decide()
        if decided is not None:
            return decided
        now = time.perf_counter() if self._timed else 0.0
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

    async def _finish_trial(self, call: _Call, outcome: BreakerOutcome,
                            exc: BaseException | None) -> None:
        """Report a trial's result and free its lease, even when the caller is cancelled."""
        assert call.lease is not None
        task = self._spawn(self._release(call, outcome), pending=True)
        if isinstance(exc, asyncio.CancelledError):
            return  # the release runs on; the caller's cancellation is not delayed
        await asyncio.shield(task)

    async def _release(self, call: _Call, outcome: BreakerOutcome) -> None:
        lease, gen = call.lease, call.gen
        assert lease is not None
        verdict = "cancel" if outcome == "ignored" else outcome
        try:
            snap = await self._op(lambda b: b.release(lease, gen, verdict))
        except Exception:
            log.exception("breaker %s: could not release a half-open lease", self.name)
            return
        if snap.flag:
            log.info("breaker %s: ignored a trial result of generation %d (now %d)",
                     self.name, gen, snap.gen)
        self._apply(snap)

    # --- sync calls (any thread) -------------------------------------------------------------
    def __enter__(self) -> CircuitBreaker:
        call = (_Call(self._gen, time.perf_counter() if self._timed else 0.0) if self._fast
                else self._admit_sync())
        call.token = self._cv.set(call)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        call = self._cv.get()
        if call.token is not None:
            self._cv.reset(call.token)
        self._end_sync(call, exc, _NO_RESULT, self._result_pred)

    def _sync_wrapper(self, fn: Callable[P, T], pred: Callable[[Any], bool] | None,
                      fallback: Fallback | None) -> Callable[P, T]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            if self._fast:
                call = _Call(self._gen, time.perf_counter() if self._timed else 0.0)
            else:
                try:
                    call = self._admit_sync()
                except CircuitOpenError as exc:
                    if fallback is None:
                        raise
                    return fallback(exc, *args, **kwargs)  # type: ignore[no-any-return]
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                if self._end_sync(call, exc, _NO_RESULT, pred) == "failure" and fallback:
                    return fallback(exc, *args, **kwargs)  # type: ignore[no-any-return]
                raise
            self._end_sync(call, None, result, pred)
            return result

        return wrapper

    def _end_sync(self, call: _Call, exc: BaseException | None, result: Any,
                  pred: Callable[[Any], bool] | None) -> BreakerOutcome:
        outcome = self._record(call, exc, result, pred, self._tally)
        if call.lease is not None:
            with contextlib.suppress(NoLoop):  # else the lease expires by itself
                self._wait_on(self._loop, self._release(call, outcome))
        return outcome

    def _admit_sync(self) -> _Call:
        home = self._home()
        decided = self._decide()
        if decided is not None:
            return decided
        try:
            return self._wait_on(home, self._admit())
        except NoLoop:
            # A trial permit needs the backend, and waiting here would block the very loop
            # that must answer (or no loop runs): rejected as if every permit were taken.
            raise self._reject(self._state) from None

def _is_async(fn: object) -> bool:
    """An ``async def`` (or a partial of one), or an object whose ``__call__`` is one."""
    return inspect.iscoroutinefunction(fn) or (
        not inspect.isroutine(fn) and inspect.iscoroutinefunction(type(fn).__call__))


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value
