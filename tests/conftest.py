"""Shared fixtures: real Redis (standalone, Cluster), real PostgreSQL, private killable Redis."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from fleetkit.redis import create_client
from tests.support import REDIS_CLUSTER_URL, REDIS_URL, RedisServer


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Collect garbage after each test, so an unclosed client fails the test that leaked it
    (warnings are errors) instead of whichever test the collector happens to run in."""
    yield
    gc.collect()


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    """The standalone test Redis, flushed before each test."""
    client = create_client(REDIS_URL)
    assert isinstance(client, Redis)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
async def cluster() -> AsyncIterator[RedisCluster]:
    """The 3-master test Redis Cluster, flushed before each test."""
    client = create_client(REDIS_CLUSTER_URL)
    assert isinstance(client, RedisCluster)
    await client.flushall(target_nodes=RedisCluster.PRIMARIES)
    yield client
    await client.aclose()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server this test may kill -9 and restart."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()
