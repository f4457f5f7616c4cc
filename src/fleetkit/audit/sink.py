"""Where audit batches are stored: PostgreSQL (distributed mode) and SQLite (embedded mode).

PostgreSQL: a batch (one or more packed stream entries) is one transaction::

    COPY the raw JSON lines into a temporary table   (COPY has no ON CONFLICT; text, parsed once)
    INSERT INTO audit_events SELECT ... json_to_record(...) ON CONFLICT (event_id, time) DO NOTHING
        RETURNING the canonical row text → one digest over the rows this batch really inserted
    audit_link_batch(): chain the digest to the previous batch's hash (advisory lock until commit)
    COMMIT                                          (the caller XACKs only after this returns)

The JSON is parsed by PostgreSQL, so the Python side does no per-row work at all. A redelivered
entry inserts nothing (every event id already exists) and links no batch.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from fleetkit.audit.schema import CANON_SQL, ensure_partitions, month_of, qident
from fleetkit.errors import AuditError, BackendUnavailable

__all__ = ["GENESIS", "PostgresSink", "SinkDataError", "SqliteSink", "WriteResult",
           "chain_hash", "to_asyncpg_url"]

#: The previous hash of the first batch.
GENESIS = bytes(32)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_COLUMNS = ("event_id", "time", "actor", "action", "resource", "outcome", "reason", "client_ip",
            "user_agent", "request_id", "instance", "metadata")


class SinkDataError(AuditError):
    """The batch holds data the database refuses (a poison entry): retrying will not help."""


@dataclass(frozen=True, slots=True)
class WriteResult:
    events: int
    inserted: int
    batch_id: int | None

    @property
    def duplicates(self) -> int:
        return self.events - self.inserted


def chain_hash(prev: bytes, batch_id: int, digest: bytes) -> bytes:
    """hash = sha256(prev_hash || int8 big-endian batch_id || rows_digest) (as in SQL)."""
    return hashlib.sha256(prev + batch_id.to_bytes(8, "big", signed=True) + digest).digest()


def to_asyncpg_url(url: str) -> str:
    """Accept SQLAlchemy-style ``postgresql+asyncpg://`` URLs too (asyncpg wants the plain form)."""
    scheme, sep, rest = url.partition("://")
    if scheme.split("+")[0] not in ("postgresql", "postgres"):
        raise ValueError("the audit sink needs a postgresql:// URL")
    return f"postgresql{sep}{rest}"


def _insert_sql(schema: str) -> str:
    s = qident(schema)
    return f"""
WITH b AS MATERIALIZED (SELECT nextval('{s}.audit_batch_seq') AS id),
ins AS (
    INSERT INTO {s}.audit_events AS e ({", ".join(f'"{c}"' for c in _COLUMNS)}, batch_id)
    SELECT r.event_id, timestamptz 'epoch' + r."time" * interval '1 microsecond', r.actor,
           r.action, r.resource, r.outcome, r.reason, r.client_ip, r.user_agent, r.request_id,
           r.instance, coalesce(r.metadata, '{{}}'::jsonb), b.id
    FROM pg_temp.audit_in i CROSS JOIN b,
         json_to_record(i.j::json) AS r(event_id uuid, "time" bigint, actor text, action text,
                                  resource text, outcome text, reason text, client_ip inet,
                                  user_agent text, request_id text, instance text, metadata jsonb)
    ON CONFLICT (event_id, "time") DO NOTHING
    RETURNING {CANON_SQL} AS c, e.event_id, e."time"
), agg AS (
    SELECT count(*)::int AS n, min("time") AS lo, max("time") AS hi,
           sha256(convert_to(string_agg(c, E'\\n' ORDER BY event_id), 'UTF8')) AS d
    FROM ins
)
SELECT agg.n, b.id,
       CASE WHEN agg.n > 0 THEN {s}.audit_link_batch(b.id, agg.n, agg.d, agg.lo, agg.hi) END
FROM agg, b
"""


def _is_data_error(exc: BaseException) -> bool:
    state = getattr(exc, "sqlstate", None) or ""
    return isinstance(exc, asyncpg.PostgresError) and state[:2] in ("22", "23")


