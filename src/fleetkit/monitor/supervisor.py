"""SessionMonitor: starts, watches and restarts the monitor worker process.

The main process only reads the worker's pipe when the event loop says it is readable
(``loop.add_reader``) and checks liveness from a small task, so the app's loop never blocks. A
worker that dies (crash, ``kill -9``) or stops sending heartbeats (hung, SIGSTOP) is killed and
restarted after an exponential backoff that resets once a worker has run stably.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import time
import warnings
from collections import deque
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

from fleetkit.errors import ConfigError
from fleetkit.health import ComponentStatus
from fleetkit.keys import SESSIONS_PREFIX
from fleetkit.monitor import metrics as m
from fleetkit.monitor.worker import BUCKETS, WorkerConfig, run_worker
from fleetkit.tasks import cancel_and_wait

if TYPE_CHECKING:
    from fleetkit.config import Settings

__all__ = ["SessionMonitor"]

log = logging.getLogger("fleetkit.monitor")


async def _wait_exit(proc: BaseProcess, timeout: float) -> bool:
    """Wait for the process to exit without blocking the loop (its sentinel fd turns readable)."""
    if not proc.is_alive():
        return True
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    loop.add_reader(proc.sentinel, done.set)
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout)
    finally:
        loop.remove_reader(proc.sentinel)
    return not proc.is_alive()


class SessionMonitor:
    """Supervise the session monitor worker; ``redis_url=None`` (embedded mode) runs nothing:
    the in-memory store prunes itself."""

    def __init__(
        self, *, redis_url: str | None, prefix: str = SESSIONS_PREFIX,
        instance_id: str = "fleetkit", interval: float = 30.0, heartbeat_interval: float = 1.0,
        heartbeat_timeout: float = 10.0, startup_timeout: float = 30.0,
        lease_ttl: float | None = None, backoff: float = 0.5, backoff_max: float = 30.0,
        scan_count: int = 500,
    ) -> None:
        if heartbeat_timeout <= heartbeat_interval:
            raise ConfigError("heartbeat_timeout must exceed heartbeat_interval")
        self.config = None if redis_url is None else WorkerConfig(
            redis_url=redis_url, prefix=prefix, instance_id=instance_id, interval=interval,
            heartbeat_interval=heartbeat_interval,
            lease_ttl=lease_ttl if lease_ttl is not None else max(3 * interval, 10.0),
            scan_count=scan_count,
        )
        self.heartbeat_timeout = heartbeat_timeout
        self.startup_timeout = startup_timeout
        self.backoff_base = backoff
        self.backoff_max = backoff_max
        self.restarts = 0
        self.last_metrics: dict[str, Any] | None = None
        #: Recent cleanup passes (start, end, instance...) reported by the worker.
        self.passes: deque[dict[str, Any]] = deque(maxlen=100)
        self.last_error: str | None = None
        self.leader = False
        self._ctx = multiprocessing.get_context("spawn")
        self._proc: BaseProcess | None = None
        self._conn: Connection | None = None
        self._spawned_at = 0.0
        self._last_beat: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._pid_changed = asyncio.Event()

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> SessionMonitor:
        """On the sessions Redis (``REDIS_SESSION_URL``, else ``REDIS_URL``; neither: embedded,
        nothing runs). The worker is a separate process that opens its own connection from the
        URL, so no client is passed in; ``overrides`` are constructor keywords."""
        options: dict[str, Any] = dict(
            redis_url=settings.redis_session_url or settings.redis_url,
            instance_id=settings.instance_id, interval=settings.session_monitor_interval,
        )
        options.update(overrides)
        return cls(**options)

    @property
    def worker_pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.is_alive() else None

    @property
    def heartbeat_age(self) -> float | None:
        return None if self._last_beat is None else time.monotonic() - self._last_beat

    async def start(self) -> None:
        if self.config is None or self._task is not None:
            return
        self._stopping = False
        self._spawn()
        self._task = asyncio.get_running_loop().create_task(self._supervise())

    async def aclose(self, timeout: float = 5.0) -> None:
        """Ask the worker to stop (it releases the lease), then make sure it is gone."""
        self._stopping = True
        await cancel_and_wait(self._task)
        self._task = None
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.send("stop")
        await self._reap(timeout)
        m.UP.set(0)
        m.LEADER.set(0)

    async def stop(self, timeout: float = 5.0) -> None:
        """Deprecated alias of :meth:`aclose` (every other component closes with aclose)."""
        warnings.warn("SessionMonitor.stop() is deprecated; use aclose()", DeprecationWarning,
                      stacklevel=2)
        await self.aclose(timeout)

    async def __aenter__(self) -> SessionMonitor:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- process management ------------------------------------------------------------------
    def _spawn(self) -> None:
        assert self.config is not None
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(target=run_worker, args=(self.config, child),
                                 name="fleetkit-session-monitor", daemon=True)
        proc.start()
        child.close()  # the worker owns its end; EOF here means it died
        self._proc, self._conn = proc, parent
        self._spawned_at = time.monotonic()
        self._last_beat = None
        asyncio.get_running_loop().add_reader(parent.fileno(), self._on_readable)
        log.info("session monitor worker started (pid %s)", proc.pid)

    async def _reap(self, timeout: float) -> None:
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if conn is not None:
            asyncio.get_running_loop().remove_reader(conn.fileno())
        if proc is not None:
            if not await _wait_exit(proc, timeout) and proc.pid is not None:
                os.kill(proc.pid, signal.SIGKILL)
                await _wait_exit(proc, 10.0)
            proc.join(0)
            if not proc.is_alive():
                proc.close()
        if conn is not None:
            conn.close()

    def _on_readable(self) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            while conn.poll():
                kind, payload = conn.recv()
                self._handle(kind, payload)
        except (EOFError, OSError):
            # The worker died; stop watching the fd, the supervisor restarts it.
            asyncio.get_running_loop().remove_reader(conn.fileno())

    def _handle(self, kind: str, payload: dict[str, Any]) -> None:
        if kind == "hb":
            self._last_beat = time.monotonic()
            self.leader = bool(payload["leader"])
            m.UP.set(1)
            m.LEADER.set(1 if self.leader else 0)
        elif kind == "pass":
            self.last_metrics = payload
            self.passes.append(payload)
            m.PASS_SECONDS.observe(payload["seconds"])
            m.ACTIVE.set(payload["sessions"])
            m.USERS.set(payload["users"])
            for bucket in BUCKETS:
                m.USERS_BY_SESSIONS.labels(bucket).set(payload["buckets"][bucket])
            for event in ("created", "expired"):
                if payload[f"{event}_rate"] is not None:
                    m.RATE.labels(event).set(payload[f"{event}_rate"])
            m.PRUNED.labels("expired").inc(payload["expired"])
            m.PRUNED.labels("revoked").inc(payload["revoked"])
        elif kind == "error":
            self.last_error = payload["error"]
            log.warning("session monitor worker: %s", self.last_error)

    def _unhealthy_reason(self) -> str | None:
        proc = self._proc
        if proc is None or not proc.is_alive():
            return "exited"
        now = time.monotonic()
        if self._last_beat is None:
            return "startup_timeout" if now - self._spawned_at > self.startup_timeout else None
        return "heartbeat" if now - self._last_beat > self.heartbeat_timeout else None

    async def _supervise(self) -> None:
        assert self.config is not None
        backoff = self.backoff_base
        check = min(0.25, self.config.heartbeat_interval / 2)
        while not self._stopping:
            await asyncio.sleep(check)
            age = self.heartbeat_age
            if age is not None:
                m.HEARTBEAT_AGE.set(age)
            reason = self._unhealthy_reason()
            if reason is None:
                if time.monotonic() - self._spawned_at > 10 * self.heartbeat_timeout:
                    backoff = self.backoff_base  # ran stably: the next crash restarts quickly
                continue
            m.UP.set(0)
            m.LEADER.set(0)
            self.leader = False
            code = self._proc.exitcode if self._proc is not None else None
            log.warning("session monitor worker %s (exit code %s); restarting in %.1fs",
                        reason, code, backoff)
            await self._reap(0)  # kills a hung worker at once
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.backoff_max)
            if self._stopping:
                return
            self.restarts += 1
            m.RESTARTS.labels(reason).inc()
            self._spawn()

    async def health(self) -> ComponentStatus:
        """``pass`` with fresh heartbeats, ``warn`` while starting/restarting (sessions are
        unaffected: the monitor only cleans and measures)."""
        if self.config is None:
            return ComponentStatus("pass", "worker", output="embedded mode: no monitor process")
        details: dict[str, Any] = {"pid": self.worker_pid, "restarts": self.restarts,
                                   "lease_held": self.leader, "last_error": self.last_error}
        if self.last_metrics is not None:
            details["sessions_active"] = self.last_metrics["sessions"]
        age = self.heartbeat_age
        if age is not None and age <= self.heartbeat_timeout and self.worker_pid is not None:
            return ComponentStatus("pass", "worker", round(age, 3), "s since heartbeat",
                                   None, details)
        return ComponentStatus("warn", "worker", None if age is None else round(age, 3),
                               "s since heartbeat", "monitor worker starting or restarting",
                               details)
