"""The middleware's ``on_deny`` hook and :class:`DenialAudit`: the interval's timer records the
counts by itself, and a failing hook never fails a 429 (the HTTP path and the bounds are
tested through the reference service in tests/app/test_security_ratelimit.py)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from fleetkit.audit import AuditLog
from fleetkit.ratelimit import Policy, RateLimiter, RateLimitMiddleware, ip_key
from fleetkit.ratelimit.audit import DenialAudit
from fleetkit.types import Scope


def _rows(db: Path) -> list[tuple[str, str, dict[str, Any]]]:
    try:
        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT resource, reason, metadata FROM audit_events "
                                "WHERE action = 'ratelimit.deny' ORDER BY event_id").fetchall()
    except sqlite3.OperationalError:  # the sink has not created its table yet
        return []
    return [(r[0], r[1], orjson.loads(r[2])) for r in rows]


async def _ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def _app(limiter: RateLimiter, on_deny: Any) -> Starlette:
    app = Starlette(routes=[Route("/", _ok)])
    app.add_middleware(RateLimitMiddleware, limiter=limiter, on_deny=on_deny,
                       policies=[Policy("ip", "1/minute", key=ip_key())])
    return app


async def test_the_interval_ends_on_its_own_timer(tmp_path: Path) -> None:
    log = AuditLog(redis=None, sqlite_path=tmp_path / "audit.db", spool_dir=tmp_path / "spool")
    audit = DenialAudit(log, interval=0.05)
    async with RateLimiter(redis=None) as limiter:
        transport = httpx.ASGITransport(app=_app(limiter, audit), client=("192.0.2.1", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            codes = [(await client.get("/")).status_code for _ in range(6)]
    assert codes == [200] + [429] * 5
    rows: list[tuple[str, str, dict[str, Any]]] = []
    for _ in range(200):  # the timer (50 ms) then the sink write: wait for the state
        rows = _rows(tmp_path / "audit.db")
        if len(rows) == 2:
            break
        await asyncio.sleep(0.02)
    assert [(r[0], r[1]) for r in rows] == [("ratelimit/ip/ip:192.0.2.1", "rate limit exceeded"),
                                            ("ratelimit/ip/ip:192.0.2.1", "repeated denials")]
    assert rows[1][2]["count"] == 4
    await audit.aclose()
    await log.aclose()
    assert len(_rows(tmp_path / "audit.db")) == 2  # nothing left to record at close


async def test_a_failing_hook_never_fails_the_429(caplog: pytest.LogCaptureFixture) -> None:
    def broken(scope: Scope, denied: object) -> None:
        raise RuntimeError("hook bug")

    async with RateLimiter(redis=None) as limiter:
        transport = httpx.ASGITransport(app=_app(limiter, broken), client=("192.0.2.2", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            with caplog.at_level(logging.ERROR, "fleetkit.ratelimit"):
                codes = [(await client.get("/")).status_code for _ in range(3)]
    assert codes == [200, 429, 429]
    assert [r.getMessage() for r in caplog.records] == ["rate limit on_deny hook failed"] * 2
