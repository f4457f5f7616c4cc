"""Audit fixtures: a private PostgreSQL schema per test and a unique stream prefix."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from fleetkit.audit.schema import install
from fleetkit.redis import ClientOptions, create_client
from tests.support import PG_PRIMARY_URL, RedisServer


@pytest.fixture
def prefix() -> str:
    """Stream keys no other test (or engineer) uses."""
    return f"t:audit:{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def pg() -> AsyncIterator[tuple[Any, str]]:
    """(asyncpg connection, schema) with the audit schema installed; dropped afterwards."""
    schema = f"audit_t_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(PG_PRIMARY_URL)
    await install(conn, schema)
    try:
        yield conn, schema
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


@pytest.fixture
async def private_redis(redis_server: RedisServer) -> AsyncIterator[Any]:
    """A client of a private Redis: streams that no other test's FLUSHDB can delete mid-test."""
    client = create_client(redis_server.url, options=ClientOptions(socket_timeout=5.0))
    yield client
    await client.aclose()
