"""Fault tests: stop/start the replica, pause its replay.

They run on the private primary + replica of tests/db/pgcluster.py (the ``pg_cluster``
fixture), never on the shared 5440/5441 pair, whose replica serves other test runs meanwhile.
The replica is still restarted (or its replay resumed) in ``finally``: later tests use it.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import sqlalchemy as sa
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from fleetkit.db import Database
from fleetkit.errors import DatabaseError
from tests.db.conftest import port_of, wait_for
from tests.db.pgcluster import PgCluster


async def test_replica_stop_fails_over_then_comes_back(pg_cluster: PgCluster) -> None:
    PRIMARY_PORT, REPLICA_PORT = pg_cluster.primary_port, pg_cluster.replica_port
    db = Database(pg_cluster.primary_url, read_urls=[pg_cluster.replica_url], write_pool_size=12,
                  read_pool_size=12, health_interval=0.5, connect_timeout=2.0)
    replica = db.replicas[0]
    done: list[tuple[float, int]] = []          # (started, port) of each successful read
    failed: list[tuple[float, str]] = []        # (started, error) of each failed read
    stop = asyncio.Event()

    async def reader(i: int) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                if i % 2:
                    port = await db.run_read(port_of)
                else:
                    async with db.read() as conn:
                        port = await port_of(conn)
                done.append((started, port))
            except DatabaseError as exc:
                failed.append((started, f"{'run_read' if i % 2 else 'read'}: {exc}"))
            await asyncio.sleep(0.005)

    await db.start()
    tasks = [asyncio.create_task(reader(i)) for i in range(8)]
    try:
        assert await wait_for(lambda: _async(len(done) > 200))
        stopping = time.monotonic()
        try:
            await asyncio.to_thread(pg_cluster.stop_replica)
            assert await wait_for(lambda: _async(not replica.healthy), seconds=20)
            detected = replica.changed_at
            n = len(done)
            assert await wait_for(lambda: _async(len(done) > n + 100), seconds=20)
        finally:
            await asyncio.to_thread(pg_cluster.start_replica)
        # The monitor's next successful check puts it back, and reads use it again.
        assert await wait_for(lambda: _async(replica.healthy), seconds=60)
        back = replica.changed_at
        assert await wait_for(
            lambda: _async(any(s > back and p == REPLICA_PORT for s, p in done)), seconds=20)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await db.aclose()
    after_detection = [e for s, e in failed if s >= detected]
    assert after_detection == []
    assert not [e for e in failed if e[1].startswith("run_read")]
    during = {p for s, p in done if detected <= s < back}
    assert during == {PRIMARY_PORT}
    assert {p for s, p in done if s < stopping} == {REPLICA_PORT}


async def test_paused_replay_is_lag_and_read_your_writes_goes_to_primary(
        pg_cluster: PgCluster) -> None:
    PRIMARY_PORT, REPLICA_PORT = pg_cluster.primary_port, pg_cluster.replica_port
    db = Database(pg_cluster.primary_url, read_urls=[pg_cluster.replica_url], write_pool_size=4,
                  read_pool_size=4, health_interval=60, max_replica_lag=0.5)
    direct = create_async_engine(
        pg_cluster.replica_url.replace("postgresql://", "postgresql+asyncpg://"))
    table = f"fk_test_{uuid.uuid4().hex[:12]}"
    try:
        await db.start()
        async with db.write() as conn:
            await conn.execute(text(f"CREATE TABLE {table} (id int PRIMARY KEY)"))
        created = await db.current_lsn()
        async with db.read(lsn=created) as conn:
            await conn.execute(text(f"SELECT count(*) FROM {table}"))
        assert await wait_for(lambda: _replica_has(direct, table))
        await db.check()
        assert db.replicas[0].healthy
        async with direct.connect() as rconn:
            await rconn.execute(text("SELECT pg_wal_replay_pause()"))
            await rconn.commit()
            try:
                async with db.write() as conn:
                    await conn.execute(text(f"INSERT INTO {table} VALUES (1)"))
                token = await db.current_lsn()
                # The replica really is stale: the row is not there...
                stale = (await rconn.execute(text(f"SELECT count(*) FROM {table}"))).scalar()
                await rconn.rollback()
                assert stale == 0
                # ...so a read with the token goes to the primary and sees it.
                async with db.read(lsn=token) as conn:
                    assert await port_of(conn) == PRIMARY_PORT
                    assert (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar() == 1
                # The driver path (fetch_all) routes the same way.
                ids = sa.select(sa.table(table, sa.column("id")).c.id)
                assert [r["id"] for r in await db.fetch_all(ids, lsn=token)] == [1]

                async def lagging() -> bool:
                    async with db.write() as conn:  # keep the primary ahead of the replica
                        await conn.execute(text(f"UPDATE {table} SET id = id WHERE id = 1"))
                    await db.check()
                    return not db.replicas[0].healthy

                assert await wait_for(lagging, seconds=30, every=0.2)
                assert "replay lag" in (db.replicas[0].reason or "")
                assert (db.replicas[0].lag_seconds or 0) > 0.5
                async with db.read() as conn:  # no healthy replica: the primary
                    assert await port_of(conn) == PRIMARY_PORT
            finally:
                await rconn.execute(text("SELECT pg_wal_replay_resume()"))
                await rconn.commit()

        async def caught_up() -> bool:
            await db.check()
            return db.replicas[0].healthy

        assert await wait_for(caught_up, seconds=30, every=0.2)
        async with db.read(lsn=token) as conn:
            assert await port_of(conn) == REPLICA_PORT
            assert (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar() == 1
    finally:
        async with direct.connect() as rconn:  # belt and braces: never leave replay paused
            await rconn.execute(text("SELECT pg_wal_replay_resume()"))
            await rconn.commit()
        await direct.dispose()
        async with db.write() as conn:
            await conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
        await db.aclose()


async def _async(value: bool) -> bool:
    return value


async def _replica_has(engine, table: str) -> bool:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        found = (await conn.execute(text("SELECT to_regclass(:t)"), {"t": table})).scalar()
    return found is not None
