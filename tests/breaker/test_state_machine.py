"""Trip rules and transitions, identical on the Redis backend and the in-memory backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from fleetkit.breaker import BreakerConfig, CircuitBreaker, CircuitOpenError, MemoryBreakerBackend
from tests.breaker.conftest import eventually

Make = Callable[..., CircuitBreaker]


@pytest.fixture(params=["redis", "memory"])
async def make(request: pytest.FixtureRequest, redis: Redis, prefix: str
               ) -> AsyncIterator[Make]:
    """Breaker factory; breakers made by one factory share one breaker state (a small fleet)."""
    made: list[CircuitBreaker] = []
    memories: dict[str, MemoryBreakerBackend] = {}

    def factory(name: str = "svc", **options: Any) -> CircuitBreaker:
        options.setdefault("flush_interval", 0.05)
        options.setdefault("poll_interval", 0.2)
        if request.param == "redis":
            b = CircuitBreaker(name, redis=redis, key_prefix=prefix, **options)
        else:
            if name not in memories:
                memories[name] = MemoryBreakerBackend(BreakerConfig(**options))
            b = CircuitBreaker(name, backend=memories[name], **options)
        made.append(b)
        return b

    yield factory
    for b in made:
        await b.aclose()


class Boom(Exception):
    pass


async def fail() -> None:
    raise Boom


async def ok() -> str:
    return "ok"


async def run(b: CircuitBreaker, failures: int, successes: int = 0) -> None:
    for _ in range(failures):
        with pytest.raises(Boom):
            await b.call(fail)
    for _ in range(successes):
        assert await b.call(ok) == "ok"
    await b.flush()


async def test_failure_rate_needs_minimum_calls(make: Make) -> None:
    b = make(minimum_calls=10, failure_rate_threshold=0.5)
    await b.start()
    await run(b, 9)
    assert b.state == "closed"
    await run(b, 1)
    assert b.state == "open"
    with pytest.raises(CircuitOpenError) as info:
        async with b:
            pass
    assert info.value.state == "open" and info.value.retry_after is not None


async def test_failure_rate_below_threshold_stays_closed(make: Make) -> None:
    b = make(minimum_calls=10, failure_rate_threshold=0.5)
    await b.start()
    await run(b, 9, successes=11)
    assert b.state == "closed"
    await run(b, 3)  # 12 / 23 >= 0.5
    assert b.state == "open"


async def test_sliding_window_forgets_old_calls(make: Make) -> None:
    b = make(minimum_calls=15, window_seconds=0.5)
    await b.start()
    await run(b, 10)
    await asyncio.sleep(0.8)
    await run(b, 10)
    assert b.state == "closed"  # only 10 calls in the window
    await run(b, 5)
    assert b.state == "open"


async def test_slow_call_rate(make: Make) -> None:
    b = make(minimum_calls=4, slow_call_seconds=0.05, slow_call_rate_threshold=0.5)
    await b.start()

    async def slow() -> str:
        await asyncio.sleep(0.06)
        return "slow"

    for _ in range(2):
        await b.call(ok)
    for _ in range(2):
        assert await b.call(slow) == "slow"
    await b.flush()
    assert b.state == "open"


async def test_consecutive_failures(make: Make) -> None:
    b = make(minimum_calls=1000, consecutive_failures=5)
    await b.start()
    await run(b, 4, successes=1)
    await run(b, 4)  # the success broke the streak: 4 in a row
    assert b.state == "closed"
    await run(b, 1)
    assert b.state == "open"


async def test_classification(make: Make) -> None:
    b = make(minimum_calls=3, ignore_exceptions=(KeyError,),
             result_is_failure=lambda r: r == "bad")
    await b.start()

    async def hang() -> None:
        await asyncio.sleep(10)

    for _ in range(5):
        task = asyncio.create_task(b.call(hang))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async def missing() -> None:
        raise KeyError("x")

    for _ in range(5):
        with pytest.raises(KeyError):
            await b.call(missing)
    await b.flush()
    assert b.state == "closed"  # cancellations and ignored exceptions are not failures

    async def bad() -> str:
        return "bad"

    for _ in range(3):
        assert await b.call(bad) == "bad"
    await b.flush()
    assert b.state == "open"


async def test_predicate_decides(make: Make) -> None:
    b = make(minimum_calls=2, is_failure=lambda exc: "fatal" in str(exc))
    await b.start()

    async def benign() -> None:
        raise ValueError("benign")

    for _ in range(4):
        with pytest.raises(ValueError, match="benign"):
            await b.call(benign)
    await b.flush()
    assert b.state == "closed"

    async def fatal() -> None:
        raise ValueError("fatal")

    for _ in range(4):
        with pytest.raises(ValueError, match="fatal"):
            await b.call(fatal)
    await b.flush()
    assert b.state == "open"


async def test_half_open_permits_then_close(make: Make) -> None:
    b1 = make(minimum_calls=2, wait_open_seconds=0.2, half_open_permits=2)
    b2 = make(minimum_calls=2, wait_open_seconds=0.2, half_open_permits=2)
    await b1.start()
    await b2.start()
    await run(b1, 2)
    assert await eventually(lambda: b2.state == "open")
    assert await eventually(lambda: b1.state == b2.state == "half_open")
    gate = asyncio.Event()
    entered = []

    async def trial() -> str:
        entered.append(1)
        await gate.wait()
        return "ok"

    tasks = [asyncio.create_task(b.call(trial)) for b in (b1, b2, b1, b2, b1)]
    assert await eventually(lambda: sum(t.done() for t in tasks) + len(entered) == 5)
    assert len(entered) == 2
    rejected = [t for t in tasks if t.done()]
    assert all(isinstance(t.exception(), CircuitOpenError) for t in rejected)
    gate.set()
    await asyncio.gather(*(t for t in tasks if not t.done()))
    assert await eventually(lambda: b1.state == b2.state == "closed")


async def test_trial_failure_reopens_with_backoff(make: Make) -> None:
    b = make(minimum_calls=2, wait_open_seconds=0.2, half_open_permits=1,
             backoff_multiplier=20.0)
    await b.start()
    await run(b, 2)
    assert await eventually(lambda: b.state == "half_open")
    with pytest.raises(Boom):
        await b.call(fail)
    assert b.state == "open"
    with pytest.raises(CircuitOpenError) as info:
        await b.call(ok)
    assert info.value.retry_after is not None and info.value.retry_after > 0.5  # 0.2 * 20


async def test_cancelled_trial_releases_its_lease(make: Make) -> None:
    b = make(minimum_calls=2, wait_open_seconds=0.2, half_open_permits=1)
    await b.start()
    await run(b, 2)
    assert await eventually(lambda: b.state == "half_open")
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.sleep(10)

    task = asyncio.create_task(b.call(hang))
    await started.wait()
    with pytest.raises(CircuitOpenError):
        await b.call(ok)  # the only permit is held
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The lease came back without counting as a failure: a new trial gets it and closes.

    async def trial() -> str:
        try:
            return await b.call(ok)
        except CircuitOpenError:
            return "rejected"

    assert await eventually(lambda: b.state == "half_open")
    results = []
    for _ in range(50):
        results.append(await trial())
        if results[-1] == "ok":
            break
        await asyncio.sleep(0.02)
    assert results[-1] == "ok"
    assert b.state == "closed"


async def test_expired_lease_frees_its_permit(make: Make) -> None:
    b = make(minimum_calls=2, wait_open_seconds=0.2, half_open_permits=1, lease_seconds=0.3)
    await b.start()
    await run(b, 2)
    assert await eventually(lambda: b.state == "half_open")
    gate = asyncio.Event()

    async def stuck() -> str:
        await gate.wait()
        return "late"

    holder = asyncio.create_task(b.call(stuck))
    await asyncio.sleep(0.05)
    with pytest.raises(CircuitOpenError):
        await b.call(ok)
    admitted = False
    for _ in range(100):
        try:
            await b.call(ok)
            admitted = True
            break
        except CircuitOpenError:
            await asyncio.sleep(0.02)
    assert admitted and b.state == "closed"
    gate.set()
    assert await holder == "late"  # its late result belongs to no live lease: ignored
    assert b.state == "closed"


async def test_operator_actions(make: Make) -> None:
    b1, b2 = make(minimum_calls=2), make(minimum_calls=2)
    await b1.start()
    await b2.start()
    assert await b1.force_open() == "forced_open"
    assert await eventually(lambda: b2.state == "forced_open")
    with pytest.raises(CircuitOpenError):
        await b2.call(ok)
    assert await b2.disable() == "disabled"
    assert await eventually(lambda: b1.state == "disabled")
    await run(b1, 10)
    assert b1.state == "disabled"  # nothing recorded
    assert await b1.force_close() == "closed"
    assert await eventually(lambda: b2.state == "closed")
    await run(b2, 2)
    assert b2.state == "open"
    assert await b2.reset() == "closed"
    assert await eventually(lambda: b1.state == "closed")
    assert await b1.call(ok) == "ok"


async def test_stale_trial_result_is_ignored(make: Make) -> None:
    b = make(minimum_calls=2, wait_open_seconds=0.2, half_open_permits=1)
    await b.start()
    await run(b, 2)
    assert await eventually(lambda: b.state == "half_open")
    gate = asyncio.Event()

    async def trial() -> None:
        await gate.wait()
        raise Boom

    holder = asyncio.create_task(b.call(trial))
    await asyncio.sleep(0.05)
    gen = b.generation
    await b.force_close()  # new generation
    assert b.generation > gen
    version = b.version
    gate.set()
    with pytest.raises(Boom):
        await holder
    await b.flush()
    assert b.state == "closed" and b.version == version


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="minimum_calls"):
        BreakerConfig(minimum_calls=0)
    with pytest.raises(ValueError, match="failure_rate_threshold"):
        CircuitBreaker("x", failure_rate_threshold=1.5)
