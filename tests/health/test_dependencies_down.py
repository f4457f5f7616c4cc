"""Real Redis / PostgreSQL checks; liveness never depends on them."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import create_async_engine

from fleetkit.health import (
    HealthMiddleware,
    HealthRegistry,
    add_redis_checks,
    sqlalchemy_check,
)
from fleetkit.redis import RedisClients
from tests.support import PG_PRIMARY_URL, REDIS_URL, RedisServer, free_port


async def _nothing(scope: object, receive: object, send: object) -> None:
    raise AssertionError("unreachable")


def _asyncpg(url: str) -> str:
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


async def test_liveness_stays_200_with_redis_and_postgres_down(redis_server: RedisServer) -> None:
    clients = RedisClients.from_urls(redis_server.url)
    pg_up = create_async_engine(_asyncpg(PG_PRIMARY_URL), pool_size=1)
    pg_down = create_async_engine(
        f"postgresql+asyncpg://fleetkit:fleetkit@127.0.0.1:{free_port()}/fleetkit", pool_size=1)
    up = HealthRegistry(interval=60, fail_after=2)
    add_redis_checks(up, clients, critical=True, roles=("main",))
    up.add("postgres", sqlalchemy_check(pg_up), critical=True, measurement="responseTime")
    down = HealthRegistry(interval=60, fail_after=1)
    add_redis_checks(down, clients, critical=True, roles=("main",))
    down.add("postgres", sqlalchemy_check(pg_down, timeout=2), critical=True)
    try:
        app_up = HealthMiddleware(_nothing, registry=up, show_details=True)
        app_down = HealthMiddleware(_nothing, registry=down, show_details=True)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app_up),
                                     base_url="http://t") as c_up, \
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app_down),
                                  base_url="http://t") as c_down:
            await up.run_all()
            ready = await c_up.get("/health/ready")
            assert ready.status_code == 200, ready.json()
            assert ready.json()["checks"]["postgres:responseTime"][0]["observedUnit"] == "ms"

            redis_server.kill9()
            for _ in range(2):  # fail_after=2: one failure is damped, two fail
                await up.run_all()
            await down.run_all()
            for client in (c_up, c_down):
                ready, live = await client.get("/health/ready"), await client.get("/health/live")
                assert ready.status_code == 503
                assert ready.json()["checks"]["redis-main:responseTime"][0]["status"] == "fail"
                assert live.status_code == 200
                assert live.json()["status"] == "pass"
                assert not any(k.startswith(("redis", "postgres")) for k in live.json()["checks"])
            pg = (await c_down.get("/health")).json()["checks"]["postgres:status"][0]
            assert pg["status"] == "fail" and pg["componentType"] == "datastore"
    finally:
        await up.aclose()
        await down.aclose()
        await clients.aclose()
        await pg_up.dispose()
        await pg_down.dispose()


async def test_redis_role_checks_against_real_redis() -> None:
    clients = RedisClients.from_urls(REDIS_URL)
    embedded = RedisClients.from_urls(None)
    registry = HealthRegistry(interval=60)
    names = add_redis_checks(registry, clients, critical=False)
    emb_registry = HealthRegistry(interval=60)
    add_redis_checks(emb_registry, embedded, critical=True, roles=("sessions",))
    try:
        assert names == ["redis-main", "redis-ratelimit", "redis-sessions"]
        await registry.run_all()
        await emb_registry.run_all()
        report = await registry.health()
        assert [c.status for c in report.checks] == ["pass"] * 3
        assert all(c.result is not None and isinstance(c.result.observed_value, float)
                   for c in report.checks)
        emb = (await emb_registry.ready()).checks[0]
        assert emb.status == "pass" and emb.result is not None
        assert emb.result.output == "embedded: in-memory backend"
    finally:
        await registry.aclose()
        await emb_registry.aclose()
        await clients.aclose()
