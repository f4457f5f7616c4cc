"""Producer → Redis stream shards → consumer → PostgreSQL, on the shared Redis and Cluster."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from fleetkit.audit import AuditEvent, AuditLog, PostgresSink, verify_postgres
from fleetkit.audit.streams import GROUP, stream_key
from tests.audit.helpers import consumer_for, row_count, run_until
from tests.support import PG_PRIMARY_URL


async def _delete_streams(client: Any, prefix: str, shards: int = 4) -> None:
    for i in range(shards):
        await client.delete(stream_key(prefix, i), f"{prefix}:dead:{{s{i}}}")


async def test_contract_end_to_end(private_redis: Redis, pg: tuple[Any, str], prefix: str,
                                   tmp_path: Path) -> None:
    conn, schema = pg
    log = AuditLog(redis=private_redis, prefix=prefix, spool_dir=tmp_path / "spool", instance="i-1")
    await log.log(AuditEvent(actor="u1", action="session.create", resource="session/9",
                             outcome="success"))
    await asyncio.gather(*(log.log(AuditEvent(actor=f"u{i % 7}", action="login",
                                              resource=f"account/{i}", outcome="denied",
                                              metadata={"i": i}))
                           for i in range(3000)))
    await log.flush()
    # Concurrent events were packed: far fewer stream entries than events.
    assert log.entries_sent < 100
    lengths = [await private_redis.xlen(stream_key(prefix, i)) for i in range(4)]
    assert all(n > 0 for n in lengths), lengths  # spread over every shard
    assert (await log.health()).status == "pass"
    await log.aclose()

    consumer = consumer_for(private_redis, schema, prefix)

    async def stored() -> bool:
        return await row_count(conn, schema) == 3001

    await run_until(consumer, stored)
    row = await conn.fetchrow(f'SELECT * FROM "{schema}".audit_events '
                              "WHERE action = 'session.create'")
    assert (row["actor"], row["resource"], row["outcome"], row["instance"]) == (
        "u1", "session/9", "success", "i-1")
    assert consumer.rows_inserted == 3001
    assert (await verify_postgres(conn, schema)).ok
    # Everything is acknowledged, and trimming then drops only acknowledged entries.
    for i in range(4):
        assert (await private_redis.xpending(stream_key(prefix, i), GROUP))["pending"] == 0
        await consumer.trim(i)
        assert await private_redis.xlen(stream_key(prefix, i)) == 0
    await _delete_streams(private_redis, prefix)


async def test_trim_keeps_unacknowledged_entries(private_redis: Redis, pg: tuple[Any, str],
                                                 prefix: str) -> None:
    _, schema = pg
    key = stream_key(prefix, 0)
    await private_redis.xgroup_create(key, GROUP, id="0", mkstream=True)
    ids = [await private_redis.xadd(key, {"e": b"{}"}) for _ in range(5)]
    # Deliver 3 entries and acknowledge only the second one.
    await private_redis.xreadgroup(GROUP, "c1", {key: ">"}, count=3)
    await private_redis.xack(key, GROUP, ids[1])
    consumer = consumer_for(private_redis, schema, prefix, shards=1)
    await consumer.trim(0)
    remaining = [eid for eid, _ in await private_redis.xrange(key)]
    assert remaining == ids  # ids[0] is pending: nothing is below it, ids[1..] are kept too
    await private_redis.xack(key, GROUP, ids[0], ids[2])
    await consumer.trim(0)
    # ids[3] and ids[4] were never delivered: kept.
    assert [eid for eid, _ in await private_redis.xrange(key)] == [ids[3], ids[4]]
    await _delete_streams(private_redis, prefix, 1)


async def test_redelivered_entry_inserts_no_duplicate(pg: tuple[Any, str]) -> None:
    conn, schema = pg
    sink = PostgresSink(PG_PRIMARY_URL, schema=schema)
    lines = [AuditEvent(actor="u1", action="a", resource="r", outcome="success").encode()
             for _ in range(10)]
    first = await sink.write([b"\n".join(lines)])
    again = await sink.write([b"\n".join(lines[:5]), b"\n".join(lines)])  # retry + overlap
    await sink.aclose()
    assert (first.inserted, first.duplicates) == (10, 0)
    assert (again.inserted, again.duplicates, again.batch_id) == (0, 15, None)
    assert await row_count(conn, schema) == 10
    result = await verify_postgres(conn, schema)
    assert result.ok
    assert result.batches == 1


async def test_append_only_trigger_refuses_changes(pg: tuple[Any, str]) -> None:
    conn, schema = pg
    sink = PostgresSink(PG_PRIMARY_URL, schema=schema)
    await sink.write([AuditEvent(actor="u1", action="a", resource="r", outcome="success")
                      .encode()])
    await sink.aclose()
    for stmt in (f'UPDATE "{schema}".audit_events SET actor = \'x\'',
                 f'DELETE FROM "{schema}".audit_events',
                 f'TRUNCATE "{schema}".audit_events',
                 f'DELETE FROM "{schema}".audit_batches'):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute(stmt)
    assert await row_count(conn, schema) == 1


@pytest.mark.cluster
async def test_shards_spread_over_redis_cluster(cluster: RedisCluster, pg: tuple[Any, str],
                                                prefix: str, tmp_path: Path) -> None:
    conn, schema = pg
    log = AuditLog(redis=cluster, prefix=prefix, spool_dir=tmp_path / "spool", max_batch=50)
    await asyncio.gather(*(log.log(AuditEvent(actor="u1", action="a", resource=f"r/{i}",
                                              outcome="success")) for i in range(1000)))
    await log.aclose()
    assert not log.spooling
    nodes = {cluster.get_node_from_key(stream_key(prefix, i)).name for i in range(4)}
    assert len(nodes) >= 2  # the hash tags put the shards on different masters
    consumer = consumer_for(cluster, schema, prefix)

    async def stored() -> bool:
        return await row_count(conn, schema) == 1000

    await run_until(consumer, stored)
    await _delete_streams(cluster, prefix)
