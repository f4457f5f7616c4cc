"""The backend contract: one test body over RedisBreakerBackend and MemoryBreakerBackend.

Each factory returns handles on one shared state (two Redis backends with the same keys are
two instances of a fleet; the memory backend is shared by identity), so these tests pin down
the semantics both implementations must have, below the breaker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from fleetkit.breaker import (
    BreakerBackend,
    BreakerConfig,
    MemoryBreakerBackend,
    RedisBreakerBackend,
    Snapshot,
)
from fleetkit.breaker.state import Batch
from tests.breaker.conftest import eventually

Factory = Callable[..., BreakerBackend]


@pytest.fixture(params=["redis", "memory"])
async def backends(request: pytest.FixtureRequest, redis: Redis, prefix: str
                   ) -> Factory:
    """``backends(**config)``: a handle on the test's one shared breaker state."""
    shared: list[MemoryBreakerBackend] = []

    def make(**options: Any) -> BreakerBackend:
        config = BreakerConfig(**options)
        if request.param == "redis":
            return RedisBreakerBackend(redis, "svc", config, key_prefix=prefix)
        if not shared:
            shared.append(MemoryBreakerBackend(config))
        return shared[0]

    return make


def batch(gen: int, calls: int, failures: int, *, had_success: bool = False) -> Batch:
    trailing = failures if not had_success else 0
    return Batch(gen, calls, failures, had_success=had_success, trailing=trailing)


async def test_backends_satisfy_the_protocol(backends: Factory) -> None:
    backend = backends()
    assert backend.kind in ("redis", "memory")
    snap = await backend.flush(Batch(gen=0))
    assert (snap.state, snap.gen, snap.flag) == ("closed", 0, False)


async def test_flush_trips_on_the_failure_rate(backends: Factory) -> None:
    a, b = backends(minimum_calls=10, wait_open_seconds=30), backends(minimum_calls=10,
                                                                      wait_open_seconds=30)
    snap = await a.flush(batch(0, 9, 9))
    assert snap.state == "closed" and not snap.flag  # under minimum_calls
    snap = await b.flush(batch(0, 1, 1))  # another instance: the counts are fleet-wide
    assert snap.state == "open" and snap.flag and 29 < snap.remaining <= 30
    # A batch of the old generation, or sent while open, changes nothing.
    again = await a.flush(batch(0, 50, 50))
    assert again.state == "open" and not again.flag and again.version == snap.version


async def test_a_stale_generation_is_not_counted(backends: Factory) -> None:
    a = backends(minimum_calls=2)
    await a.admin("force_close")  # generation 1
    snap = await a.flush(batch(0, 10, 10))
    assert snap.state == "closed" and snap.gen == 1
    assert (await a.flush(batch(1, 2, 2))).state == "open"


async def test_half_open_leases_and_close(backends: Factory) -> None:
    a = backends(minimum_calls=1, wait_open_seconds=0.05, half_open_permits=2)
    opened = await a.flush(batch(0, 1, 1))
    assert opened.state == "open"
    assert await _until_half_open(a)
    gen = (await a.flush(Batch(gen=-1))).gen
    assert gen == opened.gen + 1
    first, second, third = [await a.acquire(lease) for lease in ("l1", "l2", "l3")]
    assert [first.flag, second.flag, third.flag] == [True, True, False]  # two permits
    stale = await a.release("l1", gen - 1, "success")
    assert stale.flag and stale.state == "half_open"  # an older generation's result...
    assert (await a.acquire("l4")).flag  # ...not counted, but its permit is free again
    assert not (await a.release("l2", gen, "success")).flag
    closed = await a.release("l4", gen, "success")
    assert closed.state == "closed" and not closed.flag and closed.gen == gen + 1


async def test_a_failed_trial_reopens_and_a_cancelled_one_frees_its_permit(
        backends: Factory) -> None:
    a = backends(minimum_calls=1, wait_open_seconds=0.05, half_open_permits=1)
    await a.flush(batch(0, 1, 1))
    assert await _until_half_open(a)
    assert (await a.acquire("l1")).flag
    assert not (await a.acquire("l2")).flag
    gen = (await a.release("l1", (await a.flush(Batch(gen=-1))).gen, "cancel")).gen
    assert (await a.acquire("l3")).flag  # the cancelled trial gave its permit back
    reopened = await a.release("l3", gen, "failure")
    assert reopened.state == "open"


async def test_admin_actions(backends: Factory) -> None:
    a, b = backends(minimum_calls=2), backends(minimum_calls=2)
    assert (await a.admin("force_open")).state == "forced_open"
    assert (await b.flush(batch(0, 5, 0, had_success=True))).state == "forced_open"
    assert not (await b.acquire("x")).flag
    disabled = await b.admin("disable")
    assert disabled.state == "disabled" and disabled.flag
    assert (await a.flush(batch(disabled.gen, 10, 10))).state == "disabled"
    closed = await a.admin("force_close")
    assert closed.state == "closed" and closed.gen == disabled.gen + 1
    assert (await b.flush(batch(closed.gen, 2, 2))).state == "open"
    reset = await b.admin("reset")
    assert reset.state == "closed" and reset.remaining == 0 and reset.gen > closed.gen


async def test_watch_delivers_every_change(backends: Factory) -> None:
    a, b = backends(minimum_calls=2), backends(minimum_calls=2)
    seen: list[Snapshot] = []
    subscribed = asyncio.Event()
    task = asyncio.create_task(b.watch(seen.append, on_subscribed=subscribed.set, retry=0.2))
    try:
        async with asyncio.timeout(10):
            await subscribed.wait()
        forced = await a.admin("force_open")
        await a.admin("force_close")
        assert await eventually(lambda: len(seen) >= 2)
        assert [s.state for s in seen[:2]] == ["forced_open", "closed"]
        assert seen[0].version == forced.version and seen[0].epoch == forced.epoch
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def _until_half_open(backend: BreakerBackend) -> bool:
    for _ in range(500):
        if (await backend.flush(Batch(gen=-1))).state == "half_open":
            return True
        await asyncio.sleep(0.01)
    return False
