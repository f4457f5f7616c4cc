"""kill -9 of Redis under load: no exception reaches callers, fallback engages, Redis returns."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

from prometheus_client import REGISTRY

from fleetkit.ratelimit import Limit, RateLimiter
from fleetkit.redis import ClientOptions, create_client
from tests.support import RedisServer


def _transitions(name: str, to: str) -> float:
    value = REGISTRY.get_sample_value("fleetkit_ratelimit_fallback_transitions_total",
                                      {"limiter": name, "to": to})
    return value or 0.0


async def test_kill9_under_load(redis_server: RedisServer) -> None:
    client = create_client(redis_server.url, options=ClientOptions(
        retries=0, socket_timeout=0.5, connect_timeout=0.2))
    limiter = RateLimiter(redis=client, name="fault", probe_interval=0.05,
                          probe_max_interval=0.2, fallback_instances=2)
    limits = [Limit.parse("1000/minute"), Limit.parse("100000/hour")]
    seen: Counter[str] = Counter()
    errors: list[BaseException] = []
    stop = asyncio.Event()
    before = (_transitions("fault", "fallback"), _transitions("fault", "redis"))

    async def load() -> None:
        deadline = time.monotonic() + 60  # bounded even if the test body fails
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                d = await limiter.hit_many(f"client:{random.randrange(50)}", limits)
            except BaseException as exc:  # the assertion: nothing may escape
                errors.append(exc)
                return
            seen[d.backend] += 1
            await asyncio.sleep(0.001)

    async def wait_for(backend: str, timeout: float) -> None:
        start = seen[backend]
        deadline = time.monotonic() + timeout
        while seen[backend] < start + 20 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert seen[backend] >= start + 20, (backend, dict(seen), errors)

    tasks = [asyncio.create_task(load()) for _ in range(16)]
    try:
        await wait_for("redis", 10)
        assert (await limiter.health()).status == "pass"
        redis_server.kill9()
        await wait_for("local", 10)
        health = await limiter.health()
        assert health.status == "warn" and "fallback" in (health.output or "")
        redis_server.start()
        await wait_for("redis", 15)
        assert limiter.backend == "redis"
        assert (await limiter.health()).status == "pass"
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await limiter.aclose()
        await client.aclose()
    assert errors == []
    assert _transitions("fault", "fallback") >= before[0] + 1
    assert _transitions("fault", "redis") >= before[1] + 1
