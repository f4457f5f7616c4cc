"""Fixtures for the database router tests: the real primary (5440) and streaming replica (5441)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from fleetkit.db import Database, parse_lsn
from tests.db.pgcluster import PgCluster
from tests.support import PG_PRIMARY_URL, PG_REPLICA_URL

PRIMARY_PORT = 5440
REPLICA_PORT = 5441


async def port_of(conn: AsyncConnection) -> int:
    return int((await conn.execute(text("SELECT inet_server_port()"))).scalar_one())


async def wait_for(predicate_coro, *, seconds: float = 30.0, every: float = 0.1) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await predicate_coro():
            return True
        await asyncio.sleep(every)
    return False


async def wait_replayed(db: Database, lsn: str, seconds: float = 30.0) -> None:
    """Until the replica has replayed ``lsn`` (used after DDL the test needs on the replica)."""
    target = parse_lsn(lsn)

    async def replayed() -> bool:
        async with db.replicas[0].engine.connect() as conn:
            value = (await conn.execute(text("SELECT pg_last_wal_replay_lsn()::text"))).scalar()
        return value is not None and parse_lsn(value) >= target

    assert await wait_for(replayed, seconds=seconds), "replica did not replay in time"


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    database = Database(PG_PRIMARY_URL, read_urls=[PG_REPLICA_URL], write_pool_size=8,
                        read_pool_size=8, health_interval=0.5, connect_timeout=2.0,
                        name=f"t-{uuid.uuid4().hex[:8]}")
    await database.start()
    yield database
    await database.aclose()


@pytest.fixture
async def table(db: Database) -> AsyncIterator[str]:
    """A unique scratch table on the primary, replicated before the test starts."""
    name = f"fk_test_{uuid.uuid4().hex[:12]}"
    async with db.write() as conn:
        await conn.execute(text(f"CREATE TABLE {name} (id int PRIMARY KEY, note text)"))
    lsn = await db.current_lsn()
    assert lsn is not None
    await wait_replayed(db, lsn)
    yield name
    async with db.write() as conn:
        await conn.execute(text(f"DROP TABLE IF EXISTS {name}"))


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """A private primary + streaming replica that fault tests may stop, pause or hold in
    shutdown (the shared 5440/5441 pair serves everyone's tests meanwhile)."""
    cluster = PgCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()
