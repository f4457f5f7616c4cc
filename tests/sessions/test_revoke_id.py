"""revoke_id: revoke one session by the id list() shows (what DELETE /v1/sessions/{id} uses)."""

from __future__ import annotations

from tests.sessions.conftest import StoreFactory


async def test_revoke_by_listed_id(make_store: StoreFactory) -> None:
    store = make_store()
    keep = await store.create("u-rid", ip="203.0.113.1")
    drop = await store.create("u-rid", ip="203.0.113.2")
    ids = {info.id for info in await store.list_sessions("u-rid")}
    assert ids == {keep.id, drop.id}
    assert await store.revoke_id("u-rid", drop.id)
    assert not await store.revoke_id("u-rid", drop.id)  # already gone
    assert await store.get(drop.token) is None
    assert (await store.get(keep.token)) is not None
    assert [i.id for i in await store.list_sessions("u-rid")] == [keep.id]


async def test_revoke_id_cannot_reach_another_users_session(make_store: StoreFactory) -> None:
    store = make_store()
    theirs = await store.create("victim")
    assert not await store.revoke_id("attacker", theirs.id)
    assert not await store.revoke_id("attacker", "not a valid id!")
    assert (await store.get(theirs.token)) is not None


async def test_evict_oldest_within_one_millisecond(make_store: StoreFactory) -> None:
    # Sessions created back to back share a millisecond; the first must still be the evicted one.
    for _ in range(5):
        store = make_store(max_per_user=2)
        first = await store.create("u-ms")
        second = await store.create("u-ms")
        third = await store.create("u-ms")
        assert await store.get(first.token) is None
        assert {i.id for i in await store.list_sessions("u-ms")} == {second.id, third.id}
        await store.revoke_all("u-ms")
