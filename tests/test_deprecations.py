"""Renamed public names keep working for one release, with a DeprecationWarning (CHANGELOG.md)."""

from __future__ import annotations

import pytest

import fleetkit.ratelimit
import fleetkit.sessions.memory
from fleetkit.monitor import SessionMonitor
from fleetkit.ratelimit import MemoryStore
from fleetkit.sessions import MemorySessionBackend, SessionStore


def test_renamed_memory_backends_warn_and_resolve() -> None:
    with pytest.warns(DeprecationWarning, match="MemoryStore"):
        assert fleetkit.ratelimit.MemoryBackend is MemoryStore
    with pytest.warns(DeprecationWarning, match="MemorySessionBackend"):
        assert fleetkit.sessions.memory.MemoryBackend is MemorySessionBackend


async def test_session_store_list_is_list_sessions() -> None:
    store = SessionStore(redis=None)
    s = await store.create("u-dep")
    with pytest.warns(DeprecationWarning, match="list_sessions"):
        listed = await store.list("u-dep")
    assert [i.id for i in listed] == [i.id for i in await store.list_sessions("u-dep")] == [s.id]


async def test_monitor_stop_is_aclose() -> None:
    monitor = SessionMonitor(redis_url=None)
    with pytest.warns(DeprecationWarning, match="aclose"):
        await monitor.stop()
    assert monitor.worker_pid is None
