"""Stale-if-error during a Redis outage (private killable Redis) and multi-region routing."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from fleetkit.errors import BackendUnavailable
from fleetkit.redis import ClientOptions, create_client
from fleetkit.sessions import SessionStore
from tests.sessions.conftest import SESSIONS_REDIS_URL
from tests.support import RedisServer

FAST = ClientOptions(retries=0, socket_timeout=0.5, connect_timeout=0.5)


async def test_stale_if_error_and_health(redis_server: RedisServer) -> None:
    client = create_client(redis_server.url, role="sessions", options=FAST)
    store = SessionStore(redis=client, name="outage-test", stale_max_age=60)
    try:
        seen = await store.create("u1", data={"role": "user"})
        unseen = await store.create("u2")
        store._cache.forget(unseen.id)  # never validated by this instance
        assert await store.get(seen.token) is not None
        redis_server.kill9()
        served = await store.get(seen.token)
        assert served is not None and served.stale and served.data == {"role": "user"}
        with pytest.raises(BackendUnavailable):
            await store.get(unseen.token)
        health = await store.health()
        assert health.status == "warn" and "unreachable" in (health.output or "")
        assert REGISTRY.get_sample_value("fleetkit_sessions_degraded",
                                         {"store": "outage-test"}) == 1
        redis_server.start()
        back = await store.get(seen.token)
        assert back is not None and not back.stale
        assert (await store.health()).status == "pass"
    finally:
        await client.aclose()


async def test_foreign_tokens_route_or_reject(redis_server: RedisServer) -> None:
    local = create_client(SESSIONS_REDIS_URL, role="sessions")
    remote = create_client(redis_server.url, role="sessions")
    try:
        us = SessionStore(redis=remote, region="us-east")
        s = await us.create("traveller", data={"home": "us"})
        assert s.token.startswith("us-east.")
        eu = SessionStore(redis=local, region="eu-west", regions={"us-east": remote},
                          foreign_tokens="route")
        got = await eu.get(s.token)
        assert got is not None and got.data == {"home": "us"} and got.region == "us-east"
        assert await eu.update(s.token, {"seen_in": "eu"})
        strict = SessionStore(redis=local, region="eu-west", regions={"us-east": remote},
                              foreign_tokens="reject")
        assert await strict.get(s.token) is None
        assert await eu.revoke(s.token)  # revoke is immediate in the home region
        assert await us.get(s.token) is None
    finally:
        await local.aclose()
        await remote.aclose()
