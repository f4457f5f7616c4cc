"""Embedded mode: the same API on SQLite (aiosqlite), no replicas."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import text

from fleetkit.config import load_settings
from fleetkit.db import Database, migrate
from fleetkit.errors import ConfigError, DatabaseError
from tests.support import PG_REPLICA_URL


async def test_sqlite_same_api(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    result = await migrate(url)
    assert result.applied and result.before is None
    db = Database.from_settings(load_settings(env={"DATABASE_URL": url}))
    try:
        await db.start()
        assert db.embedded and db.replicas == []
        async with db.write() as conn:
            await conn.execute(text("INSERT INTO fleetkit_meta (key, value) VALUES ('k', 'v')"))
        assert await db.current_lsn() is None
        async with db.read(lsn="0/1") as conn:
            value = (await conn.execute(text("SELECT value FROM fleetkit_meta WHERE key='k'"))
                     ).scalar()
        assert value == "v"
        assert await db.run_read(
            lambda c: _scalar(c, "SELECT count(*) FROM fleetkit_meta")) == 2
        meta = sa.table("fleetkit_meta", sa.column("key"), sa.column("value"))
        row = await db.fetch_one(sa.select(meta.c.value).where(meta.c.key == sa.bindparam("k")),
                                 {"k": "k"})
        assert row is not None and row["value"] == "v"
        with pytest.raises(DatabaseError):
            async with db.write() as conn:
                await conn.execute(text("INSERT INTO fleetkit_meta (key, value) VALUES ('k', 'x')"))
        async with db.session() as session:
            assert (await session.execute(text("SELECT value FROM fleetkit_meta WHERE key='k'"))
                    ).scalar() == "v"
        status = await db.health()
        assert status.status == "pass" and set(db.health_checks()) == {"write"}
    finally:
        await db.aclose()


async def test_sqlite_memory_and_no_replicas() -> None:
    db = Database("sqlite+aiosqlite://")
    try:
        async with db.write() as conn:
            await conn.execute(text("CREATE TABLE t (i int)"))
            await conn.execute(text("INSERT INTO t VALUES (7)"))
        async with db.read() as conn:
            assert (await conn.execute(text("SELECT i FROM t"))).scalar() == 7
    finally:
        await db.aclose()
    with pytest.raises(ConfigError):
        Database("sqlite://", read_urls=[PG_REPLICA_URL])


async def _scalar(conn, sql: str) -> object:  # type: ignore[no-untyped-def]
    return (await conn.execute(text(sql))).scalar()
