"""The producer: ``await AuditLog.log(event)`` returns once the event is durable.

Concurrent events are packed into one stream entry (one JSON line each in field ``e``; up to
``max_batch`` per XADD, ``max_inflight`` XADDs on the wire while the next entry fills), so the
per-event cost is a JSON encode and a list append. Entries go round-robin to ``shards`` keys.
"Durable" = the XADD was answered (Redis with ``appendonly yes`` + ``appendfsync always``;
``wait_replicas=n`` also waits for n replicas). At most ``max_pending`` events wait: a slow
Redis slows producers down instead of growing memory.

Redis unavailable (any XADD error): the entry, and every later one (order is kept), goes to the
append-only disk spool (:mod:`fleetkit.audit.spool`); a background task probes Redis and replays
the spool in order, then switches back. A timed-out XADD that did reach Redis is spooled too: the
replay may duplicate it, and the event id makes the insert idempotent. Embedded mode
(``redis=None``): the same batching feeds the SQLite sink. No PostgreSQL driver is imported.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleetkit.audit.entries import Batch, BatchFuture
from fleetkit.audit.events import AuditEvent
from fleetkit.audit.metrics import (
    ENTRY_EVENTS,
    EVENTS_LOGGED,
    EVENTS_REPLAYED,
    EVENTS_SPOOLED,
    INVALID_EVENTS,
    SPOOL_BYTES,
)
from fleetkit.audit.sink import SqliteSink
from fleetkit.audit.spool import DiskSpool, FsyncPolicy, read_records
from fleetkit.audit.streams import DEFAULT_PREFIX, stream_keys, xadd, xadd_many
from fleetkit.errors import AuditError, ConfigError, InvalidAuditEvent
from fleetkit.health.status import ComponentStatus, Status
from fleetkit.tasks import cancel_and_wait

if TYPE_CHECKING:
    from fleetkit.config import Settings

__all__ = ["AuditLog"]

log = logging.getLogger("fleetkit.audit")


class AuditLog:
    """Audit event producer (``redis=`` client) or embedded log (``redis=None``)."""

    def __init__(
        self, *, redis: Any | None = None, shards: int = 4, prefix: str = DEFAULT_PREFIX,
        spool_dir: str | Path = "./var/audit-spool", spool_fsync: FsyncPolicy = "always",
        sqlite_path: str | Path = "fleetkit-audit.db", instance: str | None = None,
        max_batch: int = 512, max_inflight: int = 4, max_pending: int = 100_000,
        wait_replicas: int = 0, wait_timeout_ms: int = 100, probe_interval: float = 0.5,
        close_timeout: float = 10.0,
    ) -> None:
        if shards < 1 or max_batch < 1 or max_inflight < 1 or max_pending < max_batch:
            raise ConfigError("shards, max_batch, max_inflight >= 1 and max_pending >= max_batch")
        self._redis = redis
        self._keys = stream_keys(prefix, shards)
        self._instance = instance
        self._max_batch = max_batch
        self._max_inflight = max_inflight
        self._max_pending = max_pending
        self._wait = (wait_replicas, wait_timeout_ms)
        self._probe_interval = probe_interval
        self._close_timeout = close_timeout
        self._sink = SqliteSink(sqlite_path) if redis is None else None
        self._spool = DiskSpool(Path(spool_dir), fsync=spool_fsync)
        self._spool_lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._open: Batch | None = None
        self._ready: deque[Batch] = deque()
        self._sending: set[Batch] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._inflight = 0
        self._scheduled = False
        self._pending = 0
        self._space: asyncio.Event | None = None
        self._rr = 0
        self._spooling = False
        self._replayer: asyncio.Task[None] | None = None
        self._adopting: asyncio.Task[None] | None = None
        self._replay_offsets: dict[Path, int] = {}
        self._spool_error: str | None = None
        self._last_error: str | None = None
        self._closed = False
        #: Counters for tests, health and benchmarks.
        self.entries_sent = 0
        self.events_sent = 0
        self.events_spooled = 0
        self.events_replayed = 0

    @classmethod
    def from_settings(cls, settings: Settings, *, redis: Any | None = None,
                      **overrides: Any) -> AuditLog:
        """From ``AUDIT_*`` settings. ``redis``: the client to produce to (for example
        ``RedisClients.from_settings(settings).main``); ``None`` is embedded mode, writing to
        ``sqlite_path`` (default ``audit.db`` next to ``AUDIT_SPOOL_DIR``)."""
        spool = Path(settings.audit_spool_dir)
        options: dict[str, Any] = dict(shards=settings.audit_stream_shards, spool_dir=spool,
                                       sqlite_path=spool.parent / "audit.db",
                                       instance=settings.instance_id)
        options.update(overrides)
        return cls(redis=redis, **options)

    # --- hot path ------------------------------------------------------------------------------

    async def log(self, event: AuditEvent) -> None:
        """Validate ``event`` and return once it is durable (Redis, spool, or SQLite).

        Raises :class:`~fleetkit.errors.InvalidAuditEvent` for a bad event (nothing is written)
        and :class:`~fleetkit.errors.AuditError` if it could be written nowhere.
        """
        try:
            line = event.encode(instance=self._instance)
        except InvalidAuditEvent:
            INVALID_EVENTS.inc()
            raise
        if self._pending >= self._max_pending:
            await self._wait_space()
        await self._add(line)

    async def log_many(self, events: Iterable[AuditEvent]) -> None:
        """Log several events (validated all first: one bad event means none is logged)."""
        try:
            lines = [e.encode(instance=self._instance) for e in events]
        except InvalidAuditEvent:
            INVALID_EVENTS.inc()
            raise
        futures = []
        for line in lines:
            await self._wait_space()
            futures.append(self._add(line))
        for fut in dict.fromkeys(futures):
            await fut

    def _add(self, line: bytes) -> BatchFuture:
        if self._closed:
            raise AuditError("the AuditLog is closed")
        batch = self._open
        if batch is None:
            if self._loop is None:
                self._start()
            assert self._loop is not None
            batch = self._open = Batch(self._loop)
        batch.lines.append(line)
        self._pending += 1
        if len(batch.lines) >= self._max_batch:
            self._ready.append(batch)
            self._open = None
        if not self._scheduled and self._inflight < self._max_inflight:
            self._scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self._pump)
        return batch.future

    async def _wait_space(self) -> None:
        while self._pending >= self._max_pending:
            if self._space is None:
                self._space = asyncio.Event()
            self._space.clear()
            await self._space.wait()

    def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._redis is not None:
            self._adopting = self._spawn(self._adopt_orphans())

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        assert self._loop is not None
        task: asyncio.Task[None] = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _pump(self) -> None:
        self._scheduled = False
        while self._inflight < self._max_inflight:
            if self._ready:
                batch = self._ready.popleft()
            elif self._open is not None:
                batch, self._open = self._open, None
            else:
                return
            self._inflight += 1
            self._sending.add(batch)
            self._spawn(self._send(batch))

    async def _send(self, batch: Batch) -> None:
        n = len(batch.lines)
        try:
            payload = b"\n".join(batch.lines)
            if self._sink is not None:
                await self._sink.write([payload])
                EVENTS_LOGGED.labels("sqlite").inc(n)
            else:
                await self._deliver(payload, n)
            self.entries_sent += 1
            self.events_sent += n
            ENTRY_EVENTS.observe(n)
            batch.future.set_result(None)
        except Exception as exc:
            err = exc if isinstance(exc, AuditError) else AuditError(f"audit write failed: {exc}")
            if err is not exc:
                err.__cause__ = exc
            batch.future.set_exception(err)
            batch.future.exception()  # retrieved here too: callers may all have been cancelled
        finally:
            self._sending.discard(batch)
            self._inflight -= 1
            self._pending -= n
            if self._space is not None and self._pending < self._max_pending:
                self._space.set()
            if (self._ready or self._open) and not self._scheduled:
                self._scheduled = True
                asyncio.get_running_loop().call_soon(self._pump)

    # --- Redis and the spool ----------------------------------------------------------------

    def _next_key(self) -> str:
        key = self._keys[self._rr]
        self._rr = (self._rr + 1) % len(self._keys)
        return key

    async def _deliver(self, payload: bytes, n: int) -> None:
        if not self._spooling:
            try:
                await xadd(self._redis, self._next_key(), payload, n, wait=self._wait)
                EVENTS_LOGGED.labels("redis").inc(n)
                return
            except Exception as exc:  # any failure: the spool keeps the event
                self._last_error = f"{type(exc).__name__}: {exc}"
                if not self._spooling:
                    log.warning("audit: Redis unavailable (%s); spooling events to %s",
                                self._last_error, self._spool.base)
                self._spooling = True
        await self._spool_append(payload, n)

    async def _spool_append(self, payload: bytes, n: int) -> None:
        async with self._spool_lock:
            self._spooling = True  # later entries must queue behind this one
            try:
                await asyncio.to_thread(self._spool.append, payload)
            except AuditError as exc:
                self._spool_error = str(exc)
                raise
            self._spool_error = None
        self.events_spooled += n
        EVENTS_SPOOLED.inc(n)
        EVENTS_LOGGED.labels("spool").inc(n)
        SPOOL_BYTES.set(self._spool.bytes)
        self._ensure_replayer()

    def _ensure_replayer(self) -> None:
        if (self._replayer is None or self._replayer.done()) and not self._closed:
            self._replayer = self._spawn(self._replay_loop())

    async def _adopt_orphans(self) -> None:
        try:
            adopted = await asyncio.to_thread(self._spool.adopt_orphans)
        except OSError as exc:
            log.warning("audit: cannot scan the spool directory: %s", exc)
            return
        if adopted:
            log.warning("audit: replaying %d spool(s) left by dead processes", adopted)
            self._ensure_replayer()

    async def _replay_loop(self) -> None:
        delay = self._probe_interval
        while True:
            try:
                assert self._redis is not None
                await self._redis.ping()
                if await self._replay_once():
                    log.warning("audit: spool replayed, back to Redis")
                    return
                delay = self._probe_interval
            except Exception as exc:
                self._last_error = f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _replay_once(self) -> bool:
        """Replay every sealed segment in order; True when the spool is empty afterwards."""
        async with self._spool_lock:
            segments = await asyncio.to_thread(self._spool.seal)
        for seg in segments:
            records = await asyncio.to_thread(list, read_records(seg))
            start = self._replay_offsets.get(seg, 0)
            for i in range(start, len(records), 64):
                chunk = records[i:i + 64]
                replayed = await xadd_many(self._redis,
                                           [(self._next_key(), payload) for payload in chunk])
                self._replay_offsets[seg] = i + len(chunk)
                self.events_replayed += replayed
                EVENTS_REPLAYED.inc(replayed)
            async with self._spool_lock:
                await asyncio.to_thread(self._spool.remove, seg)
            self._replay_offsets.pop(seg, None)
            SPOOL_BYTES.set(self._spool.bytes)
        async with self._spool_lock:
            if self._spool.empty:
                self._spooling = False
                return True
        return False

    # --- lifecycle ------------------------------------------------------------------------------

    async def flush(self) -> None:
        """Return once every event logged so far is durable (in Redis, the spool or SQLite)."""
        while self._open is not None or self._ready or self._sending:
            batches = [*self._sending, *self._ready, *([self._open] if self._open else [])]
            if not self._scheduled and self._inflight < self._max_inflight:
                self._scheduled = True
                asyncio.get_running_loop().call_soon(self._pump)
            await asyncio.gather(*(b.future for b in batches), return_exceptions=True)

    def _drained(self) -> bool:
        """Nothing left to replay: the spool is empty, we write to Redis again, and the scan for
        dead processes' spools has ended (until it has, their records are not known to exist)."""
        adopting = self._adopting is not None and not self._adopting.done()
        return self._spool.empty and not self._spooling and not adopting

    async def drain_spool(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the spool to be replayed; True when it is empty.

        That includes the spools of dead processes this log adopts when it starts.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._drained():
            if loop.time() >= deadline:
                return False
            self._ensure_replayer()
            await asyncio.sleep(0.05)
        return True

    async def aclose(self) -> None:
        """Flush, replay the spool if Redis is back (up to ``close_timeout``), release files.

        Whatever is still spooled stays on disk and is replayed by the next ``AuditLog`` that
        uses the same ``spool_dir``.
        """
        if self._closed:
            return
        await self.flush()
        if self._redis is not None and not self._drained():
            await self.drain_spool(self._close_timeout)
        self._closed = True
        # Whatever a task ended with, the spool's files and the sink are still to release.
        await cancel_and_wait(*self._tasks, ignore_errors=True)
        self._spool.close()
        if self._sink is not None:
            await self._sink.aclose()

    @property
    def spooling(self) -> bool:
        return self._spooling

    @property
    def sink(self) -> SqliteSink | None:
        """The embedded-mode SQLite sink (None in distributed mode)."""
        return self._sink

    async def health(self) -> ComponentStatus:
        """pass: writing to Redis (or SQLite); warn: spooling to disk; fail: spool unwritable."""
        if self._sink is not None:
            return ComponentStatus("pass", component_type="component", observed_value=self._pending,
                                   observed_unit="events", output="embedded: SQLite sink")
        details = {"spooled_events": self.events_spooled, "replayed_events": self.events_replayed,
                   "pending_events": self._pending}
        status: Status
        if self._spool_error:
            status, output = "fail", f"Redis unavailable and spool failing: {self._spool_error}"
        elif self._spooling or not self._spool.empty:
            status, output = "warn", f"spooling to disk: {self._last_error}"
        else:
            return ComponentStatus("pass", component_type="component",
                                   observed_value=self._pending, observed_unit="events",
                                   details=details)
        return ComponentStatus(status, component_type="component", observed_value=self._spool.bytes,
                               observed_unit="bytes", output=output, details=details)
