"""The same limiter, unchanged, on the 3-master Redis Cluster."""

from __future__ import annotations

import random
import uuid

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from fleetkit.ratelimit import Limit, RateLimiter
from fleetkit.ratelimit.limiter import Algorithm

pytestmark = pytest.mark.cluster


@pytest.mark.parametrize("algorithm", ["sliding_window", "sliding_log", "gcra"])
async def test_cluster_agrees_with_the_twin(cluster: RedisCluster,
                                            algorithm: Algorithm) -> None:
    rng = random.Random(algorithm)
    limits = [Limit.parse("3/second"), Limit.parse("5/2 seconds"), Limit.parse("20/minute")]
    now = [1_700_000_000_000_000]
    clock = lambda: now[0] / 1_000_000  # noqa: E731
    async with RateLimiter(redis=cluster, algorithm=algorithm, clock=clock, deny_cache=False,
                           prefix="t:cl:") as remote:
        local = RateLimiter(redis=None, algorithm=algorithm, clock=clock)
        keys = [f"{name}{uuid.uuid4().hex}" for name in ("user:", "a}b", "{x}", "%")]
        denied = 0
        for _ in range(200):
            now[0] += rng.choice([0, 1_000, 50_000, 300_000, 1_200_000])
            key, cost = rng.choice(keys), rng.choice([1, 1, 2])
            a = await remote.hit_many(key, limits, cost=cost)
            b = await local.hit_many(key, limits, cost=cost)
            assert a.backend == "redis"
            assert (a.allowed, [tuple(s)[1:] for s in a.details]) == \
                   (b.allowed, [tuple(s)[1:] for s in b.details])
            denied += not a.allowed
        assert 0 < denied < 200
    # Every key of one request lives in one slot (else the script would fail with CROSSSLOT).
    stored = [k async for k in cluster.scan_iter(match="t:cl:*")]
    by_tag: dict[str, set[int]] = {}
    for k in stored:
        by_tag.setdefault(k.decode().rsplit("}", 1)[0], set()).add(key_slot(k))
    assert by_tag and all(len(slots) == 1 for slots in by_tag.values())
    assert len({s for slots in by_tag.values() for s in slots}) > 1  # spread over the cluster
