"""Degraded mode: kill -9 the app's Redis; authenticated reads keep working, nothing 5xx."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.app.conftest import AppFactory, distributed_env, register_and_login
from tests.support import RedisServer


async def test_redis_outage_is_absorbed_then_healed(tmp_path: Path, app_factory: AppFactory,
                                                    redis_server: RedisServer) -> None:
    env = distributed_env(tmp_path, REDIS_URL=redis_server.url, REDIS_RETRIES="0",
                          REDIS_SOCKET_TIMEOUT="0.5", REDIS_CONNECT_TIMEOUT="0.5")
    _, client = await app_factory(env)
    token, _ = await register_and_login(client)
    auth = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/v1/me", headers=auth)).status_code == 200

    redis_server.kill9()
    statuses = []
    for _ in range(20):
        # Session from the stale-if-error cache, rate limits from the local fallback, the
        # database untouched: the outage itself fails no request.
        statuses.append((await client.get("/v1/me", headers=auth)).status_code)
        statuses.append((await client.get("/v1/ping")).status_code)
    assert set(statuses) == {200}, statuses
    health = await client.get("/health")
    assert health.status_code == 200  # degraded is warn, still serving

    redis_server.start()
    after = [(await client.get("/v1/me", headers=auth)).status_code for _ in range(10)]
    assert set(after) == {200}
    limiter = client._transport.app.state.services.limiter  # type: ignore[attr-defined]
    for _ in range(100):  # the limiter probes Redis with backoff (at most 5 s apart)
        if limiter.backend == "redis":
            break
        await client.get("/v1/ping")
        await asyncio.sleep(0.1)
    assert limiter.backend == "redis"  # back on the shared state
