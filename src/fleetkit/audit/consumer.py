"""The consumer (``fleetkit worker audit``): stream shards → PostgreSQL, at least once, no dups.

One task per shard, each with its own PostgreSQL connection, in consumer group ``audit``:

1. On start it re-reads its own pending entries (``XREADGROUP ... 0``): what it had read before
   a crash and not acknowledged.
2. Then ``XREADGROUP ... >`` batches of up to ``batch_entries`` entries (each entry holds many
   events) and writes each batch in one transaction (:class:`PostgresSink`); ``XACK`` only after
   the commit. A crash between commit and XACK re-delivers the entries, whose rows then conflict
   on ``event_id`` and are skipped: rows are exactly-once even though delivery is at-least-once.
3. Every ``claim_interval`` it takes over entries idle for ``claim_min_idle`` (``XAUTOCLAIM``):
   those of dead consumers, and its own entries that failed.
4. An entry delivered more than ``max_deliveries`` times is moved to the dead-letter stream by a
   script (XADD there, then XACK, atomically). A batch PostgreSQL refuses as data is retried entry
   by entry, so one poison entry does not hold back the rest.

Maintenance (every ``trim_interval``): trim each shard with ``XTRIM MINID`` below the oldest id
still needed by any group (the oldest pending id, or the first undelivered one), export lag and
pending gauges, and create the partitions of the coming months. Scale out by running more
consumers (distinct names); the group spreads entries between them. ``stop()`` (SIGTERM) finishes
the batch in hand, acknowledges it and returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fleetkit.audit.metrics import (
    BATCH_EVENTS,
    CONSUMER_LAG,
    CONSUMER_PENDING,
    DEAD_LETTERS,
    DUPLICATES,
    ROWS_INSERTED,
    SINK_ERRORS,
)
from fleetkit.audit.pgsink import PostgresSink
from fleetkit.audit.schema import default_months, ensure_partitions
from fleetkit.audit.sink import SinkDataError
from fleetkit.audit.streams import DEFAULT_PREFIX, GROUP, dead_key, stream_key
from fleetkit.errors import BackendUnavailable, ConfigError
from fleetkit.health.status import ComponentStatus
from fleetkit.redis import Script
from fleetkit.tasks import cancel_and_wait

if TYPE_CHECKING:
    from fleetkit.config import Settings

__all__ = ["AuditConsumer"]

log = logging.getLogger("fleetkit.audit.consumer")

DEAD_LETTER = Script.from_package("fleetkit.audit", "dead_letter.lua")

Entry = tuple[bytes, dict[bytes, bytes] | None]


class _Stopping(Exception):
    """Raised inside a shard loop to leave a batch un-acknowledged because we are stopping."""


def _next_id(entry_id: bytes) -> str:
    ms, _, seq = entry_id.decode().partition("-")
    return f"{ms}-{int(seq or 0) + 1}"


def _entries(reply: Any) -> list[Entry]:
    """XREADGROUP reply (one stream) → [(id, fields or None if the entry was trimmed)]."""
    if not reply:
        return []
    items = reply[0][1] if isinstance(reply, list) else next(iter(reply.values()))[0]
    return [(eid, fields or None) for eid, fields in items]


class AuditConsumer:
    """Moves audit events from the stream shards into PostgreSQL (see the module docstring)."""

    def __init__(
        self, *, redis: Any, database_url: str, consumer: str, schema: str = "public",
        shards: int = 4, prefix: str = DEFAULT_PREFIX, group: str = GROUP,
        batch_entries: int = 64, block_ms: int = 500, max_deliveries: int = 5,
        claim_min_idle: float = 30.0, claim_interval: float = 5.0, trim_interval: float = 5.0,
        dead_maxlen: int = 100_000, retry_delay: float = 0.2,
    ) -> None:
        if shards < 1 or batch_entries < 1 or max_deliveries < 1:
            raise ConfigError("shards, batch_entries and max_deliveries must be >= 1")
        self._redis = redis
        self._url = database_url
        self._schema = schema
        self._consumer = consumer
        self._shards = shards
        self._prefix = prefix
        self._group = group
        self._count = batch_entries
        self._block = block_ms
        self._max_deliveries = max_deliveries
        self._claim_idle_ms = int(claim_min_idle * 1000)
        self._claim_interval = claim_interval
        self._trim_interval = trim_interval
        self._dead_maxlen = dead_maxlen
        self._retry_delay = retry_delay
        self._stopping = asyncio.Event()
        self._last_error: str | None = None
        self._last_progress = time.monotonic()
        #: Counters for tests, health and benchmarks.
        self.events = 0
        self.rows_inserted = 0
        self.duplicates = 0
        self.dead_letters = 0
        self.batches = 0

    @classmethod
    def from_settings(cls, settings: Settings, *, redis: Any, consumer: str | None = None,
                      **overrides: Any) -> AuditConsumer:
        """From ``DATABASE_URL`` (must be PostgreSQL) and ``AUDIT_*`` settings; ``consumer``
        defaults to ``INSTANCE_ID``. ``redis``: a client whose socket timeout exceeds
        ``block_ms`` (XREADGROUP BLOCK must return first)."""
        url = settings.database_url
        if not url.split("://", 1)[0].startswith("postgres"):
            raise ConfigError("the audit consumer needs a postgresql:// DATABASE_URL (in "
                              "embedded mode AuditLog writes to SQLite itself)")
        options: dict[str, Any] = dict(shards=settings.audit_stream_shards,
                                       max_deliveries=settings.audit_max_deliveries)
        options.update(overrides)
        return cls(redis=redis, database_url=url, consumer=consumer or settings.instance_id,
                   **options)

    def stop(self) -> None:
        """Ask every shard loop to finish its batch in hand and return (signal-handler safe)."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self) -> None:
        """Consume until :meth:`stop`."""
        tasks = [asyncio.create_task(self._shard_loop(i)) for i in range(self._shards)]
        tasks.append(asyncio.create_task(self._maintenance()))
        try:
            await asyncio.gather(*tasks)
        finally:
            # A loop that crashed is what gather has just raised: nothing to raise again.
            await cancel_and_wait(*tasks, ignore_errors=True)

    # --- one shard ------------------------------------------------------------------------------

    async def _ensure_group(self, key: str) -> None:
        try:
            await self._redis.xgroup_create(key, self._group, id="0", mkstream=True)
        except Exception as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _shard_loop(self, shard: int) -> None:
        key = stream_key(self._prefix, shard)
        sink = PostgresSink(self._url, schema=self._schema)
        backlog: str | None = "0"  # own pending entries first (what we held before a crash)
        need_group = True
        next_claim = 0.0
        try:
            while not self._stopping.is_set():
                try:
                    if need_group:
                        await self._ensure_group(key)
                        need_group = False
                    if backlog is not None:
                        entries = _entries(await self._redis.xreadgroup(
                            self._group, self._consumer, {key: backlog}, count=self._count))
                        if not entries:
                            backlog = None
                            continue
                        backlog = entries[-1][0].decode()
                        await self._handle(shard, key, sink, entries, check=True)
                        continue
                    if time.monotonic() >= next_claim:
                        next_claim = time.monotonic() + self._claim_interval
                        reply = await self._redis.xautoclaim(
                            key, self._group, self._consumer, self._claim_idle_ms, "0-0",
                            count=self._count)
                        claimed = [(eid, f or None) for eid, f in reply[1]]
                        if claimed:
                            await self._handle(shard, key, sink, claimed, check=True)
                    entries = _entries(await self._redis.xreadgroup(
                        self._group, self._consumer, {key: ">"}, count=self._count,
                        block=self._block))
                    if entries:
                        await self._handle(shard, key, sink, entries, check=False)
                except _Stopping:
                    return
                except Exception as exc:  # Redis down or restarting: wait, then resume
                    self._last_error = f"{type(exc).__name__}: {exc}"
                    log.warning("audit consumer shard %d: %s", shard, self._last_error,
                                exc_info=not isinstance(exc, BackendUnavailable | OSError))
                    need_group = True
                    backlog = "0"  # an XACK may have been lost: re-read what we hold
                    await self._sleep(self._retry_delay)
        finally:
            await sink.aclose()

    async def _delivery_counts(self, key: str, entries: Sequence[Entry]) -> dict[bytes, int]:
        ids = sorted(e[0] for e in entries)
        rows = await self._redis.xpending_range(key, self._group, ids[0], ids[-1],
                                                10 * len(ids) + 100, consumername=self._consumer)
        return {row["message_id"]: int(row["times_delivered"]) for row in rows}

    async def _dead_letter(self, shard: int, key: str, entry_id: bytes, deliveries: int,
                           reason: str) -> None:
        await DEAD_LETTER(self._redis, [key, dead_key(self._prefix, shard)],
                          [self._group, entry_id, deliveries, reason[:500], self._dead_maxlen])
        self.dead_letters += 1
        DEAD_LETTERS.labels(str(shard)).inc()
        log.error("audit: entry %s of %s moved to the dead-letter stream after %d deliveries: %s",
                  entry_id.decode(), key, deliveries, reason)

    async def _handle(self, shard: int, key: str, sink: PostgresSink, entries: list[Entry],
                      *, check: bool) -> None:
        acks: list[bytes] = [eid for eid, fields in entries if fields is None]  # trimmed away
        live = [(eid, fields) for eid, fields in entries if fields is not None]
        if check and live:
            counts = await self._delivery_counts(key, live)
            kept = []
            for eid, fields in live:
                n = counts.get(eid, 1)
                if n > self._max_deliveries:
                    await self._dead_letter(shard, key, eid, n, "too many deliveries")
                else:
                    kept.append((eid, fields))
            live = kept
        payloads: list[tuple[bytes, bytes]] = []
        for eid, fields in live:
            payload = fields.get(b"e") if fields else None
            if payload:
                payloads.append((eid, payload))
            else:  # not an audit entry at all: nothing can ever make it valid
                await self._dead_letter(shard, key, eid, 1, "malformed entry (no 'e' field)")
        if payloads:
            try:
                await self._write(shard, sink, [p for _, p in payloads])
                acks += [eid for eid, _ in payloads]
            except SinkDataError:
                # One poison entry must not hold back the others: retry them one by one and
                # leave the refused ones pending (redelivered by XAUTOCLAIM, then dead-lettered).
                for eid, payload in payloads:
                    try:
                        await self._write(shard, sink, [payload])
                        acks.append(eid)
                    except SinkDataError as exc:
                        SINK_ERRORS.labels("data").inc()
                        self._last_error = str(exc)
                        log.warning("audit: entry %s of %s refused: %s", eid.decode(), key, exc)
        if acks:
            await self._redis.xack(key, self._group, *acks)
        self._last_progress = time.monotonic()

    async def _write(self, shard: int, sink: PostgresSink, payloads: list[bytes]) -> None:
        """Write one batch, retrying while PostgreSQL is unavailable (until stop)."""
        delay = self._retry_delay
        while True:
            try:
                result = await sink.write(payloads)
                break
            except BackendUnavailable as exc:
                SINK_ERRORS.labels("unavailable").inc()
                self._last_error = str(exc)
                if self._stopping.is_set():
                    raise _Stopping from exc
                await self._sleep(delay)
                delay = min(delay * 2, 5.0)
        self.batches += 1
        self.events += result.events
        self.rows_inserted += result.inserted
        self.duplicates += result.duplicates
        BATCH_EVENTS.observe(result.events)
        ROWS_INSERTED.labels(str(shard)).inc(result.inserted)
        if result.duplicates:
            DUPLICATES.labels(str(shard)).inc(result.duplicates)

    # --- maintenance ----------------------------------------------------------------------------

    async def _maintenance(self) -> None:
        sink = PostgresSink(self._url, schema=self._schema)
        next_partitions = 0.0
        try:
            while not self._stopping.is_set():
                try:
                    if time.monotonic() >= next_partitions:
                        conn = await sink.connection()
                        await ensure_partitions(conn, default_months(), self._schema)
                        next_partitions = time.monotonic() + 3600
                    for shard in range(self._shards):
                        await self.trim(shard)
                except Exception as exc:
                    self._last_error = f"{type(exc).__name__}: {exc}"
                    log.warning("audit consumer maintenance: %s", self._last_error)
                await self._sleep(self._trim_interval)
        finally:
            await sink.aclose()

    async def trim(self, shard: int) -> int:
        """Drop the entries of ``shard`` that every group has acknowledged; return how many.

        The threshold is the oldest id any group still needs: its oldest pending entry, or the
        entry after its last delivered one. Unacknowledged entries are never trimmed.
        """
        key = stream_key(self._prefix, shard)
        groups = await self._redis.xinfo_groups(key)
        if not groups:
            return 0
        floor: tuple[int, int] | None = None
        for g in groups:
            name = g["name"]
            summary = await self._redis.xpending(key, name)
            pending = int(summary["pending"])
            need = summary["min"] if pending else _next_id(g["last-delivered-id"]).encode()
            ms, _, seq = need.decode().partition("-")
            candidate = (int(ms), int(seq or 0))
            floor = candidate if floor is None or candidate < floor else floor
            if (name.decode() if isinstance(name, bytes) else name) == self._group:
                CONSUMER_PENDING.labels(str(shard)).set(pending)
                lag = g.get("lag")
                if lag is not None:
                    CONSUMER_LAG.labels(str(shard)).set(int(lag))
        assert floor is not None
        trimmed: int = await self._redis.execute_command(
            "XTRIM", key, "MINID", f"{floor[0]}-{floor[1]}")
        return trimmed

    async def health(self) -> ComponentStatus:
        """pass while making progress; warn with the last error while retrying."""
        idle = time.monotonic() - self._last_progress
        if self._last_error and idle > 30:
            return ComponentStatus("warn", component_type="component", observed_value=idle,
                                   observed_unit="s", output=self._last_error)
        return ComponentStatus("pass", component_type="component", observed_value=self.events,
                               observed_unit="events",
                               details={"rows": self.rows_inserted, "dead": self.dead_letters})
