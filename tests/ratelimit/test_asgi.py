"""Middleware and FastAPI dependency driving real apps (httpx ASGITransport) and real Redis."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from fleetkit.ratelimit import (
    PROBLEM_TYPE,
    Policy,
    RateLimiter,
    RateLimitMiddleware,
    ip_key,
)
from fleetkit.ratelimit.fastapi import RateLimit, install, rate_limited
from fleetkit.ratelimit.limiter import FailureMode
from fleetkit.redis import ClientOptions, create_client
from tests.support import free_port


async def _ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def _app(limiter: RateLimiter, *, shadow: bool = False) -> Starlette:
    tag = uuid.uuid4().hex[:8]
    policies = [
        Policy(f"ip{tag}", "3/minute", key=ip_key(["127.0.0.0/8"])),
        Policy(f"login{tag}", "1/minute", path="/login", methods=frozenset({"POST"}),
               key=ip_key(["127.0.0.0/8"])),
    ]
    app = Starlette(routes=[Route("/", _ok), Route("/login", _ok, methods=["POST"])])
    app.add_middleware(RateLimitMiddleware, limiter=limiter, policies=policies, shadow=shadow)
    return app


@pytest.fixture
async def limiter(redis: Redis) -> AsyncIterator[RateLimiter]:
    async with RateLimiter(redis=redis, prefix="t:asgi:") as lim:
        yield lim


def _client(app: object, peer: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(peer, 5000))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_headers_and_429_problem_json(limiter: RateLimiter) -> None:
    async with _client(_app(limiter)) as http:
        h = {"x-forwarded-for": "198.51.100.1"}
        first = await http.get("/", headers=h)
        assert first.status_code == 200
        assert first.headers["ratelimit-policy"].endswith(";q=3;w=60")
        assert ";r=2;t=" in first.headers["ratelimit"]
        assert "retry-after" not in first.headers
        await http.get("/", headers=h)
        await http.get("/", headers=h)
        denied = await http.get("/", headers=h)
        assert denied.status_code == 429
        assert denied.headers["content-type"] == "application/problem+json"
        assert int(denied.headers["retry-after"]) >= 1
        assert ";r=0;t=" in denied.headers["ratelimit"]
        body = denied.json()
        assert body["type"] == PROBLEM_TYPE and body["status"] == 429
        assert len(body["violated-policies"]) == 1
        # Another client behind the same proxy has its own quota.
        other = await http.get("/", headers={"x-forwarded-for": "198.51.100.2"})
        assert other.status_code == 200


async def test_route_policy_adds_to_the_global_one(limiter: RateLimiter) -> None:
    async with _client(_app(limiter)) as http:
        h = {"x-forwarded-for": "198.51.100.3"}
        ok = await http.post("/login", headers=h)
        assert ok.status_code == 200
        assert ok.headers["ratelimit-policy"].count(";q=") == 2
        denied = await http.post("/login", headers=h)
        assert denied.status_code == 429
        assert denied.json()["violated-policies"][0].startswith("login")


async def test_spoofed_xff_cannot_escape_the_limit(limiter: RateLimiter) -> None:
    # The client talks to the app directly (untrusted peer): whatever XFF it sends is ignored.
    async with _client(_app(limiter), peer="203.0.113.50") as http:
        codes = [(await http.get("/", headers={"x-forwarded-for": f"1.2.3.{i}"})).status_code
                 for i in range(5)]
        assert codes == [200, 200, 200, 429, 429]
    # Behind the trusted proxy, a forged left-hand part and garbage do not change the key.
    async with _client(_app(limiter)) as http:
        forged = [b"9.9.9.9, 198.51.100.9", b"8.8.8.8,198.51.100.9", b"junk, 198.51.100.9",
                  b"198.51.100.9", b"\xff\xfe, 198.51.100.9"]
        codes = [(await http.get("/", headers={b"x-forwarded-for": v})).status_code
                 for v in forged]
        assert codes == [200, 200, 200, 429, 429]
        malformed = await http.get("/", headers={"x-forwarded-for": "::::, ,,"})
        assert malformed.status_code == 200  # keyed on the proxy itself, not an error


async def test_shadow_mode_counts_and_never_blocks(limiter: RateLimiter,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    app = _app(limiter, shadow=True)
    policies: list[Policy] = app.user_middleware[0].kwargs["policies"]  # type: ignore[assignment]
    name = policies[0].name
    before = REGISTRY.get_sample_value("fleetkit_ratelimit_shadow_denials_total",
                                       {"policy": name}) or 0.0
    with caplog.at_level(logging.INFO, logger="fleetkit.ratelimit"):
        async with _client(app) as http:
            codes = [(await http.get("/", headers={"x-forwarded-for": "198.51.100.4"}))
                     .status_code for _ in range(5)]
    assert codes == [200] * 5
    after = REGISTRY.get_sample_value("fleetkit_ratelimit_shadow_denials_total",
                                      {"policy": name})
    assert after == before + 2
    assert "shadow" in caplog.text


async def test_redis_outage_is_never_a_5xx() -> None:
    dead = create_client(f"redis://127.0.0.1:{free_port()}/0",
                         options=ClientOptions(retries=0, connect_timeout=0.2))
    try:
        modes: tuple[FailureMode, ...] = ("local", "open", "closed")
        for mode in modes:
            async with RateLimiter(redis=dead, failure_mode=mode) as lim:
                async with _client(_app(lim)) as http:
                    codes = {(await http.get("/")).status_code for _ in range(5)}
                assert codes <= {200, 429}, mode
                assert codes == ({429} if mode == "closed" else {200, 429} if mode == "local"
                                 else {200}), mode
    finally:
        await dead.aclose()


async def test_websocket_and_lifespan_pass_through(limiter: RateLimiter) -> None:
    seen: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(str(scope["type"]))

    mw = RateLimitMiddleware(inner, limiter=limiter, policies=[Policy("x", "1/minute")])
    await mw({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    await mw({"type": "websocket", "client": ("1.1.1.1", 1)}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan", "websocket"]


async def test_fastapi_dependency_and_decorator(limiter: RateLimiter) -> None:
    app = FastAPI()
    install(app)
    tag = uuid.uuid4().hex[:8]
    dep = RateLimit(limiter, "2/minute", name=f"dep{tag}")

    @app.get("/dep", dependencies=[Depends(dep)])
    async def with_dependency() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/deco")
    @rate_limited(limiter, "1/minute", name=f"deco{tag}")
    async def decorated(q: str = "x") -> dict[str, str]:
        return {"q": q}

    async with _client(app) as http:
        first = await http.get("/dep")
        assert first.status_code == 200 and ";r=1;" in first.headers["ratelimit"]
        await http.get("/dep")
        denied = await http.get("/dep")
        assert denied.status_code == 429
        assert denied.headers["content-type"] == "application/problem+json"
        assert json.loads(denied.content)["type"] == PROBLEM_TYPE
        assert "retry-after" in denied.headers
        ok = await http.get("/deco", params={"q": "hello"})
        assert ok.status_code == 200 and ok.json() == {"q": "hello"}
        assert (await http.get("/deco")).status_code == 429
        # The OpenAPI schema does not leak the injected parameter.
        schema = (await http.get("/openapi.json")).json()
        params = schema["paths"]["/deco"]["get"]["parameters"]
        assert [p["name"] for p in params] == ["q"]