def _months(payloads: Sequence[bytes]) -> set[Any]:
    months = set()
    for payload in payloads:
        for line in payload.split(b"\n"):
            try:
                us = int(orjson.loads(line)["time"])
                months.add(month_of(_EPOCH + timedelta(microseconds=us)))
            except (ValueError, KeyError, TypeError, OverflowError):
                continue  # the poison line fails the insert later, with a clear error
    return months


class PostgresSink:
    """One asyncpg connection writing batches; reconnects after a connection failure."""

    def __init__(self, url: str, *, schema: str = "public", connect_timeout: float = 5.0,
                 command_timeout: float = 60.0) -> None:
        self.url = to_asyncpg_url(url)
        self.schema = schema
        qident(schema)
        self._sql = _insert_sql(schema)
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._conn: Any = None

    async def _connection(self) -> Any:
        if self._conn is None or self._conn.is_closed():
            try:
                conn = await asyncpg.connect(self.url, timeout=self._connect_timeout,
                                             command_timeout=self._command_timeout)
                # text, not json: a json column would parse every line once at COPY and
                # json_to_record again (the cast parses it once; ~6% of the transaction).
                await conn.execute("CREATE TEMP TABLE IF NOT EXISTS audit_in (j text) "
                                   "ON COMMIT DELETE ROWS")
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                raise BackendUnavailable(f"PostgreSQL unavailable: {exc}") from exc
            self._conn = conn
        return self._conn

    async def connection(self) -> Any:
        """The underlying asyncpg connection (opened on demand)."""
        return await self._connection()

    async def write(self, payloads: Sequence[bytes]) -> WriteResult:
        """Store the events of ``payloads`` (packed entries) in one transaction.

        Raises :class:`SinkDataError` when PostgreSQL refuses the data (retrying is useless) and
        :class:`~fleetkit.errors.BackendUnavailable` otherwise (retry later).
        """
        events = sum(p.count(b"\n") + 1 for p in payloads)
        for attempt in (1, 2):
            try:
                conn = await self._connection()
                return await self._write(conn, payloads, events)
            except asyncpg.CheckViolationError as exc:
                if "no partition" not in str(exc) or attempt == 2:
                    raise SinkDataError(f"audit batch refused: {exc}") from exc
                await ensure_partitions(conn, _months(payloads), self.schema)
            except (TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                if _is_data_error(exc):
                    raise SinkDataError(f"audit batch refused: {exc}") from exc
                await self._drop()
                raise BackendUnavailable(f"PostgreSQL write failed: {exc}") from exc
        raise AssertionError("unreachable")

    async def _write(self, conn: Any, payloads: Sequence[bytes], events: int) -> WriteResult:
        async def source() -> AsyncIterator[bytes]:
            yield b"\n".join(payloads) + b"\n"

        async with conn.transaction():
            # CSV with control characters as quote and delimiter: orjson escapes every control
            # character, so each JSON line is one field taken verbatim (text format would eat
            # the backslashes of JSON escapes).
            await conn.copy_to_table("audit_in", source=source(), format="csv",
                                     delimiter="\x02", quote="\x01")
            inserted, batch_id, _ = await conn.fetchrow(self._sql)
        return WriteResult(events, inserted, batch_id if inserted else None)

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), 5)
            except (TimeoutError, OSError, asyncpg.InterfaceError, asyncpg.PostgresError):
                conn.terminate()


# --- SQLite (embedded mode) -------------------------------------------------------------------

