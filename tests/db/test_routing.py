"""Routing on the real primary + replica: reads on the replica, writes on the primary."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY, generate_latest
from sqlalchemy import Column, Integer, String, Table, insert, select, text
from sqlalchemy.orm import registry

from fleetkit.config import load_settings
from fleetkit.db import Database, format_lsn, normalize_url, parse_lsn
from fleetkit.errors import ConfigError, DatabaseError, DatabaseUnavailable
from tests.db.conftest import PRIMARY_PORT, REPLICA_PORT, port_of
from tests.support import PG_PRIMARY_URL, PG_REPLICA_URL, free_port


async def test_reads_on_replica_writes_on_primary(db: Database) -> None:
    async with db.read() as conn:
        row = (await conn.execute(text("SELECT inet_server_port(), pg_is_in_recovery()"))).one()
    assert tuple(row) == (REPLICA_PORT, True)
    async with db.write() as conn:
        row = (await conn.execute(text("SELECT inet_server_port(), pg_is_in_recovery()"))).one()
    assert tuple(row) == (PRIMARY_PORT, False)
    assert await db.run_read(port_of) == REPLICA_PORT


async def test_write_commits_and_read_your_writes_token(db: Database, table: str) -> None:
    async with db.write() as conn:
        await conn.execute(text(f"INSERT INTO {table} VALUES (1, 'a')"))
    token = await db.current_lsn()
    assert token is not None and parse_lsn(token) > 0
    async with db.read(lsn=token) as conn:
        # Whichever server serves it, the row must be there: that is the token's promise.
        note = (await conn.execute(text(f"SELECT note FROM {table} WHERE id = 1"))).scalar()
    assert note == "a"


async def test_fetch_all_runs_core_statements_on_the_driver(db: Database, table: str) -> None:
    scratch = sa.table(table, sa.column("id"), sa.column("note"))
    async with db.write() as conn:
        await conn.execute(text(f"INSERT INTO {table} VALUES (1, 'a'), (2, 'b'), (3, 'c')"))
    token = await db.current_lsn()
    page = (sa.select(scratch.c.id, scratch.c.note).where(scratch.c.id > sa.bindparam("after"))
            .order_by(scratch.c.id).limit(sa.bindparam("limit")))
    rows = await db.fetch_all(page, {"after": 1, "limit": 5}, lsn=token)
    assert [(r["id"], r["note"]) for r in rows] == [(2, "b"), (3, "c")]
    assert await db.fetch_one(page, {"after": 3, "limit": 5}, lsn=token) is None
    assert len(db._compiled) == 1  # compiled once, reused
    where = sa.select(sa.func.inet_server_port().label("port"),
                      sa.func.pg_is_in_recovery().label("standby"))
    served = await db.fetch_one(where)
    assert served is not None and (served["port"], served["standby"]) == (REPLICA_PORT, True)
    with pytest.raises(DatabaseError, match="does not exist"):
        await db.fetch_all(sa.select(sa.table("fk_no_such_table", sa.column("x")).c.x))
    with pytest.raises(TypeError, match="Core statement"):
        await db.fetch_all(sa.table(table, sa.column("id")))


async def test_write_block_rolls_back_on_error(db: Database, table: str) -> None:
    async def fail_inside() -> None:
        async with db.write() as conn:
            await conn.execute(text(f"INSERT INTO {table} VALUES (2, 'x')"))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await fail_inside()
    with pytest.raises(DatabaseError):
        async with db.write() as conn:
            await conn.execute(text(f"INSERT INTO {table} VALUES (3, 'x'), (3, 'y')"))
    async with db.write() as conn:
        count = (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar()
    assert count == 0


async def test_least_outstanding_balances_two_replica_pools() -> None:
    # The same replica twice gives two independent pools to balance between.
    db = Database(PG_PRIMARY_URL, read_urls=[PG_REPLICA_URL, PG_REPLICA_URL], read_pool_size=4,
                  write_pool_size=2, health_interval=30)
    try:
        await db.start()
        async with contextlib.AsyncExitStack() as stack:
            conns = [await stack.enter_async_context(db.read()) for _ in range(6)]
            assert [r.outstanding for r in db.replicas] == [3, 3]
            ports = {await port_of(c) for c in conns}
            assert ports == {REPLICA_PORT}
        assert [r.outstanding for r in db.replicas] == [0, 0]
    finally:
        await db.aclose()


async def test_unreachable_replica_fails_over_without_errors() -> None:
    dead = f"postgresql://fleetkit:fleetkit@127.0.0.1:{free_port()}/fleetkit"
    name = f"t-{uuid.uuid4().hex[:8]}"
    db = Database(PG_PRIMARY_URL, read_urls=[dead, PG_REPLICA_URL], write_pool_size=2,
                  read_pool_size=2, health_interval=30, name=name)
    try:
        # No start(): the first read must discover the dead replica by itself.
        ports = [await db.run_read(port_of) for _ in range(10)]
        async with db.read() as conn:
            ports.append(await port_of(conn))
        assert set(ports) == {REPLICA_PORT}
        bad, good = db.replicas
        assert not bad.healthy and bad.failovers == 1 and "ConnectionRefused" in (bad.reason or "")
        assert good.healthy
        status = await db.health()
        assert status.status == "warn" and status.observed_value == 1
        scraped = generate_latest(REGISTRY).decode()
        assert f'fleetkit_db_failovers_total{{db="{name}",replica="{bad.name}"}} 1.0' in scraped
        assert f'fleetkit_db_replica_healthy{{db="{name}",replica="{bad.name}"}} 0.0' in scraped
    finally:
        await db.aclose()


async def test_only_dead_replicas_means_reads_on_primary() -> None:
    dead = f"postgresql://fleetkit:fleetkit@127.0.0.1:{free_port()}/fleetkit"
    db = Database(PG_PRIMARY_URL, read_urls=[dead], write_pool_size=2, read_pool_size=2)
    try:
        await db.start()  # the first check already takes it out
        assert not db.replicas[0].healthy
        async with db.read() as conn:
            assert await port_of(conn) == PRIMARY_PORT
        assert (await db.health()).status == "warn"
    finally:
        await db.aclose()


@pytest.fixture
async def quiet_db() -> AsyncIterator[Database]:
    """Like ``db`` but its monitor waits 60 s after the first check: the test drives checks."""
    database = Database(PG_PRIMARY_URL, read_urls=[PG_REPLICA_URL], write_pool_size=4,
                        read_pool_size=4, health_interval=60)
    await database.start()
    yield database
    await database.aclose()


async def test_replica_dropping_connection_mid_read_is_retried(quiet_db: Database) -> None:
    db = quiet_db
    calls: list[int] = []

    async def fn(conn) -> int:  # type: ignore[no-untyped-def]
        port = await port_of(conn)
        calls.append(port)
        if port == REPLICA_PORT:
            # The replica kills this very backend: a real mid-read connection loss.
            await conn.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
        return port

    assert await db.run_read(fn) == PRIMARY_PORT
    assert calls == [REPLICA_PORT, PRIMARY_PORT]
    assert not db.replicas[0].healthy and db.replicas[0].failovers == 1
    await db.check()  # the monitor's next check puts the (healthy) replica back
    assert db.replicas[0].healthy
    with pytest.raises(DatabaseUnavailable):
        async with db.read() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
    assert not db.replicas[0].healthy


async def test_fetch_all_retries_a_replica_that_dies_mid_read(quiet_db: Database) -> None:
    # The same statement kills its own backend on the replica (the driver path sees a real
    # connection loss) and simply answers on the primary.
    suicide = sa.select(
        sa.case((sa.func.pg_is_in_recovery(),
                 sa.func.pg_terminate_backend(sa.func.pg_backend_pid()))).label("killed"),
        sa.func.inet_server_port().label("port"))
    rows = await quiet_db.fetch_all(suicide)
    assert [r["port"] for r in rows] == [PRIMARY_PORT]
    assert not quiet_db.replicas[0].healthy and quiet_db.replicas[0].failovers == 1
    await quiet_db.check()
    assert quiet_db.replicas[0].healthy
    served = await quiet_db.fetch_one(sa.select(sa.func.inet_server_port().label("port")))
    assert served is not None and served["port"] == REPLICA_PORT  # pool usable again


async def test_routed_session(db: Database, table: str) -> None:
    reg = registry()
    items = Table(table, reg.metadata, Column("id", Integer, primary_key=True),
                  Column("note", String))

    class Item:
        def __init__(self, id: int, note: str) -> None:
            self.id, self.note = id, note

    reg.map_imperatively(Item, items)
    port = select(text("inet_server_port()"))
    async with db.session() as session:
        assert (await session.execute(port)).scalar() == REPLICA_PORT
        session.add(Item(1, "orm"))
        await session.flush()  # flushes go to the primary...
        await session.execute(insert(items).values(id=2, note="core"))
        # ...and the session then stays there, so it sees its own uncommitted rows.
        assert (await session.execute(port)).scalar() == PRIMARY_PORT
        assert (await session.execute(select(items.c.note).order_by(items.c.id))).scalars().all() \
            == ["orm", "core"]
        await session.commit()
    async with db.session(primary=True) as session:
        assert (await session.execute(port)).scalar() == PRIMARY_PORT
    async with db.session() as session:
        for_update = select(items.c.id).where(items.c.id == 1).with_for_update()
        assert (await session.execute(for_update)).scalar() == 1
        assert (await session.execute(port)).scalar() == PRIMARY_PORT


async def test_demoted_primary_is_detected_and_drained() -> None:
    # Pointing the write URL at the standby is exactly what a client sees after a demotion.
    name = f"t-{uuid.uuid4().hex[:8]}"
    db = Database(PG_REPLICA_URL, write_pool_size=2, name=name)
    pid = text("SELECT pg_backend_pid()")
    try:
        async with db.read() as conn:  # no replicas: reads use the write pool
            before = (await conn.execute(pid)).scalar()
        with pytest.raises(DatabaseError, match="read-only"):
            async with db.write() as conn:
                await conn.execute(text("CREATE TABLE fk_never (i int)"))
        assert not db.primary.healthy and "read-only" in (db.primary.reason or "")
        async with db.read() as conn:  # drained: the pooled connection is not reused
            assert (await conn.execute(pid)).scalar() != before
        await db.check()
        assert db.primary.reason == "primary is in recovery (demoted)"
        assert (await db.health()).status == "fail"
        scraped = generate_latest(REGISTRY).decode()
        assert f'fleetkit_db_primary_read_only_total{{db="{name}"}}' in scraped
    finally:
        await db.aclose()


async def test_health_and_pool_metrics(db: Database) -> None:
    status = await db.health()
    assert status.status == "pass" and status.observed_value == 1
    checks = db.health_checks()
    assert set(checks) == {"write", "read:127.0.0.1:5441"}
    async with db.read(), db.write():
        in_use = {p.name: p.in_use for p in db.pools()}
        scraped = generate_latest(REGISTRY).decode()
    # >= because the monitor's own probe may hold a connection at that moment.
    assert in_use["write"] >= 1 and in_use["read:127.0.0.1:5441"] >= 1
    assert f'fleetkit_db_pool_in_use{{db="{db.name}",pool="write"}} 1.0' in scraped
    assert f'fleetkit_db_pool_size{{db="{db.name}",pool="read:127.0.0.1:5441"}} 8.0' in scraped
    assert f'fleetkit_db_reads_total{{db="{db.name}",reason="balanced",target="replica"}}' \
        in scraped


async def test_from_settings_caps_pools_and_pgbouncer_mode() -> None:
    settings = load_settings(env={
        "DATABASE_URL": PG_PRIMARY_URL, "DATABASE_READ_URLS": f"{PG_REPLICA_URL},{PG_REPLICA_URL}",
        "DATABASE_CONNECTION_LIMIT": "20", "DATABASE_WRITE_POOL_SIZE": "10",
        "DATABASE_READ_POOL_SIZE": "20", "DATABASE_STATEMENT_CACHE_SIZE": "0",
        "DATABASE_HEALTH_INTERVAL": "7",
    })
    db = Database.from_settings(settings)
    try:
        assert [p.size for p in db.pools()] == [4, 8, 8]  # 10 + 2 x 20 scaled into 20
        assert db.monitor.interval == 7
        for _ in range(3):  # the same statement again: no cached prepared statement reused
            async with db.read() as conn:
                raw = await conn.get_raw_connection()
                assert raw.driver_connection._stmt_cache.get_max_size() == 0  # type: ignore[union-attr]
                assert await port_of(conn) == REPLICA_PORT
    finally:
        await db.aclose()


def test_urls_and_lsn() -> None:
    assert normalize_url("postgresql://u:p@h/d").drivername == "postgresql+asyncpg"
    assert normalize_url("postgres://u:p@h/d").drivername == "postgresql+asyncpg"
    assert normalize_url("sqlite:///x.db").drivername == "sqlite+aiosqlite"
    with pytest.raises(ConfigError):
        normalize_url("mysql://u@h/d")
    assert parse_lsn("16/B374D848") == 0x16B374D848
    assert format_lsn(parse_lsn("16/B374D848")) == "16/B374D848"
    with pytest.raises(ValueError, match="LSN"):
        parse_lsn("nope")
