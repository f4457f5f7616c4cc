"""The same fleet behaviour on the Redis Cluster (three breaker instances, one shared state)."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio.cluster import RedisCluster

from fleetkit.breaker import CircuitBreaker, CircuitOpenError
from tests.breaker.conftest import eventually

pytestmark = pytest.mark.cluster


class Boom(Exception):
    pass


async def test_cluster_fleet(cluster: RedisCluster, prefix: str) -> None:
    fleet = [CircuitBreaker("db", redis=cluster, key_prefix=prefix, minimum_calls=12,
                            wait_open_seconds=0.3, half_open_permits=2, flush_interval=0.05,
                            poll_interval=30) for _ in range(3)]

    async def fail() -> None:
        raise Boom

    gate = asyncio.Event()
    entered: list[int] = []

    async def trial() -> str:
        entered.append(1)
        await gate.wait()
        return "ok"

    try:
        for b in fleet:
            await b.start()
        keys = fleet[0]._backend.keys  # type: ignore[union-attr]
        slots = {await cluster.cluster_keyslot(k) for k in keys}
        assert len(slots) == 1  # one hash tag: one slot, so the script may touch every key
        for b in fleet:  # 4 failures each: only the fleet reaches minimum_calls=12
            for _ in range(4):
                with pytest.raises(Boom):
                    await b.call(fail)
            await b.flush()
        assert await eventually(lambda: all(b.state == "open" for b in fleet))
        assert await eventually(lambda: all(b.state == "half_open" for b in fleet))
        tasks = [asyncio.create_task(b.call(trial)) for b in fleet for _ in range(2)]
        assert await eventually(lambda: len(entered) + sum(t.done() for t in tasks) == 6)
        assert len(entered) == 2
        assert all(isinstance(t.exception(), CircuitOpenError) for t in tasks if t.done())
        gate.set()
        await asyncio.gather(*(t for t in tasks if not t.done()))
        assert await eventually(lambda: all(b.state == "closed" for b in fleet))
        # Pushed over Cluster pub/sub: the others poll only every 30 s.
        await fleet[0].force_open()
        assert await eventually(lambda: all(b.state == "forced_open" for b in fleet))
        with pytest.raises(CircuitOpenError):
            await fleet[2].call(fail)
        await fleet[1].reset()
        assert await eventually(lambda: all(b.state == "closed" for b in fleet))
    finally:
        for b in fleet:
            await b.aclose()
