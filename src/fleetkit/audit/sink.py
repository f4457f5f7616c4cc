"""Where audit batches are stored in embedded mode: SQLite.

The PostgreSQL sink (distributed mode) is :mod:`fleetkit.audit.pgsink`: it needs asyncpg, which
producing events must not (``PostgresSink`` is still importable from here, lazily). What both
sinks share is in :mod:`fleetkit.audit.batches` (re-exported here).
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from fleetkit.audit.batches import (
    COLUMNS,
    GENESIS,
    SinkDataError,
    WriteResult,
    chain_hash,
    to_asyncpg_url,
)
from fleetkit.errors import AuditError

if TYPE_CHECKING:
    from fleetkit.audit.pgsink import PostgresSink

__all__ = ["COLUMNS", "GENESIS", "PostgresSink", "SinkDataError", "SqliteSink", "WriteResult",
           "chain_hash", "to_asyncpg_url"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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
            f"SELECT batch_id, {', '.join(COLUMNS)} FROM audit_events")
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


def __getattr__(name: str) -> Any:
    # Backwards compatible ``from fleetkit.audit.sink import PostgresSink``, without importing
    # asyncpg for everyone who imports this module.
    if name == "PostgresSink":
        from fleetkit.audit.pgsink import PostgresSink

        return PostgresSink
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
