"""Session store fixtures: the same tests run on standalone Redis, Redis Cluster and memory."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from fleetkit.redis import create_client
from fleetkit.sessions import SessionStore
from tests.support import REDIS_CLUSTER_URL, REDIS_URL

StoreFactory = Callable[..., SessionStore]

# A DB number of our own: other suites FLUSHDB db 0 of the shared server while we run.
SESSIONS_REDIS_URL = REDIS_URL.rsplit("/", 1)[0] + "/13"


@pytest.fixture(params=["redis", "cluster", "memory"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, Any]]:
    """(name, client) — client is None for the in-memory twin. Not flushed: keys are unique."""
    name = request.param
    if name == "memory":
        yield name, None
        return
    url = SESSIONS_REDIS_URL if name == "redis" else REDIS_CLUSTER_URL
    client = create_client(url, role="sessions")
    yield name, client
    await client.aclose()


@pytest.fixture
def make_store(backend: tuple[str, Any]) -> StoreFactory:
    """Build stores on the parametrized backend under a prefix unique to this test."""
    _, client = backend
    prefix = f"t{uuid.uuid4().hex[:8]}:"

    def factory(**kwargs: Any) -> SessionStore:
        kwargs.setdefault("prefix", prefix)
        return SessionStore(redis=client, **kwargs)

    return factory
