"""Redis down during production → events spooled to disk → replayed in order, none lost."""

from __future__ import annotations

import asyncio
import struct
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from fleetkit.audit import AuditEvent, AuditLog
from fleetkit.audit.spool import DiskSpool, read_records
from fleetkit.audit.streams import stream_key
from fleetkit.redis import ClientOptions, create_client
from tests.audit.helpers import consumer_for, row_count, run_until
from tests.support import RedisServer


def _events(start: int, n: int) -> list[AuditEvent]:
    return [AuditEvent(actor="u1", action="seq", resource=f"item/{i}", outcome="success",
                       metadata={"i": i}) for i in range(start, start + n)]


async def test_redis_outage_spools_then_replays_in_order(redis_server: RedisServer,
                                                         pg: tuple[Any, str], prefix: str,
                                                         tmp_path: Path) -> None:
    conn, schema = pg
    client = create_client(redis_server.url, options=ClientOptions(
        socket_timeout=2.0, connect_timeout=0.5, retries=0))
    assert isinstance(client, Redis)
    spool_dir = tmp_path / "spool"
    # One XADD in flight at a time: entries reach the stream in the order they were logged.
    log = AuditLog(redis=client, prefix=prefix, shards=1, spool_dir=spool_dir,
                   probe_interval=0.1, max_batch=100, max_inflight=1)
    try:
        await log.log_many(_events(0, 500))
        assert not log.spooling
        redis_server.kill9()
        for start in range(500, 3000, 250):  # producing while Redis is down
            await log.log_many(_events(start, 250))
        assert log.spooling
        assert log.events_spooled == 2500
        health = await log.health()
        assert health.status == "warn"
        assert "spooling" in (health.output or "")
        segments = list(spool_dir.glob("*/*.spool"))
        assert segments
        assert sum(len(list(read_records(p))) for p in segments) >= 25

        redis_server.start()
        assert await log.drain_spool(30)
        await log.log_many(_events(3000, 100))  # back to Redis directly
        assert not log.spooling
        assert log.events_replayed == 2500
        assert (await log.health()).status == "pass"
        # One shard: the stream holds the events in the order they were logged.
        order = [orjson.loads(line)["metadata"]["i"]
                 for _, fields in await client.xrange(stream_key(prefix, 0))
                 for line in fields[b"e"].split(b"\n")]
        assert order == list(range(3100))
        assert not list(spool_dir.glob("*/*.spool"))  # replayed segments are deleted
        await log.aclose()

        consumer = consumer_for(client, schema, prefix, shards=1)

        async def stored() -> bool:
            return await row_count(conn, schema) == 3100

        await run_until(consumer, stored)
    finally:
        await log.aclose()
        await client.aclose()


async def test_spool_of_a_dead_process_is_adopted(private_redis: Redis, prefix: str,
                                                  tmp_path: Path) -> None:
    base = tmp_path / "spool"
    # A process spooled three entries, then died; its last write was torn mid-record.
    dead = DiskSpool(base)
    lines = [AuditEvent(actor="u1", action="a", resource=f"r/{i}", outcome="success").encode()
             for i in range(3)]
    for line in lines:
        dead.append(line)
    assert dead._file is not None
    dead._file.write(struct.pack("<II", 999, 0) + b"torn")
    dead._file.flush()
    orphan_dir = dead.dir
    assert orphan_dir is not None
    dead._file.close()
    dead._file = None
    import os

    assert dead._lock_fd is not None
    os.close(dead._lock_fd)  # the process is gone: its lock is released
    dead._lock_fd = None

    log = AuditLog(redis=private_redis, prefix=prefix, shards=1, spool_dir=base,
                   probe_interval=0.05)
    await log.log(AuditEvent(actor="u2", action="a", resource="r", outcome="success"))
    assert await log.drain_spool(10)
    await log.aclose()
    entries = await private_redis.xrange(stream_key(prefix, 0))
    replayed = [f[b"e"] for _, f in entries]
    assert all(line in replayed for line in lines)
    assert len(entries) == 4  # the torn record was never acknowledged, so it is not replayed
    assert not orphan_dir.exists()
    await private_redis.delete(stream_key(prefix, 0))


async def test_drain_waits_for_the_scan_for_dead_spools(private_redis: Redis, prefix: str,
                                                       tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """drain_spool() is not True while the start-up scan for dead processes' spools runs: their
    records are not known to exist yet (it used to answer "empty" before the scan had ended)."""
    base = tmp_path / "spool"
    dead = DiskSpool(base)
    line = AuditEvent(actor="u1", action="a", resource="r/dead", outcome="success").encode()
    dead.append(line)
    dead.close()  # the owner is gone: its lock is released, its records stay
    scanning, release = threading.Event(), threading.Event()
    scan = DiskSpool.adopt_orphans

    def held_scan(self: DiskSpool) -> int:
        scanning.set()
        release.wait(30)
        return scan(self)

    monkeypatch.setattr(DiskSpool, "adopt_orphans", held_scan)
    log = AuditLog(redis=private_redis, prefix=prefix, shards=1, spool_dir=base,
                   probe_interval=0.05)
    try:
        await log.log(AuditEvent(actor="u2", action="a", resource="r", outcome="success"))
        assert await asyncio.to_thread(scanning.wait, 30)  # the scan is running, held
        assert not await log.drain_spool(0.2)  # cannot be drained while the scan is held
        release.set()
        assert await log.drain_spool(10)
    finally:
        release.set()
        await log.aclose()
    replayed = [f[b"e"] for _, f in await private_redis.xrange(stream_key(prefix, 0))]
    assert line in replayed
    await private_redis.delete(stream_key(prefix, 0))
