"""Limiter behaviour against the real Redis (and in embedded mode)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from redis.asyncio import Redis

from fleetkit.ratelimit import Limit, RateLimiter
from fleetkit.redis import ClientOptions, create_client
from tests.support import free_port


def _key() -> str:
    return f"user:{uuid.uuid4().hex}"


async def test_design_contract(redis: Redis) -> None:
    async with RateLimiter(redis=redis, algorithm="sliding_window") as limiter:
        key = _key()
        d = await limiter.hit(key, Limit.parse("100/minute"), cost=1)
        assert (d.allowed, d.remaining, d.retry_after, d.backend) == (True, 99, None, "redis")
        assert 60 <= d.reset_after <= 120
        d = await limiter.hit_many(key, [Limit.parse("10/second"), Limit.parse("1000/hour")])
        assert d.allowed and d.remaining == 9
        assert [s.remaining for s in d.details] == [9, 999]


async def test_all_or_nothing_and_peek(redis: Redis) -> None:
    for algorithm in ("sliding_window", "sliding_log", "gcra"):
        async with RateLimiter(redis=redis, algorithm=algorithm, deny_cache=False) as limiter:
            key, limits = _key(), [Limit.parse("2/minute"), Limit.parse("100/hour")]
            assert (await limiter.hit_many(key, limits)).allowed
            assert (await limiter.hit_many(key, limits)).allowed
            denied = await limiter.hit_many(key, limits)
            assert not denied.allowed and denied.retry_after is not None
            assert denied.retry_after > 0
            hour = (await limiter.peek(key, limits)).details[1]
            assert hour.remaining == 98, algorithm  # the denied request consumed nothing
            # A cost above what is left is denied, a cost that fits is admitted.
            other = _key()
            assert not (await limiter.hit(other, Limit.parse("5/minute"), cost=6)).allowed
            d = await limiter.hit(other, Limit.parse("5/minute"), cost=5)
            assert d.allowed and d.remaining == 0
            await limiter.reset(other, Limit.parse("5/minute"))
            assert (await limiter.peek(other, Limit.parse("5/minute"))).remaining == 5


@pytest.mark.parametrize("algorithm", ["sliding_window", "sliding_log", "gcra"])
async def test_merged_decisions_match_one_by_one(redis: Redis, algorithm: str) -> None:
    # Concurrent decisions of one limiter become one merged EVALSHA per batch; mixed shapes
    # (one limit, two limits, costs, peeks, repeated keys) must decide exactly as sequentially.
    limits = [Limit.parse("3/minute"), Limit.parse("5/hour")]
    calls = [(f"k{i % 7}", limits[: 1 + i % 2], 1 + i % 3, i % 5 == 4) for i in range(120)]

    async def decide(limiter: RateLimiter, key: str, lims: list[Limit], cost: int,
                     peek: bool) -> tuple[bool, int]:
        d = await (limiter.peek(key, lims, cost=cost) if peek
                   else limiter.hit_many(key, lims, cost=cost))
        return d.allowed, d.remaining

    run = uuid.uuid4().hex
    options: dict[str, Any] = {"redis": redis, "algorithm": algorithm, "deny_cache": False,
                               "clock": lambda: 1_000_000.0}  # no window boundary mid-test
    async with RateLimiter(prefix=f"t:m:{run}:", **options) as merged, \
            RateLimiter(prefix=f"t:s:{run}:", **options) as single:
        together = await asyncio.gather(*(decide(merged, *c) for c in calls))
        one_by_one = [await decide(single, *c) for c in calls]
        assert merged._coalescer is not None and merged._coalescer.commands < 20
    assert together == one_by_one
    assert {a for a, _ in together} == {True, False}


async def test_deny_cache_answers_locally(redis: Redis) -> None:
    async with RateLimiter(redis=redis) as limiter:
        key, limit = _key(), Limit.parse("1/minute")
        assert (await limiter.hit(key, limit)).allowed
        assert (await limiter.hit(key, limit)).backend == "redis"
        assert limiter._coalescer is not None
        sent = limiter._coalescer.commands
        cached = await limiter.hit(key, limit)
        assert (cached.allowed, cached.backend) == (False, "cache")
        assert cached.retry_after is not None and cached.retry_after > 0
        assert limiter._coalescer.commands == sent
        await limiter.reset(key, limit)
        assert (await limiter.hit(key, limit)).allowed


async def test_keys_with_braces_share_one_tag(redis: Redis) -> None:
    async with RateLimiter(redis=redis, prefix="t:tag:") as limiter:
        for key in ("}", "{", "a}b{c", "%7B", "{}"):
            d = await limiter.hit_many(key + uuid.uuid4().hex,
                                       [Limit.parse("1/second"), Limit.parse("5/minute")])
            assert d.allowed, key
        assert (await limiter.hit("%7Bx", Limit.parse("1/minute"))).allowed
        assert (await limiter.hit("{x", Limit.parse("1/minute"))).allowed  # no collision


async def test_heartbeat_counts_live_instances(redis: Redis) -> None:
    prefix = f"t:hb:{uuid.uuid4().hex}:"
    a = RateLimiter(redis=redis, prefix=prefix, instance_id="a")
    b = RateLimiter(redis=redis, prefix=prefix, instance_id="b")
    assert await a.instances() == 1
    assert await b.instances() == 2
    await b.aclose()
    assert await a.instances() == 1
    await a.aclose()


async def _dead_client() -> Redis:
    client = create_client(f"redis://127.0.0.1:{free_port()}/0",
                           options=ClientOptions(retries=0, connect_timeout=0.2))
    assert isinstance(client, Redis)
    return client


async def test_failure_modes_never_raise() -> None:
    client = await _dead_client()
    limit = Limit.parse("4/minute")
    try:
        async with RateLimiter(redis=client, failure_mode="open") as limiter:
            d = await limiter.hit(_key(), limit)
            assert (d.allowed, d.backend) == (True, "open")
            assert (await limiter.health()).status == "warn"
        async with RateLimiter(redis=client, failure_mode="closed") as limiter:
            d = await limiter.hit(_key(), limit)
            assert (d.allowed, d.backend) == (False, "closed")
            assert d.retry_after is not None and d.retry_after > 0
        async with RateLimiter(redis=client, failure_mode="local",
                               fallback_instances=2) as limiter:
            key = _key()
            results = [await limiter.hit(key, limit) for _ in range(4)]
            assert [r.allowed for r in results] == [True, True, False, False]
            assert {r.backend for r in results} == {"local"}
            health = await limiter.health()
            assert health.status == "warn" and health.details["backend"] == "local"
    finally:
        await client.aclose()


async def test_embedded_mode_is_bounded() -> None:
    limiter = RateLimiter(redis=None, max_local_keys=10)
    for i in range(100):
        assert (await limiter.hit(f"k{i}", Limit.parse("1/minute"))).allowed
    assert len(limiter._memory) == 10
    assert not (await limiter.hit("k99", Limit.parse("1/minute"))).allowed
    assert (await limiter.health()).status == "pass"
    await limiter.aclose()


async def test_hit_all_queues_every_decision_before_awaiting(redis: Redis) -> None:
    async with RateLimiter(redis=redis, deny_cache=False) as limiter:
        ip, user = _key(), _key()
        calls = [(ip, [Limit.parse("2/minute")], 1, "ip"),
                 (user, [Limit.parse("10/minute"), Limit.parse("100/hour")], 3, "user")]
        assert limiter._coalescer is not None
        await limiter.instances()  # the heartbeat (its own script) out of the way
        before = limiter._coalescer.commands
        first = await limiter.hit_all(calls)
        assert limiter._coalescer.commands - before == 1  # both in one merged script call
        assert [(d.allowed, d.remaining) for d in first] == [(True, 1), (True, 7)]
        await limiter.hit_all(calls)
        third = await limiter.hit_all(calls)
        # Independent decisions: the ip limit is exhausted, the user limit is not.
        assert [(d.allowed, d.remaining) for d in third] == [(False, 0), (True, 1)]
        with pytest.raises(ValueError, match="cost"):
            await limiter.hit_all([(ip, [Limit.parse("2/minute")], 1, "ip"),
                                   (user, [Limit.parse("2/minute")], -1, "user")])


async def test_hit_all_cancelled_leaves_no_unretrieved_errors(redis: Redis) -> None:
    async with RateLimiter(redis=redis) as limiter:
        task = asyncio.create_task(limiter.hit_all(
            [(_key(), [Limit.parse("5/second")], 1, "a"),
             (_key(), [Limit.parse("5/second")], 1, "b")]))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The limiter keeps deciding normally afterwards.
        assert (await limiter.hit(_key(), Limit.parse("5/second"))).allowed