SQLITE_DDL = [
    """CREATE TABLE IF NOT EXISTS audit_events (
        event_id TEXT NOT NULL PRIMARY KEY, time TEXT NOT NULL, actor TEXT NOT NULL,
        action TEXT NOT NULL, resource TEXT NOT NULL,
        outcome TEXT NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
        reason TEXT, client_ip TEXT, user_agent TEXT, request_id TEXT, instance TEXT,
        metadata TEXT NOT NULL DEFAULT '{}', batch_id INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS audit_events_actor_time ON audit_events (actor, time)",
    "CREATE INDEX IF NOT EXISTS audit_events_resource_time ON audit_events (resource, time)",
    """CREATE TABLE IF NOT EXISTS audit_batches (
        batch_id INTEGER PRIMARY KEY, chain_pos INTEGER NOT NULL UNIQUE,
        row_count INTEGER NOT NULL, min_time TEXT NOT NULL, max_time TEXT NOT NULL,
        rows_digest BLOB NOT NULL, prev_hash BLOB NOT NULL, hash BLOB NOT NULL,
        created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)""",
    *(f"""CREATE TRIGGER IF NOT EXISTS {t}_no_{op.lower()} BEFORE {op} ON {t}
          BEGIN SELECT RAISE(ABORT, 'audit log is append-only: {op} refused'); END"""
      for t in ("audit_events", "audit_batches") for op in ("UPDATE", "DELETE")),
]


def _iso(us: int) -> str:
    return (_EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _sqlite_canon(row: Sequence[Any]) -> bytes:
    return orjson.dumps(list(row))


class SqliteSink:
    """The embedded-mode sink: same columns, append-only triggers and hash chain as PostgreSQL.

    sqlite3 calls run in a worker thread (one at a time) so the event loop never blocks.
    """

    def __init__(self, path: str | Path = "fleetkit-audit.db") -> None:
        self.path = str(path)
        self._db: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            for stmt in SQLITE_DDL:
                db.execute(stmt)
            self._db = db
        return self._db

    def _write(self, payloads: Sequence[bytes]) -> WriteResult:
        db = self._connect()
        docs = [orjson.loads(line) for p in payloads for line in p.split(b"\n")]
        db.execute("BEGIN IMMEDIATE")
        try:
            batch_id = (db.execute("SELECT coalesce(max(batch_id), 0) + 1 FROM audit_batches")
                        .fetchone() or (1,))[0]
            rows = []
            for d in docs:
                row = (d["event_id"], _iso(d["time"]), d["actor"], d["action"], d["resource"],
                       d["outcome"], d.get("reason"), d.get("client_ip"), d.get("user_agent"),
                       d.get("request_id"), d.get("instance"),
                       orjson.dumps(d.get("metadata") or {}).decode())
                cur = db.execute("INSERT OR IGNORE INTO audit_events VALUES "
                                 "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (*row, batch_id))
                if cur.rowcount == 1:
                    rows.append(row)
            if rows:
                self._link(db, batch_id, rows)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return WriteResult(len(docs), len(rows), batch_id if rows else None)

    @staticmethod
    def digest(rows: Sequence[Sequence[Any]]) -> bytes:
        ordered = sorted(rows, key=lambda r: str(r[0]))
        return hashlib.sha256(b"\n".join(_sqlite_canon(r) for r in ordered)).digest()

    def _link(self, db: sqlite3.Connection, batch_id: int, rows: list[Any]) -> None:
        last = db.execute("SELECT hash, chain_pos FROM audit_batches ORDER BY chain_pos DESC "
                          "LIMIT 1").fetchone()
        prev, pos = (last[0], last[1]) if last else (GENESIS, 0)
        digest = self.digest(rows)
        times = [r[1] for r in rows]
        db.execute("INSERT INTO audit_batches (batch_id, chain_pos, row_count, min_time, "
                   "max_time, rows_digest, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (batch_id, pos + 1, len(rows), min(times), max(times), digest, prev,
                    chain_hash(prev, batch_id, digest)))

    async def write(self, payloads: Sequence[bytes]) -> WriteResult:
        async with self._lock:
            try:
                return await asyncio.to_thread(self._write, payloads)
            except (sqlite3.Error, ValueError, KeyError) as exc:
                raise AuditError(f"SQLite audit write failed: {exc}") from exc

    def rows(self) -> list[tuple[Any, ...]]:
        """Every stored row grouped by batch (blocking; verification and tests)."""
        cur = self._connect().execute(
            f"SELECT batch_id, {', '.join(_COLUMNS)} FROM audit_events")
        return cur.fetchall()

    def batches(self) -> list[tuple[Any, ...]]:
        return self._connect().execute(
            "SELECT batch_id, chain_pos, row_count, rows_digest, prev_hash, hash "
            "FROM audit_batches ORDER BY chain_pos").fetchall()

    async def aclose(self) -> None:
        async with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
