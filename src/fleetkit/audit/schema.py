"""PostgreSQL schema of the audit log: DDL, monthly partitions, retention.

``audit_events`` is range-partitioned by month on ``time``; partitions are created ahead (the
current month plus ``months_ahead``) at install and by the consumer, and on demand when a batch
holds an event outside them. Retention drops whole partitions (``fleetkit audit prune
--older-than 400d``): no row is ever deleted, which is what keeps the table append-only.

Append-only is enforced twice: a trigger refuses UPDATE, DELETE and TRUNCATE for everyone
(including the owner), and ``UPDATE``/``DELETE``/``TRUNCATE`` are revoked from ``PUBLIC``; give
the service role only what :func:`grant_statements` lists. Dropping a partition needs the owner,
so run ``prune`` (and migrations) as the owner role, never as the service role.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from typing import Any

from fleetkit.errors import ConfigError

__all__ = [
    "CANON_SQL",
    "add_months",
    "ddl_statements",
    "default_months",
    "drop_statements",
    "ensure_partitions",
    "grant_statements",
    "install",
    "month_of",
    "parse_age",
    "partition_ddl",
    "prune",
    "qident",
]

_IDENT_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_PART_RE = re.compile(r"audit_events_p(\d{4})(\d{2})")

#: Canonical text of a stored row, hashed into its batch's digest. It depends on no session
#: setting (time is rendered explicitly in UTC), so the consumer (in RETURNING) and `verify`
#: (over the stored rows) compute the same text.
CANON_SQL = (
    "ROW(event_id, to_char(\"time\" AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US'), actor,"
    " action, resource, outcome, reason, client_ip, user_agent, request_id, instance,"
    " metadata)::text"
)


def qident(schema: str) -> str:
    """Quote a schema name after checking it is a plain lower-case identifier."""
    if not _IDENT_RE.fullmatch(schema):
        raise ConfigError(f"invalid schema name {schema!r}: use [a-z_][a-z0-9_]*")
    return f'"{schema}"'


def _statements(schema: str) -> list[str]:
    text = resources.files("fleetkit.audit").joinpath("schema.sql").read_text(encoding="utf-8")
    text = text.replace("__S__", qident(schema))
    out = []
    for part in text.split("\n-- @@\n"):
        body = "\n".join(ln for ln in part.splitlines() if not ln.startswith("--")).strip()
        if body:
            out.append(body)
    return out


def ddl_statements(schema: str = "public") -> list[str]:
    """Every statement that installs the schema (idempotent), in order."""
    return _statements(schema)


def drop_statements(schema: str = "public") -> list[str]:
    """Statements that remove the audit tables (Alembic downgrade)."""
    s = qident(schema)
    return [f"DROP TABLE IF EXISTS {s}.audit_events CASCADE",
            f"DROP TABLE IF EXISTS {s}.audit_batches CASCADE",
            f"DROP TABLE IF EXISTS {s}.audit_retention CASCADE",
            f"DROP SEQUENCE IF EXISTS {s}.audit_batch_seq",
            f"DROP FUNCTION IF EXISTS {s}.audit_link_batch(bigint, integer, bytea, timestamptz,"
            " timestamptz)",
            f"DROP FUNCTION IF EXISTS {s}.audit_refuse_change() CASCADE"]


def grant_statements(role: str, schema: str = "public") -> list[str]:
    """What the service role needs: read and append, nothing that changes history."""
    s, r = qident(schema), qident(role)
    return [f"GRANT USAGE ON SCHEMA {s} TO {r}",
            f"GRANT SELECT, INSERT ON {s}.audit_events, {s}.audit_batches TO {r}",
            f"GRANT SELECT ON {s}.audit_retention TO {r}",
            f"GRANT USAGE ON SEQUENCE {s}.audit_batch_seq TO {r}"]


def month_of(value: datetime | date) -> date:
    return date(value.year, value.month, 1)


def add_months(month: date, n: int) -> date:
    index = month.year * 12 + month.month - 1 + n
    return date(index // 12, index % 12 + 1, 1)


def partition_ddl(month: date, schema: str = "public") -> str:
    """CREATE the partition holding ``month`` (bounds in UTC)."""
    s = qident(schema)
    end = add_months(month, 1)
    return (f"CREATE TABLE IF NOT EXISTS {s}.audit_events_p{month:%Y%m} PARTITION OF "
            f"{s}.audit_events FOR VALUES FROM ('{month:%Y-%m-%d} 00:00:00+00') "
            f"TO ('{end:%Y-%m-%d} 00:00:00+00')")


def default_months(now: datetime | None = None, *, months_ahead: int = 2) -> list[date]:
    current = month_of(now or datetime.now(UTC))
    return [add_months(current, i) for i in range(-1, months_ahead + 1)]


async def ensure_partitions(conn: Any, months: Iterable[date], schema: str = "public") -> None:
    """Create the partitions of ``months`` (asyncpg connection; safe against concurrent calls)."""
    wanted = sorted(set(months))
    if not wanted:
        return
    async with conn.transaction():
        # Two consumers creating the same partition would race on the catalog.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))",
                           f"fleetkit.audit_partitions:{schema}")
        for month in wanted:
            await conn.execute(partition_ddl(month, schema))


async def install(conn: Any, schema: str = "public", *, months_ahead: int = 2) -> None:
    """Install (or update) the schema and the partitions around now, on an asyncpg connection."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))",
                           f"fleetkit.audit_install:{schema}")
        for stmt in ddl_statements(schema):
            await conn.execute(stmt)
    await ensure_partitions(conn, default_months(months_ahead=months_ahead), schema)


def parse_age(text: str) -> timedelta:
    """``"400d"``, ``"12h"``, ``"90m"`` or ``"3600s"`` → timedelta."""
    m = re.fullmatch(r"\s*(\d+)\s*([dhms])\s*", text)
    if not m:
        raise ConfigError(f"{text!r} is not an age such as '400d'")
    n, unit = int(m.group(1)), m.group(2)
    return timedelta(**{{"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}[unit]: n})


async def list_partitions(conn: Any, schema: str = "public") -> list[date]:
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace "
        "WHERE p.relname = 'audit_events' AND n.nspname = $1", schema)
    months = []
    for row in rows:
        m = _PART_RE.fullmatch(row["relname"])
        if m:
            months.append(date(int(m.group(1)), int(m.group(2)), 1))
    return sorted(months)


async def prune(conn: Any, older_than: timedelta, schema: str = "public", *,
                now: datetime | None = None) -> list[str]:
    """Drop every partition whose rows are all older than ``now - older_than``.

    Returns the dropped partition names and records the new ``pruned_before`` watermark.
    """
    cutoff = (now or datetime.now(UTC)) - older_than
    s = qident(schema)
    dropped: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))",
                           f"fleetkit.audit_partitions:{schema}")
        watermark: datetime | None = None
        for month in await list_partitions(conn, schema):
            end = datetime.combine(add_months(month, 1), datetime.min.time(), UTC)
            if end > cutoff:
                break
            name = f"audit_events_p{month:%Y%m}"
            await conn.execute(f"ALTER TABLE {s}.audit_events DETACH PARTITION {s}.{name}")
            await conn.execute(f"DROP TABLE {s}.{name}")
            dropped.append(name)
            watermark = end
        if watermark is not None:
            await conn.execute(
                f"INSERT INTO {s}.audit_retention (id, pruned_before) VALUES (1, $1) "
                "ON CONFLICT (id) DO UPDATE SET pruned_before = "
                "greatest(audit_retention.pruned_before, EXCLUDED.pruned_before)", watermark)
    return dropped
