"""Public API: context manager, decorator, call, fallback, listeners, registry, httpx, metrics."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from fleetkit.breaker import BreakerRegistry, BreakerTransport, CircuitBreaker, CircuitOpenError
from fleetkit.errors import CircuitOpenError as ErrorsCircuitOpenError


class Boom(Exception):
    pass


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_contract_from_design(redis: Redis, prefix: str) -> None:
    b = CircuitBreaker("payments", redis=redis, key_prefix=prefix, failure_rate_threshold=0.5,
                       minimum_calls=20, window_seconds=10, wait_open_seconds=5,
                       half_open_permits=3)
    try:
        assert b.state == "closed"
        async with b:
            pass
        for _ in range(20):
            with pytest.raises(Boom):
                async with b:
                    raise Boom
        await b.flush()
        assert b.state == "open"
        with pytest.raises(ErrorsCircuitOpenError) as info:
            async with b:
                pass
        assert info.value.name == "payments" and 4 < (info.value.retry_after or 0) <= 5
        assert CircuitOpenError is ErrorsCircuitOpenError
    finally:
        await b.aclose()


async def test_decorator_fallback_and_listeners() -> None:
    name = f"api-{uuid.uuid4().hex[:6]}"
    seen: list[tuple[str, str, str]] = []
    async_seen: list[str] = []

    async def on_async(n: str, old: str, new: str) -> None:
        async_seen.append(new)

    b = CircuitBreaker(name, minimum_calls=2,
                       fallback=lambda exc, x: f"fallback {type(exc).__name__} {x}")
    b.add_listener(lambda n, old, new: seen.append((n, old, new)))
    b.add_listener(on_async)

    @b
    async def flaky(x: int) -> str:
        raise Boom

    @b.protect(fallback=None)
    async def plain(x: int) -> int:
        return x * 2

    try:
        assert await flaky(1) == "fallback Boom 1"  # failure -> fallback
        assert await flaky(2) == "fallback Boom 2"
        await b.flush()
        assert b.state == "open"
        assert await flaky(3) == "fallback CircuitOpenError 3"  # rejection -> fallback
        with pytest.raises(CircuitOpenError):
            await plain(4)
        assert seen == [(name, "closed", "open")]
        await asyncio.sleep(0)
        assert async_seen == ["open"]
        await b.reset()
        assert await plain(4) == 8
        assert await b.call(plain, 5) == 10
    finally:
        await b.aclose()


async def test_metrics_count_outcomes_rejections_transitions() -> None:
    name = f"m-{uuid.uuid4().hex[:6]}"
    b = CircuitBreaker(name, minimum_calls=3, slow_call_seconds=0.01,
                       slow_call_rate_threshold=1.0)

    async def slow() -> None:
        await asyncio.sleep(0.02)

    try:
        await b.call(slow)
        for _ in range(3):
            with pytest.raises(Boom):
                async with b:
                    raise Boom
        await b.flush()
        for _ in range(2):
            with pytest.raises(CircuitOpenError):
                await b.call(slow)
        await b.flush()
        assert sample("fleetkit_breaker_calls_total", breaker=name, outcome="success") == 1
        assert sample("fleetkit_breaker_calls_total", breaker=name, outcome="failure") == 3
        assert sample("fleetkit_breaker_slow_calls_total", breaker=name) == 1
        assert sample("fleetkit_breaker_rejected_calls_total", breaker=name, state="open") == 2
        assert sample("fleetkit_breaker_transitions_total", breaker=name, from_state="closed",
                      to_state="open") == 1
        assert sample("fleetkit_breaker_state", breaker=name, state="open") == 1
        assert sample("fleetkit_breaker_state", breaker=name, state="closed") == 0
        assert REGISTRY.get_sample_value("fleetkit_breaker_flush_lag_seconds",
                                         {"breaker": name}) is not None
    finally:
        await b.aclose()


async def test_registry(redis: Redis, prefix: str) -> None:
    registry = BreakerRegistry(redis=redis, key_prefix=prefix, minimum_calls=2,
                               flush_interval=0.05)
    changes: list[str] = []
    registry.add_listener(lambda n, old, new: changes.append(f"{n}:{new}"))
    try:
        db = registry.get("db")
        assert registry.get("db") is db
        assert "db" in registry and "other" not in registry
        api = registry.get("api", minimum_calls=50)
        assert api.config.minimum_calls == 50 and db.config.minimum_calls == 2
        await db.force_open()
        assert changes == ["db:forced_open"]
        assert registry.states() == {"db": "forced_open", "api": "closed"}
        health = await registry.health()
        assert health.status == "pass" and health.observed_value == 2
    finally:
        await registry.aclose()
    # Closed breakers stopped their background tasks.
    assert all(not b._tasks for b in registry)


async def test_httpx_transport_counts_5xx_not_4xx() -> None:
    name = f"http-{uuid.uuid4().hex[:6]}"
    b = CircuitBreaker(name, minimum_calls=4)
    requests: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request.url.path)
        return httpx.Response(int(request.url.path.strip("/")))

    transport = BreakerTransport(b, transport=httpx.MockTransport(handler))
    async with httpx.AsyncClient(transport=transport, base_url="http://downstream") as client:
        try:
            for _ in range(6):
                assert (await client.get("/404")).status_code == 404
            await b.flush()
            assert b.state == "closed"  # client errors are not the service failing
            for _ in range(6):
                assert (await client.get("/503")).status_code == 503
            await b.flush()
            assert b.state == "open"
            sent = len(requests)
            with pytest.raises(CircuitOpenError):
                await client.get("/200")
            assert len(requests) == sent  # rejected without touching the network
        finally:
            await b.aclose()


async def test_transport_picks_breaker_per_host() -> None:
    registry = BreakerRegistry(minimum_calls=1)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500 if request.url.host == "bad" else 200)

    transport = BreakerTransport(lambda req: registry.get(req.url.host),
                                 transport=httpx.MockTransport(handler))
    async with httpx.AsyncClient(transport=transport) as client:
        try:
            assert (await client.get("http://bad/")).status_code == 500
            assert (await client.get("http://good/")).status_code == 200
            for b in registry:
                await b.flush()
            assert registry.states() == {"bad": "open", "good": "closed"}
        finally:
            await registry.aclose()
