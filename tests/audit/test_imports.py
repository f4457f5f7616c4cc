"""Producing audit events needs no PostgreSQL driver (#16), and from_settings builds both ends.

The producer runs in a subprocess whose import system refuses asyncpg, SQLAlchemy, Alembic and
aiosqlite (a ``sys.meta_path`` finder raising ImportError), then logs a real event to Redis; the
test reads the entry back from the stream.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from fleetkit.audit import AuditConsumer, AuditLog
from fleetkit.audit.streams import stream_keys
from fleetkit.config import load_settings
from fleetkit.errors import ConfigError
from tests.support import PG_PRIMARY_URL, REDIS_URL, ROOT

_BLOCKER = """
import sys

BLOCKED = ("asyncpg", "sqlalchemy", "alembic", "aiosqlite")

class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, _Blocker())
"""


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _BLOCKER + textwrap.dedent(code)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_the_blocker_really_blocks() -> None:
    proc = _run("import fleetkit.audit\nfleetkit.audit.AuditConsumer\n")
    assert proc.returncode != 0
    assert "asyncpg is blocked" in proc.stderr


async def test_produce_an_event_without_asyncpg_or_sqlalchemy(redis: Any, tmp_path: Path,
                                                               prefix: str) -> None:
    proc = _run(f"""
        import asyncio
        import fleetkit.audit
        from fleetkit.audit import AuditEvent, AuditLog
        from fleetkit.redis import create_client

        async def main():
            client = create_client({REDIS_URL!r})
            log = AuditLog(redis=client, shards=1, prefix={prefix!r},
                           spool_dir={str(tmp_path / "spool")!r})
            await log.log(AuditEvent(actor="u1", action="login", resource="session/1",
                                     outcome="success"))
            await log.aclose()
            await client.aclose()
            print("sent", log.events_sent, "spooled", log.events_spooled)

        asyncio.run(main())
        loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set(BLOCKED))
        print("loaded", loaded)
    """)
    assert proc.returncode == 0, proc.stderr
    assert "sent 1 spooled 0" in proc.stdout
    assert "loaded []" in proc.stdout
    entries = await redis.xrange(stream_keys(prefix, 1)[0])
    assert len(entries) == 1
    fields = entries[0][1]
    assert fields[b"n"] == b"1" and b'"action":"login"' in fields[b"e"]


async def test_audit_log_from_settings(tmp_path: Path) -> None:
    settings = load_settings({"AUDIT_SPOOL_DIR": str(tmp_path / "spool"),
                              "AUDIT_STREAM_SHARDS": "3", "INSTANCE_ID": "pod-7"})
    log = AuditLog.from_settings(settings)  # no redis: embedded, SQLite next to the spool
    try:
        assert log.sink is not None and log.sink.path == str(tmp_path / "audit.db")
        assert log._keys == stream_keys("fleetkit:audit", 3)
        assert log._instance == "pod-7"
    finally:
        await log.aclose()
    override = AuditLog.from_settings(settings, sqlite_path=tmp_path / "other.db")
    try:
        assert override.sink is not None and override.sink.path == str(tmp_path / "other.db")
    finally:
        await override.aclose()


def test_audit_consumer_from_settings(redis: Any) -> None:
    settings = load_settings({"DATABASE_URL": PG_PRIMARY_URL, "AUDIT_STREAM_SHARDS": "2",
                              "AUDIT_MAX_DELIVERIES": "7", "INSTANCE_ID": "pod-3"})
    consumer = AuditConsumer.from_settings(settings, redis=redis, batch_entries=16)
    assert (consumer._url, consumer._consumer, consumer._shards, consumer._max_deliveries,
            consumer._count) == (PG_PRIMARY_URL, "pod-3", 2, 7, 16)
    embedded = load_settings({"DATABASE_URL": "sqlite+aiosqlite:///x.db"})
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        AuditConsumer.from_settings(embedded, redis=redis)
