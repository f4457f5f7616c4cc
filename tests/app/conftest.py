"""Drive the real reference app in-process (httpx ASGITransport) against real Redis/PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from fleetkit.app import create_app
from fleetkit.config import load_settings
from tests.support import PG_PRIMARY_URL, PG_REPLICA_URL, REDIS_SERVER

APP_REDIS_URL = f"{REDIS_SERVER}/5"

AppFactory = Callable[..., Awaitable[tuple[FastAPI, httpx.AsyncClient]]]


def distributed_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "REDIS_URL": APP_REDIS_URL, "DATABASE_URL": PG_PRIMARY_URL,
        "DATABASE_READ_URLS": PG_REPLICA_URL, "DATABASE_HEALTH_INTERVAL": "1",
        "DATABASE_WRITE_POOL_SIZE": "5", "DATABASE_READ_POOL_SIZE": "5",
        "AUDIT_SPOOL_DIR": str(tmp_path / "spool"), "SESSION_COOKIE_SECURE": "true",
        "INSTANCE_ID": f"test-{uuid.uuid4().hex[:6]}", "HEALTH_INTERVAL": "0.5",
        "SESSION_MONITOR_INTERVAL": "5",
        # Shared by the instances of one test (as in a fleet): tokens route to the same keys.
        "SECRET_KEY": "tests-only-secret-key-of-32-characters", **extra,
    }


def embedded_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/app.db",
            "AUDIT_SPOOL_DIR": str(tmp_path / "spool"), "HEALTH_INTERVAL": "0.5", **extra}


@pytest.fixture(scope="session")
def migrated() -> None:
    """``fleetkit migrate`` on the test primary, once (it is idempotent and advisory-locked)."""
    import asyncio

    from fleetkit.app.migrations import migrate

    asyncio.run(migrate(PG_PRIMARY_URL))


@pytest.fixture
async def app_factory(migrated: None) -> AsyncIterator[AppFactory]:
    stack: list[tuple[Any, httpx.AsyncClient]] = []

    async def make(env: dict[str, str]) -> tuple[FastAPI, httpx.AsyncClient]:
        if "REDIS_URL" in env:  # rate-limit counters of earlier tests share the client address
            from redis.asyncio import Redis

            async with Redis.from_url(env["REDIS_URL"]) as r:
                await r.flushdb()
        app = create_app(load_settings(env), install_signal_handlers=False)
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        transport = httpx.ASGITransport(app=app, client=("198.51.100.7", 5000))
        client = httpx.AsyncClient(transport=transport, base_url="https://testserver")
        stack.append((lifespan, client))
        return app, client

    yield make
    for lifespan, client in reversed(stack):
        await client.aclose()
        await lifespan.__aexit__(None, None, None)


def new_email() -> str:
    return f"user-{uuid.uuid4().hex[:12]}@example.com"


async def register_and_login(client: httpx.AsyncClient, email: str | None = None,
                             password: str = "correct horse battery",
                             ) -> tuple[str, dict[str, Any]]:
    email = email or new_email()
    r = await client.post("/v1/auth/register", json={"email": email, "password": password})
    assert r.status_code == 202, r.text
    # An API client: no cookie from an earlier login (which this login would revoke: rotation).
    client.cookies.clear()
    r = await client.post("/v1/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    client.cookies.clear()
    body = r.json()
    return body["token"], body
