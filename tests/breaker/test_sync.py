"""Plain functions and ``with`` blocks (pybreaker's shape), from threads, on both backends."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from fleetkit.breaker import CircuitBreaker, CircuitOpenError
from fleetkit.errors import ConfigError
from fleetkit.redis import create_client
from tests.breaker.conftest import eventually
from tests.support import REDIS_URL


class Boom(Exception):
    pass


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` from sync code until true or ``timeout`` (a bound, not a guess)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def breaker_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("fleetkit-breaker-")]


async def trip_to_half_open(b: CircuitBreaker) -> None:
    """Two failures (``minimum_calls=2``), then wait for the short open period to end."""
    await b.start()
    for _ in range(2):
        with pytest.raises(Boom):
            async with b:
                raise Boom
    await b.flush()
    assert await eventually(lambda: b.state == "half_open")


@pytest.fixture(params=["redis", "memory"])
def make(request: pytest.FixtureRequest) -> Iterator[Callable[..., CircuitBreaker]]:
    """Breakers on Redis (a unique prefix) or in memory, shut down after the test."""
    made: list[CircuitBreaker] = []
    prefix = f"test:cb:sync:{uuid.uuid4().hex[:8]}"

    def factory(**options: Any) -> CircuitBreaker:
        options.setdefault("flush_interval", 0.05)
        options.setdefault("poll_interval", 0.2)
        redis = create_client(REDIS_URL) if request.param == "redis" else None
        b = CircuitBreaker(f"sync-{uuid.uuid4().hex[:6]}", redis=redis, key_prefix=prefix,
                           **options)
        made.append(b)
        return b

    yield factory
    for b in made:
        b.shutdown(close_redis=True)


def test_plain_program_decorator_and_with(make: Callable[..., CircuitBreaker]) -> None:
    """No event loop anywhere: the breaker runs its own, and the whole cycle works."""
    b = make(minimum_calls=40, wait_open_seconds=0.3, half_open_permits=2)

    @b
    def charge(amount: int) -> str:
        if amount < 0:
            raise Boom
        return f"charged {amount}"

    assert charge(5) == "charged 5"
    assert charge.__name__ == "charge"
    with b:
        pass
    assert breaker_threads()  # the breaker's own loop: flushes and subscription

    def fail_many() -> None:
        for _ in range(20):
            with pytest.raises((Boom, CircuitOpenError)):
                charge(-1)

    threads = [threading.Thread(target=fail_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wait_until(lambda: b.state == "open")
    with pytest.raises(CircuitOpenError) as info:
        charge(1)
    assert info.value.state == "open"
    with pytest.raises(CircuitOpenError), b:
        pass

    # Half-open: trial calls from this thread take fleet-wide leases on the breaker's loop.
    assert wait_until(lambda: b.state == "half_open")
    results = []
    for _ in range(200):
        try:
            results.append(charge(1))
        except CircuitOpenError:
            time.sleep(0.01)
        if b.state == "closed":
            break
    assert b.state == "closed" and results.count("charged 1") == 2  # both permits succeeded
    b.shutdown(close_redis=True)
    assert not breaker_threads()


async def test_threads_of_an_async_app_lose_no_counts() -> None:
    """Sync calls from a thread pool, breaker started on the app's loop: every call counted."""
    name = f"sync-counts-{uuid.uuid4().hex[:6]}"
    b = CircuitBreaker(name, minimum_calls=2400, failure_rate_threshold=1.0,
                       window_seconds=120, flush_interval=0.05)

    @b.protect(fallback=None)
    def fail() -> None:
        raise Boom

    def worker() -> None:
        for _ in range(300):
            with pytest.raises(Boom):
                fail()

    try:
        await b.start()
        # 8 x 300 = 2400 failures, while the loop flushes concurrently: a lost count stays
        # closed (the rule needs all 2400), a miscounted one would trip early.
        await asyncio.gather(*(asyncio.to_thread(worker) for _ in range(7)))
        await b.flush()
        assert b.state == "closed"
        await asyncio.to_thread(worker)
        await b.flush()
        assert b.state == "open"
        assert REGISTRY.get_sample_value("fleetkit_breaker_calls_total",
                                         {"breaker": name, "outcome": "failure"}) == 2400
    finally:
        await b.aclose()


async def test_a_sync_trial_in_a_thread_holds_a_fleet_wide_permit() -> None:
    b = CircuitBreaker(f"sync-trial-{uuid.uuid4().hex[:6]}", minimum_calls=2,
                       wait_open_seconds=0.2, half_open_permits=1, flush_interval=0.05)
    other = threading.Event()
    release = threading.Event()

    def trial() -> str:
        with b:
            other.set()
            assert release.wait(10)
        return "trial done"

    def second() -> str:
        try:
            with b:
                return "admitted"
        except CircuitOpenError as exc:
            return exc.state

    try:
        await trip_to_half_open(b)
        holder = asyncio.create_task(asyncio.to_thread(trial))
        assert await asyncio.to_thread(other.wait, 10)
        assert await asyncio.to_thread(second) == "half_open"  # the one permit is held
        release.set()
        assert await holder == "trial done"
        assert b.state == "closed"  # the thread's trial result closed the breaker
    finally:
        release.set()
        await b.aclose()


async def test_sync_code_on_the_loop_thread_never_blocks_the_loop() -> None:
    b = CircuitBreaker(f"sync-loop-{uuid.uuid4().hex[:6]}", minimum_calls=2,
                       wait_open_seconds=0.2, half_open_permits=1, flush_interval=0.05)

    @b
    def double(x: int) -> int:
        return x * 2

    try:
        assert double(2) == 4  # sync code on the loop's thread: this loop becomes home
        await trip_to_half_open(b)
        # A trial needs the backend's answer; waiting for it here would block the loop.
        with pytest.raises(CircuitOpenError) as info:
            double(3)
        assert info.value.state == "half_open"
        assert await b.call(asyncio.sleep, 0, "async trial") == "async trial"
        assert b.state == "closed" and double(4) == 8
        with pytest.raises(ConfigError, match="aclose"):
            b.shutdown()  # would wait for this very loop
    finally:
        await b.aclose()


def test_sync_fallback_and_classification() -> None:
    b = CircuitBreaker(f"sync-fb-{uuid.uuid4().hex[:6]}", minimum_calls=2,
                       ignore_exceptions=(KeyError,), result_is_failure=lambda r: r == "bad",
                       fallback=lambda exc, x: f"fallback {type(exc).__name__} {x}",
                       flush_interval=0.05)

    @b
    def work(x: str) -> str:
        if x == "missing":
            raise KeyError(x)
        if x == "boom":
            raise Boom
        return x

    try:
        with pytest.raises(KeyError):
            work("missing")  # ignored: no fallback, not counted
        assert work("boom") == "fallback Boom boom"
        assert work("bad") == "bad"  # a failure by its result, returned as it is
        assert wait_until(lambda: b.state == "open")
        assert work("ok") == "fallback CircuitOpenError ok"
    finally:
        b.shutdown()


def test_generator_functions_are_refused_at_decoration() -> None:
    b = CircuitBreaker(f"sync-gen-{uuid.uuid4().hex[:6]}")
    with pytest.raises(ConfigError, match="generator"):
        @b
        def numbers() -> Iterator[int]:
            yield 1
    with pytest.raises(ConfigError, match="generator"):
        @b.protect()
        async def stream() -> Any:
            yield 1
    with pytest.raises(ConfigError):
        b(42)  # type: ignore[arg-type]
    b.shutdown()  # never started: nothing to stop
    assert not any(t.name.endswith(b.name) for t in threading.enumerate())
