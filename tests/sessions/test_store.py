"""SessionStore semantics on standalone Redis, Redis Cluster and the in-memory twin."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster

from fleetkit.errors import SessionLimitExceeded
from fleetkit.sessions import SessionStore, parse_token
from fleetkit.sessions.memory import MemorySessionBackend
from tests.sessions.conftest import StoreFactory


async def _index_size(store: SessionStore, client: Any, user: str) -> int:
    key = store.index_key(user)
    if client is None:
        backend = store.router.local
        assert isinstance(backend, MemorySessionBackend)
        found = backend.ks.data.get(key)
        return len(found) if found else 0
    return int(await client.zcard(key))


async def _wait_until(predicate: Any, timeout: float = 8.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.1)
    return False


async def test_contract(make_store: StoreFactory) -> None:
    store = make_store(idle_ttl=1800, absolute_ttl=86400, max_per_user=5)
    s = await store.create("u1", data={"role": "user"}, ip="203.0.113.7", user_agent="x")
    parsed = parse_token(s.token)
    assert parsed is not None and parsed.region == "local" and len(parsed.secret) == 43
    got = await store.get(s.token)
    assert got is not None
    assert (got.user_id, got.data, got.ip, got.user_agent) == ("u1", {"role": "user"},
                                                              "203.0.113.7", "x")
    assert got.created <= got.last_seen
    listed = await store.list_sessions("u1")
    assert [i.id for i in listed] == [s.id]
    assert (listed[0].ip, listed[0].user_agent) == ("203.0.113.7", "x")
    assert await store.update(s.token, {"theme": "dark", "n": [1, 2]}, delete=["role"])
    got = await store.get(s.token)
    assert got is not None and got.data == {"theme": "dark", "n": [1, 2]}
    other = await store.create("u1")
    assert await store.revoke(s.token) is True
    assert await store.get(s.token) is None
    assert await store.revoke(s.token) is False
    assert [i.id for i in await store.list_sessions("u1")] == [other.id]
    assert await store.revoke_all("u1") == 1
    assert await store.get(other.token) is None
    assert await store.list_sessions("u1") == []


async def test_update_is_per_field(make_store: StoreFactory) -> None:
    """Two writers changing different fields both win (no whole-blob last-writer-wins)."""
    store = make_store()
    s = await store.create("u1", data={"a": 0, "b": 0})
    await asyncio.gather(*(store.update(s.token, {f"k{i}": i}) for i in range(20)))
    got = await store.get(s.token)
    assert got is not None
    assert got.data == {"a": 0, "b": 0, **{f"k{i}": i for i in range(20)}}


async def test_cap_evicts_oldest_under_50_concurrent_logins(make_store: StoreFactory,
                                                            backend: tuple[str, Any]) -> None:
    store = make_store(max_per_user=5, on_limit="evict_oldest")
    first = await store.create("alice")
    sessions = await asyncio.gather(*(store.create("alice") for _ in range(50)))
    listed = await store.list_sessions("alice")
    assert len(listed) == 5
    assert await _index_size(store, backend[1], "alice") == 5
    alive = [s for s in sessions if await store.get(s.token) is not None]
    assert len(alive) == 5
    assert {s.id for s in alive} == {i.id for i in listed}
    assert await store.get(first.token) is None  # the oldest went first


async def test_cap_refuses_under_50_concurrent_logins(make_store: StoreFactory) -> None:
    store = make_store(max_per_user=5, on_limit="refuse")
    results = await asyncio.gather(*(store.create("bob") for _ in range(50)),
                                   return_exceptions=True)
    ok = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, SessionLimitExceeded)]
    other = [r for r in results if isinstance(r, BaseException) and r not in refused]
    assert (len(ok), len(refused), other) == (5, 45, [])
    assert len(await store.list_sessions("bob")) == 5


async def test_tombstone_prevents_resurrection(make_store: StoreFactory,
                                               backend: tuple[str, Any]) -> None:
    store = make_store(tombstone_ttl=60)
    s = await store.create("carol", data={"x": 1})
    # In-flight requests keep writing while the session is revoked.
    results = await asyncio.gather(
        *(store.update(s.token, {f"f{i}": i}) for i in range(25)), store.revoke(s.token),
        *(store.update(s.token, {f"g{i}": i}) for i in range(25)),
    )
    assert results[25] is True
    assert await store.update(s.token, {"late": 1}) is False
    assert await store.rotate(s.token) is None
    assert await store.get(s.token) is None
    assert await store.list_sessions("carol") == []
    parsed = parse_token(s.token)
    assert parsed is not None
    key = f"{store.prefix}{{{parsed.route}}}"
    if backend[1] is not None:
        assert await backend[1].exists(key + "s" + s.id) == 0
        assert await backend[1].get(key + "t" + s.id) == b"r"


async def test_rotation_grace(make_store: StoreFactory) -> None:
    store = make_store(rotation_grace=1.0)
    old = await store.create("dave", data={"role": "user"})
    new = await store.rotate(old.token, data={"role": "admin"})
    assert new is not None and new.token != old.token and new.id != old.id
    assert new.created == old.created  # rotation does not extend the login's lifetime
    via_old = await store.get(old.token)
    assert via_old is not None and via_old.grace and via_old.id == new.id
    assert via_old.data == {"role": "admin"}
    assert await store.update(old.token, {"inflight": True})  # lands on the new session
    got = await store.get(new.token)
    assert got is not None and got.data == {"role": "admin", "inflight": True}
    assert [i.id for i in await store.list_sessions("dave")] == [new.id]

    async def old_gone() -> bool:
        return await store.get(old.token) is None

    assert await _wait_until(old_gone)
    assert await store.get(new.token) is not None


async def test_idle_and_absolute_expiry(make_store: StoreFactory) -> None:
    store = make_store(idle_ttl=1.0, absolute_ttl=2.0, touch_interval=0.0)
    idle = await store.create("erin")
    busy = await store.create("erin")
    start = time.monotonic()
    busy_alive_past_idle = False
    idle_gone = False
    busy_gone = False
    # Keep touching `busy` every 0.15 s; `idle` is never read again. Bounded to 8 s.
    while time.monotonic() - start < 8 and not busy_gone:
        await asyncio.sleep(0.15)
        got = await store.get(busy.token)
        if got is None:
            busy_gone = True
        elif time.monotonic() - start > 1.2:
            busy_alive_past_idle = True  # sliding kept it beyond one idle period
        if not idle_gone and time.monotonic() - start > 1.1:
            idle_gone = await store.get(idle.token) is None
    assert busy_alive_past_idle
    assert busy_gone  # ...but not beyond the absolute lifetime
    assert idle_gone or await store.get(idle.token) is None
    assert await store.list_sessions("erin") == []


async def test_index_is_pruned(make_store: StoreFactory, backend: tuple[str, Any]) -> None:
    store = make_store(idle_ttl=0.5, absolute_ttl=10, max_per_user=3)
    for _ in range(3):
        await store.create("frank")
    assert await _index_size(store, backend[1], "frank") == 3

    await asyncio.sleep(0.7)  # sessions expire by TTL; their index entries remain
    assert await _index_size(store, backend[1], "frank") == 3
    fresh = await store.create("frank")  # create prunes the dead entries, evicts nothing
    assert await _index_size(store, backend[1], "frank") == 1
    assert [i.id for i in await store.list_sessions("frank")] == [fresh.id]
    await asyncio.sleep(0.7)
    assert await store.list_sessions("frank") == []  # list prunes too
    assert await _index_size(store, backend[1], "frank") == 0


@pytest.mark.parametrize("token", [
    "", "x", "a.b.c", "local..", "LOCAL.AAAAAA." + "A" * 43, "local.AAAAAA." + "A" * 42,
    "local.AAAAAA." + "A" * 43 + ".x", "local.AAAAA!." + "A" * 43, "ü" * 70,
    "local.AAAAAA." + "A" * 10_000, "local.{AAAAA." + "A" * 43,
])
async def test_malformed_tokens_are_unknown(make_store: StoreFactory, token: str) -> None:
    store = make_store()
    assert await store.get(token) is None
    assert await store.update(token, {"a": 1}) is False
    assert await store.revoke(token) is False
    assert await store.rotate(token) is None


async def test_unknown_wellformed_token(make_store: StoreFactory) -> None:
    store = make_store()
    s = await store.create("gina")
    forged = s.token[:-4] + ("AAAA" if not s.token.endswith("AAAA") else "BBBB")
    assert await store.get(forged) is None
    assert await store.revoke(forged) is False
    assert await store.get(s.token) is not None


async def test_user_keys_share_one_cluster_slot(make_store: StoreFactory,
                                                backend: tuple[str, Any]) -> None:
    store = make_store(tombstone_ttl=60)
    s = await store.create("hank")
    other = await store.create("hank")
    rotated = await store.rotate(s.token)
    assert rotated is not None
    await store.revoke(other.token)
    client = backend[1]
    if isinstance(client, RedisCluster):
        keys = [k async for k in client.scan_iter(match=f"{store.prefix}*")]
        kinds = {k.decode().split("}")[1][0] for k in keys}
        assert kinds == {"s", "u", "r", "t"}  # session, index, rotation alias, tombstone
        assert len({client.keyslot(k) for k in keys}) == 1
