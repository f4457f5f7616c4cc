"""One body over both rate limit backends (as ``limits`` runs its tests over its storages).

The ``backend`` fixture is the in-memory backend or the Redis one on the real test server; the
contract tests drive :class:`~fleetkit.ratelimit.RateLimitBackend` directly, the limiter tests
drive a :class:`RateLimiter` built on it. Same assertions, whichever decides.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from fleetkit.ratelimit import (
    Limit,
    MemoryRateLimitBackend,
    RateLimitBackend,
    RateLimiter,
    RateLimitExceeded,
    RedisRateLimitBackend,
)
from fleetkit.ratelimit.decision import unpack_reply
from fleetkit.ratelimit.limits import HEADER

ALGORITHMS = ("sliding_window", "sliding_log", "gcra")
Factory = Callable[..., RateLimitBackend]
NOW_US = 1_700_000_000_000_000


@pytest.fixture(params=["memory", "redis"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make(kind: str, redis: Redis) -> AsyncIterator[Factory]:
    made: list[RateLimitBackend] = []

    def factory(algorithm: str = "sliding_window") -> RateLimitBackend:
        backend: RateLimitBackend = (
            MemoryRateLimitBackend(algorithm=algorithm) if kind == "memory"  # type: ignore[arg-type]
            else RedisRateLimitBackend(redis, algorithm=algorithm))  # type: ignore[arg-type]
        made.append(backend)
        return backend

    yield factory
    for backend in made:
        await backend.aclose()


def _arg(cost: int, now_us: int, *limits: Limit, dry: bool = False) -> bytes:
    return HEADER.pack(cost, dry, now_us) + b"".join(lim.packed for lim in limits)


async def _decide(backend: RateLimitBackend, keys: list[str], arg: bytes) -> tuple[int, ...]:
    n = len(keys)
    return unpack_reply(await backend.submit(keys, arg, 1 + 24 * n), n)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_contract_decides_all_or_nothing(make: Factory, kind: str, algorithm: str) -> None:
    backend = make(algorithm)
    assert backend.name == kind and backend.distributed == (kind == "redis")
    small, big = Limit.parse("2/minute"), Limit.parse("100/hour")
    tag = f"t:{{{uuid.uuid4().hex}}}"  # one hash tag for both keys, as the limiter makes them
    keys = [tag + ":a", tag + ":b"]
    replies = [await _decide(backend, keys, _arg(1, NOW_US + i * 1000, small, big))
               for i in range(3)]
    assert [r[0] for r in replies] == [1, 1, 0]
    assert replies[1][1] == 0 and replies[1][4] == 98  # remaining per limit
    assert replies[2][3] > 0  # retry_ms of the exhausted limit
    peek = await _decide(backend, keys, _arg(1, NOW_US + 3000, small, big, dry=True))
    assert peek[4] == 98  # the denial consumed nothing, the peek neither
    await backend.delete(keys)
    assert (await _decide(backend, keys, _arg(1, NOW_US + 4000, small, big)))[0] == 1


async def test_contract_counts_live_instances(make: Factory) -> None:
    backend = make()
    key = f"t:{{{uuid.uuid4().hex}}}"
    assert await backend.announce(key, "a", 10_000, leave=False) == 1
    assert await backend.announce(key, "b", 10_000, leave=False) == 2
    assert await backend.announce(key, "a", 10_000, leave=True) == 1


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_limiter_all_or_nothing_and_peek(make: Factory, algorithm: str) -> None:
    backend = make(algorithm)
    async with RateLimiter(backend=backend, algorithm=algorithm,  # type: ignore[arg-type]
                           deny_cache=False) as limiter:
        key, limits = f"user:{uuid.uuid4().hex}", [Limit.parse("2/minute"),
                                                    Limit.parse("100/hour")]
        assert (await limiter.hit_many(key, limits)).allowed
        assert (await limiter.hit_many(key, limits)).allowed
        denied = await limiter.hit_many(key, limits)
        assert not denied.allowed and denied.retry_after is not None and denied.retry_after > 0
        assert denied.backend == backend.name
        assert (await limiter.peek(key, limits)).details[1].remaining == 98
        other = f"user:{uuid.uuid4().hex}"
        assert not (await limiter.hit(other, Limit.parse("5/minute"), cost=6)).allowed
        d = await limiter.hit(other, Limit.parse("5/minute"), cost=5)
        assert d.allowed and d.remaining == 0
        await limiter.reset(other, Limit.parse("5/minute"))
        assert (await limiter.peek(other, Limit.parse("5/minute"))).remaining == 5
        assert (await limiter.health()).status == "pass"


async def test_acquire_raises_rate_limit_exceeded(make: Factory) -> None:
    backend = make()
    async with RateLimiter(backend=backend) as limiter:
        key, limit = f"user:{uuid.uuid4().hex}", Limit.parse("1/minute")
        assert (await limiter.acquire(key, limit)).allowed
        with pytest.raises(RateLimitExceeded) as raised:
            await limiter.acquire(key, limit, policy="login")
        assert raised.value.retry_after is not None and raised.value.retry_after > 0
        assert raised.value.decision is not None and not raised.value.decision.allowed
        assert "login" in str(raised.value)
