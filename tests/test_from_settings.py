"""from_settings of the rate limiter, session store and monitor: the service's configuration.

The reference service builds these three through ``from_settings`` and the benchmarks build them
the same way, so what is asserted here (which client, which coalescer batching) is what ships.
"""

from __future__ import annotations

from redis.asyncio import Redis

from fleetkit.config import load_settings
from fleetkit.monitor import SessionMonitor
from fleetkit.ratelimit import Limit, RateLimiter
from fleetkit.redis import RedisClients
from fleetkit.sessions import SessionStore
from tests.support import REDIS_URL


async def test_limiter_and_store_keep_their_own_batching_on_a_shared_client(redis: Redis) -> None:
    settings = load_settings(env={}, redis_url=REDIS_URL, rate_limit_algorithm="gcra",
                             session_max_per_user=3, instance_id="from-settings")
    clients = RedisClients.from_settings(settings)
    try:
        assert clients.ratelimit is clients.sessions  # one URL: the roles share one client
        limiter = RateLimiter.from_settings(settings, redis_clients=clients)
        store = SessionStore.from_settings(settings, redis_clients=clients)
        limiter_co = clients.coalescer("ratelimit", RateLimiter.COALESCER)
        store_co = clients.coalescer("sessions", SessionStore.COALESCER)
        assert limiter._coalescer is limiter_co
        assert limiter_co is not None and store_co is not None and limiter_co is not store_co
        assert (limiter_co.config.max_batch, limiter_co.config.max_inflight) == (32, 8)
        assert store_co.config == SessionStore.COALESCER
        assert (limiter.algorithm, limiter.instance_id) == ("gcra", "from-settings")
        decision = await limiter.hit("user:1", Limit.parse("2/minute"))
        assert decision.allowed and decision.backend == "redis"
        assert store.max_per_user == 3 and not store.embedded
        session = await store.create("u1")
        assert (await store.get(session.token)) is not None
        await limiter.aclose()
        await store.aclose()
    finally:
        await clients.aclose()


async def test_embedded_settings_build_memory_components() -> None:
    settings = load_settings(env={})
    clients = RedisClients.from_settings(settings)
    limiter = RateLimiter.from_settings(settings, redis_clients=clients, name="embedded")
    store = SessionStore.from_settings(settings, redis_clients=clients)
    assert limiter.backend == "memory" and limiter.name == "embedded"
    assert (await limiter.hit("k", Limit.parse("1/minute"))).backend == "memory"
    assert store.embedded
    assert SessionMonitor.from_settings(settings).config is None  # nothing to run
    await limiter.aclose()
    await store.aclose()
    await clients.aclose()


def test_monitor_watches_the_session_redis() -> None:
    settings = load_settings(env={}, redis_url="redis://main:6379/0",
                             redis_session_url="redis://sessions:6379/0",
                             session_monitor_interval=7, instance_id="m1")
    monitor = SessionMonitor.from_settings(settings, scan_count=50)
    assert monitor.config is not None
    assert monitor.config.redis_url == "redis://sessions:6379/0"
    assert (monitor.config.interval, monitor.config.instance_id) == (7, "m1")
    assert monitor.config.scan_count == 50
