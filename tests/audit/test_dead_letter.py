"""A poison entry ends in the dead-letter stream after N deliveries; the others are stored."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from fleetkit.audit import AuditEvent
from fleetkit.audit.streams import GROUP, dead_key, stream_key
from tests.audit.helpers import consumer_for, row_count, run_until


async def test_poison_entry_goes_to_dead_letter_stream(private_redis: Redis, pg: tuple[Any, str],
                                                       prefix: str) -> None:
    conn, schema = pg
    key, dead = stream_key(prefix, 0), dead_key(prefix, 0)
    good = [b"\n".join(AuditEvent(actor="u1", action="a", resource=f"r/{j}.{i}",
                                  outcome="success").encode() for i in range(10))
            for j in range(2)]
    # Valid JSON, but PostgreSQL refuses the event id: a data error no retry can fix.
    poison = b'{"event_id":"not-a-uuid","time":1,"actor":"a","action":"b","resource":"c",' \
             b'"outcome":"success"}'
    await private_redis.xadd(key, {"v": "1", "n": 10, "e": good[0]})
    poison_id = await private_redis.xadd(key, {"v": "1", "n": 1, "e": poison})
    await private_redis.xadd(key, {"v": "1", "n": 10, "e": good[1]})
    malformed_id = await private_redis.xadd(key, {"junk": "1"})

    consumer = consumer_for(private_redis, schema, prefix, shards=1, max_deliveries=3,
                            claim_min_idle=0.1, claim_interval=0.1)

    async def dead_lettered() -> bool:
        return consumer.dead_letters == 2

    await run_until(consumer, dead_lettered)
    assert await row_count(conn, schema) == 20
    letters = {f[b"origin_id"]: f for _, f in await private_redis.xrange(dead)}
    assert set(letters) == {poison_id, malformed_id}
    assert letters[poison_id][b"e"] == poison  # the original entry is kept for inspection
    assert int(letters[poison_id][b"deliveries"]) == 4  # delivered N=3 times, moved on the 4th
    assert (await private_redis.xpending(key, GROUP))["pending"] == 0
    await private_redis.delete(key, dead)
