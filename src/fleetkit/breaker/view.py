"""The local view of one breaker's fleet-wide state, and what keeps it in step.

Outcomes counted by the calls are flushed every ``flush_interval`` seconds into the backend,
whose rules decide transitions from the fleet-wide counts; changes come back by the backend's
``watch`` (pub/sub) and with every flush reply, which doubles as the polling safety net. While
the shared backend is unreachable, a memory backend seeded with the last known state decides.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import logging
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from redis.exceptions import RedisError

from fleetkit.breaker import metrics
from fleetkit.breaker.backend import AdminAction, BreakerBackend
from fleetkit.breaker.memory import MemoryBreakerBackend
from fleetkit.breaker.rules import BreakerConfig
from fleetkit.breaker.state import STATES, Batch, Snapshot, State
from fleetkit.breaker.sync import LoopThread, NoLoop, Tally, merge
from fleetkit.errors import BackendUnavailable, RedisCommandError
from fleetkit.health import ComponentStatus

__all__ = ["UNAVAILABLE", "Listener", "StateView"]

#: ``listener(name, old_state, new_state)``; may be a coroutine function.
Listener = Callable[[str, State, State], Any]

T = TypeVar("T")
log = logging.getLogger("fleetkit.breaker")
UNAVAILABLE = (BackendUnavailable, RedisCommandError, RedisError, OSError)


class StateView:
    """State cache, flush loop, subscription and local fallback of one breaker."""

    def __init__(self, name: str, config: BreakerConfig, backend: BreakerBackend) -> None:
        self.name = name
        self.config = config
        self._backend = backend
        self._local: MemoryBreakerBackend | None = None  # set while the backend is unreachable
        self._state: State = "closed"
        self._version = -1
        self._gen = 0
        self._epoch = ""
        self._open_until = 0.0
        self._deny_until = 0.0
        self._fast = False  # closed and started: the one check of the hot path
        # Outcomes of async calls since the last flush (all admitted under self._gen), counted
        # on the loop's thread; sync calls count into self._tally.
        self._calls = self._failures = self._slow = self._trailing = 0
        self._had_success = False
        self._counts = {"success": 0, "failure": 0, "ignored": 0}
        self._n_slow = 0
        self._tally = Tally()
        self._listeners: list[Listener] = []
        self._tasks: set[asyncio.Future[Any]] = set()  # flush loop, subscription: cancelled
        self._pending: set[asyncio.Future[Any]] = set()  # lease releases, listeners: awaited
        self._wake: asyncio.Event | None = None
        self._started = self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None  # where the backend I/O runs
        self._thread: LoopThread | None = None  # that loop, when the breaker made its own
        self._last_flush = time.monotonic()
        self._start_lock = threading.Lock()
        self._set_state_gauge("closed")
        metrics.LOCAL_ONLY.labels(name).set(0)

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

    # --- background work ---------------------------------------------------------------------
    async def start(self) -> None:
        """Start the background tasks and learn the current fleet-wide state (optional: the
        first call starts them too, without waiting for the state)."""
        self._ensure_started()
        await asyncio.sleep(0)  # let the subscription begin
        await self.flush()

    def _ensure_started(self) -> None:
        if self._started or self._closed:
            return
        self._started = True
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._spawn(self._flush_loop())
        self._spawn(self._backend.watch(self._on_push, on_subscribed=self._wake.set,
                                        retry=self.config.poll_interval))
        self._fast = self._state == "closed"

    def _spawn(self, coro: Awaitable[Any], *, pending: bool = False) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coro)
        tasks = self._pending if pending else self._tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task

    async def _stop(self) -> None:
        """Stop background tasks and flush the last outcomes."""
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
        if self._started:
            with contextlib.suppress(*UNAVAILABLE):
                await self.flush()

    async def _op(self, fn: Callable[[BreakerBackend], Awaitable[Snapshot]]) -> Snapshot:
        """Run ``fn(backend)``, or on the local fallback while the backend is unreachable."""
        if self._local is not None:
            return await fn(self._local)
        try:
            return await fn(self._backend)
        except UNAVAILABLE as exc:
            local = self._go_local(exc)
            return await fn(local)

    def _go_local(self, exc: BaseException) -> MemoryBreakerBackend:
        if self._local is None:
            seed = Snapshot(self._state, self._version, self._gen,
                            max(0.0, self._open_until - time.monotonic()), self._epoch)
            self._local = MemoryBreakerBackend(self.config, seed=seed)
            metrics.LOCAL_ONLY.labels(self.name).set(1)
            log.warning("breaker %s: Redis unavailable (%s); deciding on local state only",
                        self.name, exc)
        return self._local

    def _take_batch(self) -> Batch:
        batch = Batch(self._gen, self._calls, self._failures, self._slow, self._had_success,
                      self._trailing)
        self._calls = self._failures = self._slow = self._trailing = 0
        self._had_success = False
        threads = self._tally.take(self._gen)
        return merge(batch, threads) if threads.gen == batch.gen else batch

    async def flush(self) -> None:
        """Send the outcomes counted since the last flush and adopt the state it returns."""
        batch = self._take_batch()
        self._export_counts()
        if self._local is not None:
            try:
                snap = await self._backend.flush(batch)
            except UNAVAILABLE:
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
        counts, n_slow = self._tally.take_counts()
        for outcome, count in self._counts.items():
            count += counts[outcome]
            if count:
                metrics.CALLS.labels(self.name, outcome).inc(count)
                self._counts[outcome] = 0
        n_slow += self._n_slow
        if n_slow:
            metrics.SLOW_CALLS.labels(self.name).inc(n_slow)
            self._n_slow = 0

    async def _flush_loop(self) -> None:
        """Flush when there is something to send or to learn; otherwise poll now and then."""
        assert self._wake is not None
        cfg = self.config
        last_poll = -cfg.poll_interval
        while True:
            now = time.monotonic()
            if (self._calls or self._tally.calls or self._state in ("open", "half_open")
                    or self._local is not None or self._wake.is_set()
                    or now - last_poll >= cfg.poll_interval):
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

    def _home(self) -> asyncio.AbstractEventLoop | None:
        """The loop the breaker's I/O runs on, started here if need be; None once closed."""
        if self._loop is not None or self._closed:
            return self._loop
        with self._start_lock:
            if self._loop is None and not self._closed:
                try:
                    asyncio.get_running_loop()
                except RuntimeError:  # no event loop at all: the breaker brings its own
                    self._thread = LoopThread(f"fleetkit-breaker-{self.name}")
                    self._thread.run(self.start())
                else:  # sync code running on a loop: that loop is home
                    self._ensure_started()
        return self._loop

    def _wait_on(self, home: asyncio.AbstractEventLoop | None,
                 coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the breaker's loop and wait for it, from another thread."""
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if home is None or running is home or not home.is_running():
            coro.close()
            raise NoLoop
        future = asyncio.run_coroutine_threadsafe(coro, home)
        try:
            # Bounded: a loop that stopped answering must not hang the thread for ever.
            return future.result(timeout=self.config.lease_seconds)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise NoLoop from None

    # --- operator actions (fleet-wide) -------------------------------------------------------
    async def force_open(self) -> State:
        """Reject every call on every instance until :meth:`force_close` or :meth:`reset`."""
        return await self._admin("force_open")

    async def disable(self) -> State:
        """Let every call through on every instance, recording nothing."""
        return await self._admin("disable")

    async def force_close(self) -> State:
        """Move the whole fleet to closed (a new generation; the backoff of re-opens is kept).

        Not a shutdown: that is :meth:`aclose`.
        """
        return await self._admin("force_close")

    async def close(self) -> State:
        """Deprecated alias of :meth:`force_close` (it never meant shutdown: see aclose)."""
        warnings.warn("CircuitBreaker.close() is deprecated: it moves the whole fleet to "
                      "closed; call force_close() (or aclose() to shut down)",
                      DeprecationWarning, stacklevel=2)
        return await self.force_close()

    async def reset(self) -> State:
        """Closed with empty counts and no open backoff, fleet-wide."""
        return await self._admin("reset")

    async def _admin(self, action: AdminAction) -> State:
        self._ensure_started()
        snap = await self._op(lambda b: b.admin(action))
        if self._local is not None:
            log.warning("breaker %s: %s applied locally only (Redis unavailable)", self.name,
                        action)
        self._apply(snap)
        return self._state

    async def health(self) -> ComponentStatus:
        """``warn`` in local-only mode, else ``pass``; never raises, no I/O."""
        mode = "local-only" if self._local is not None else self._backend.kind
        lag = time.monotonic() - self._last_flush
        return ComponentStatus(
            "warn" if self._local is not None else "pass",
            component_type="circuit-breaker", observed_value=self._state,
            output="Redis unreachable: breaker decides on local state only"
            if self._local is not None else None,
            details={"breaker": self.name, "state": self._state, "mode": mode,
                     "version": self._version, "generation": self._gen,
                     "flush_lag_seconds": round(lag, 3)},
        )
