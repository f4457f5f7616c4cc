"""The PostgreSQL sink of the audit consumer (distributed mode); the only audit module that
needs asyncpg (producing events does not: ``fleetkit.audit`` imports this lazily).

A batch (one or more packed stream entries) is one transaction::

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
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson

from fleetkit.audit.batches import COLUMNS, SinkDataError, WriteResult, to_asyncpg_url
from fleetkit.audit.schema import CANON_SQL, ensure_partitions, month_of, qident
from fleetkit.errors import BackendUnavailable

__all__ = ["PostgresSink"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _insert_sql(schema: str) -> str:
    s = qident(schema)
    return f"""
WITH b AS MATERIALIZED (SELECT nextval('{s}.audit_batch_seq') AS id),
ins AS (
    INSERT INTO {s}.audit_events AS e ({", ".join(f'"{c}"' for c in COLUMNS)}, batch_id)
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
