"""Redis killed with -9: the breaker goes local-only (visibly), then rejoins after the restart."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import REGISTRY

from fleetkit.breaker import CircuitBreaker, CircuitOpenError
from fleetkit.redis import ClientOptions, create_client
from tests.breaker.conftest import eventually
from tests.support import RedisServer


class Boom(Exception):
    pass


async def test_kill9_local_only_then_rejoin(redis_server: RedisServer,
                                            caplog: pytest.LogCaptureFixture) -> None:
    client = create_client(redis_server.url, options=ClientOptions(
        socket_timeout=0.3, connect_timeout=0.3, retries=0))
    b = CircuitBreaker("outage", redis=client, minimum_calls=5, wait_open_seconds=30,
                       flush_interval=0.05, poll_interval=0.2)
    other = CircuitBreaker("outage", redis=client, minimum_calls=5, flush_interval=0.05,
                           poll_interval=0.2)

    def local_only() -> float | None:
        return REGISTRY.get_sample_value("fleetkit_breaker_local_only", {"breaker": "outage"})

    async def fail() -> None:
        raise Boom

    async def ok() -> str:
        return "ok"

    try:
        await b.start()
        await other.start()
        assert (await b.health()).status == "pass"
        redis_server.kill9()
        # Calls keep working on the cached state, without Redis.
        assert await b.call(ok) == "ok"
        caplog.set_level(logging.WARNING, logger="fleetkit.breaker")
        assert await eventually(lambda: b.local_only)
        health = await b.health()
        assert health.status == "warn" and health.details["mode"] == "local-only"
        assert local_only() == 1
        assert any("local state only" in r.getMessage() for r in caplog.records)
        # Local rules still protect the process: its own failures open its breaker.
        for _ in range(5):
            with pytest.raises(Boom):
                await b.call(fail)
        await b.flush()
        assert b.state == "open"
        with pytest.raises(CircuitOpenError):
            await b.call(ok)

        redis_server.start()
        assert await eventually(lambda: not b.local_only and not other.local_only, timeout=20)
        assert (await b.health()).status == "pass"
        assert local_only() == 0
        assert any("rejoined" in r.getMessage() for r in caplog.records)
        # Back on the fleet-wide state, which never saw the local failures: closed.
        assert b.state == "closed"
        assert await b.call(ok) == "ok"
        # ...and shared again: an operator action on one instance reaches the other.
        await other.force_open()
        assert await eventually(lambda: b.state == "forced_open")
    finally:
        await b.aclose()
        await other.aclose()
        await client.aclose()
