"""Every "this server cannot serve now" answer fails over like a refused connection (#15).

On a private primary + replica (tests/db/pgcluster.py): the shared pair must not be held in
shutdown while others test. Each test first proves the server really answers the SQLSTATE
under test to a new connection, then that the router's read succeeded elsewhere (or the write
is a DatabaseUnavailable, a 503, never a bare DatabaseError, a 500).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY
from sqlalchemy import text

from fleetkit.db import Database, is_connection_error
from fleetkit.errors import DatabaseUnavailable
from tests.db.conftest import port_of, wait_for
from tests.db.pgcluster import PgCluster

PORT = sa.select(sa.func.inet_server_port().label("port"))


async def _refusal(url: str) -> str:
    """The SQLSTATE a new connection to ``url`` gets ("" if it connects)."""
    try:
        conn = await asyncpg.connect(url, timeout=5)
    except asyncpg.PostgresError as exc:
        return str(exc.sqlstate)
    await conn.close()
    return ""


@pytest.fixture
async def replica_shutting_down(pg_cluster: PgCluster) -> AsyncIterator[PgCluster]:
    """The private replica in a smart shutdown: a held session keeps it alive, and every new
    connection is refused with 57P03 cannot_connect_now ("the database system is shutting
    down") — what a replica being stopped answers while its last sessions finish."""
    holder = await asyncpg.connect(pg_cluster.replica_url)
    try:
        pg_cluster.stop_replica("smart", wait=False)

        async def refusing() -> bool:
            return await _refusal(pg_cluster.replica_url) == "57P03"

        assert await wait_for(refusing, seconds=30), "the replica never answered 57P03"
        yield pg_cluster
    finally:
        await holder.close()
        await asyncio.to_thread(pg_cluster.wait_stopped, pg_cluster.replica_dir)
        await asyncio.to_thread(pg_cluster.start_replica)


def _failovers(db: Database) -> float:
    return REGISTRY.get_sample_value(
        "fleetkit_db_failovers_total", {"db": db.name, "replica": db.replicas[0].name}) or 0.0


async def _read_port(db: Database, api: str) -> int:
    lsn = await db.current_lsn() if api.endswith("_lsn") else None
    if api.startswith("read"):
        async with db.read(lsn=lsn) as conn:
            return await port_of(conn)
    if api.startswith("run_read"):
        return await db.run_read(port_of, lsn=lsn)
    if api.startswith("fetch_all"):  # the driver path GET /v1/me takes
        return int((await db.fetch_all(PORT, lsn=lsn))[0]["port"])
    row = await db.fetch_one(PORT, lsn=lsn)
    assert row is not None
    return int(row["port"])


def _router(cluster: PgCluster, read_url: str) -> Database:
    # Not started and a long interval: the replica is still "healthy" (never checked), so the
    # read really goes to it first and meets the refusal on a new pooled connection.
    return Database(cluster.primary_url, read_urls=[read_url], health_interval=60,
                    write_pool_size=2, read_pool_size=2, name=f"t-{uuid.uuid4().hex[:8]}")


@pytest.mark.parametrize("api", ["read", "run_read", "fetch_all", "fetch_one",
                                 "read_lsn", "fetch_all_lsn"])
async def test_replica_shutting_down_57P03_reads_fail_over(
        replica_shutting_down: PgCluster, api: str) -> None:
    cluster = replica_shutting_down
    db = _router(cluster, cluster.replica_url)
    try:
        assert db.replicas[0].healthy
        assert await _read_port(db, api) == cluster.primary_port
        replica = db.replicas[0]
        assert not replica.healthy
        assert "shutting down" in (replica.reason or "")
        assert _failovers(db) == 1.0
        # Later reads skip it at once and stay on the primary.
        assert await _read_port(db, api) == cluster.primary_port
        assert _failovers(db) == 1.0
    finally:
        await db.aclose()


async def test_write_to_primary_shutting_down_is_unavailable(pg_cluster: PgCluster) -> None:
    holder = await asyncpg.connect(pg_cluster.primary_url)
    db = _router(pg_cluster, pg_cluster.replica_url)
    try:
        pg_cluster.stop_primary("smart", wait=False)

        async def refusing() -> bool:
            return await _refusal(pg_cluster.primary_url) == "57P03"

        assert await wait_for(refusing, seconds=30), "the primary never answered 57P03"
        with pytest.raises(DatabaseUnavailable) as caught:
            async with db.write() as conn:
                await conn.execute(text("SELECT 1"))
        assert "shutting down" in str(caught.value)
        assert is_connection_error(caught.value.__cause__)  # type: ignore[arg-type]
    finally:
        await db.aclose()
        await holder.close()
        await asyncio.to_thread(pg_cluster.wait_stopped, pg_cluster.primary_dir)
        await asyncio.to_thread(pg_cluster.start_primary)


async def test_write_on_a_standby_25006_is_unavailable(pg_cluster: PgCluster) -> None:
    # The "primary" URL reaches a standby, as after a failover before DNS/VIP moved.
    db = Database(pg_cluster.replica_url, write_pool_size=2, read_pool_size=2,
                  health_interval=60, name=f"t-{uuid.uuid4().hex[:8]}")
    before = REGISTRY.get_sample_value("fleetkit_db_primary_read_only_total",
                                       {"db": db.name}) or 0.0
    try:
        with pytest.raises(DatabaseUnavailable) as caught:
            async with db.write() as conn:
                await conn.execute(text("CREATE TABLE fk_never (id int)"))
        assert "read-only" in str(caught.value)
        assert not db.primary.healthy
        assert REGISTRY.get_sample_value("fleetkit_db_primary_read_only_total",
                                         {"db": db.name}) == before + 1
    finally:
        await db.aclose()


async def test_replica_too_many_connections_53300_fails_over(pg_cluster: PgCluster) -> None:
    role = f"fk_limited_{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(pg_cluster.psql, pg_cluster.primary_port,
                            f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 0")
    read_url = f"postgresql://{role}@127.0.0.1:{pg_cluster.replica_port}/postgres"

    async def refusing() -> bool:  # once the role has replayed on the replica
        return await _refusal(read_url) == "53300"

    db = _router(pg_cluster, read_url)
    try:
        assert await wait_for(refusing, seconds=30), "the replica never answered 53300"
        for api in ("fetch_all", "run_read"):
            assert await _read_port(db, api) == pg_cluster.primary_port
        assert not db.replicas[0].healthy
        assert _failovers(db) == 1.0
    finally:
        await db.aclose()
        await asyncio.to_thread(pg_cluster.psql, pg_cluster.primary_port, f"DROP ROLE {role}")


