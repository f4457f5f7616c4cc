"""SessionMiddleware through a real Starlette app on the real Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from fleetkit.redis import Coalescer, Script, create_client
from fleetkit.sessions import SessionContext, SessionMiddleware, SessionStore
from tests.sessions.conftest import SESSIONS_REDIS_URL as REDIS_URL


async def me(request: Request) -> JSONResponse:
    s = request.state.session
    return JSONResponse({"user": None if s is None else s.user_id,
                         "data": None if s is None else s.data})


async def login(request: Request) -> JSONResponse:
    ctx: SessionContext = request.state.sessions
    s = await ctx.login(request.query_params["user"], data={"role": "user"})
    return JSONResponse({"token": s.token})


async def logout(request: Request) -> JSONResponse:
    await request.state.sessions.logout()
    return JSONResponse({})


async def touch(request: Request) -> JSONResponse:
    s = request.state.session
    if s is not None and "theme" in request.query_params:
        s.data["theme"] = request.query_params["theme"]
    return JSONResponse({})


async def promote(request: Request) -> JSONResponse:
    s = await request.state.sessions.rotate(data={"role": "admin"})
    return JSONResponse({"token": None if s is None else s.token})


ROUTES = [Route("/me", me), Route("/login", login, methods=["POST"]),
          Route("/logout", logout, methods=["POST"]), Route("/touch", touch, methods=["POST"]),
          Route("/promote", promote, methods=["POST"])]


class Env:
    def __init__(self, client: Redis, secure: bool = True) -> None:
        self.coalescer = Coalescer(client)
        self.store = SessionStore(redis=client, coalescer=self.coalescer,
                                  prefix=f"asgi{uuid.uuid4().hex[:8]}:")
        app = Starlette(routes=ROUTES)
        self.app = SessionMiddleware(app, store=self.store, cookie_secure=secure)
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app),
                                      base_url="https://testserver")

    @property
    def commands(self) -> int:
        return self.coalescer.commands


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    client = create_client(REDIS_URL, role="sessions")
    assert isinstance(client, Redis)
    # Scripts loaded as the service does at start-up: a NOSCRIPT retry on a fresh Redis would
    # count as a second command in the tests that count them.
    for script in Script.registered():
        await script.load(client)
    e = Env(client)
    yield e
    await e.http.aclose()
    await e.coalescer.aclose()
    await client.aclose()


async def test_login_cookie_attributes_and_roundtrip(env: Env) -> None:
    r = await env.http.post("/login", params={"user": "u1"})
    cookie = r.headers["set-cookie"]
    token = r.json()["token"]
    assert cookie.startswith(f"__Host-session={token};")
    for attr in ("Path=/", "HttpOnly", "SameSite=Lax", "Secure", "Max-Age=86400"):
        assert attr in cookie
    assert "Domain" not in cookie
    r = await env.http.get("/me", headers={"cookie": f"__Host-session={token}"})
    assert r.json() == {"user": "u1", "data": {"role": "user"}}
    r = await env.http.get("/me", headers={"authorization": f"Bearer {token}"})
    assert r.json()["user"] == "u1"


async def test_no_token_no_redis_call(env: Env) -> None:
    before = env.commands
    for _ in range(5):
        r = await env.http.get("/me", headers={"cookie": "other=1"})
        assert r.json() == {"user": None, "data": None}
        assert "set-cookie" not in r.headers
    assert env.commands == before


@pytest.mark.parametrize("headers", [
    {"cookie": "__Host-session=garbage"},
    {"cookie": "__Host-session="},
    {"cookie": "__Host-session=" + "A" * 5000},
    {"cookie": '__Host-session="local.AAAAAA.\\x00"'},
    {"authorization": "Bearer ../../etc/passwd"},
    {"authorization": "Bearer local.AAAAAA." + "A" * 43},  # well-formed, unknown
    {"authorization": "Bearer"},
    {"authorization": "Basic dXNlcjpwYXNz"},
    {"cookie": "__Host-session=zz-zz.AAAAAA." + "A" * 43},  # unknown region
])
async def test_bad_tokens_are_anonymous(env: Env, headers: dict[str, str]) -> None:
    r = await env.http.get("/me", headers=headers)
    assert r.status_code == 200
    assert r.json() == {"user": None, "data": None}
    if "cookie" in headers:
        assert r.headers["set-cookie"].startswith("__Host-session=; ")  # cleared
        assert "Max-Age=0" in r.headers["set-cookie"]


async def test_writes_only_when_changed(env: Env) -> None:
    token = (await env.http.post("/login", params={"user": "u2"})).json()["token"]
    auth = {"authorization": f"Bearer {token}"}
    before = env.commands
    await env.http.post("/touch", headers=auth)  # no change: one get, no update
    assert env.commands - before == 1
    before = env.commands
    await env.http.post("/touch", params={"theme": "dark"}, headers=auth)
    assert env.commands - before == 2  # get + one per-field update
    r = await env.http.get("/me", headers=auth)
    assert r.json()["data"] == {"role": "user", "theme": "dark"}


async def test_logout_and_rotate(env: Env) -> None:
    token = (await env.http.post("/login", params={"user": "u3"})).json()["token"]
    cookie = {"cookie": f"__Host-session={token}"}
    r = await env.http.post("/promote", headers=cookie)
    new = r.json()["token"]
    assert new != token and r.headers["set-cookie"].startswith(f"__Host-session={new};")
    r = await env.http.get("/me", headers={"cookie": f"__Host-session={new}"})
    assert r.json()["data"] == {"role": "admin"}
    r = await env.http.post("/logout", headers={"cookie": f"__Host-session={new}"})
    assert "Max-Age=0" in r.headers["set-cookie"]
    r = await env.http.get("/me", headers={"cookie": f"__Host-session={new}"})
    assert r.json()["user"] is None


async def test_insecure_dev_cookie_drops_host_prefix() -> None:
    client = create_client(REDIS_URL, role="sessions")
    assert isinstance(client, Redis)
    e = Env(client, secure=False)
    try:
        r = await e.http.post("/login", params={"user": "dev"})
        cookie = r.headers["set-cookie"]
        assert cookie.startswith("session=") and "Secure" not in cookie
        r = await e.http.get("/me", headers={"cookie": f"session={r.json()['token']}"})
        assert r.json()["user"] == "dev"
    finally:
        await e.http.aclose()
        await e.coalescer.aclose()
        await client.aclose()


async def test_non_http_scope_passes_through() -> None:
    seen = []

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        seen.append(scope["type"])

    mw = SessionMiddleware(app, store=SessionStore(redis=None))

    async def nothing():  # type: ignore[no-untyped-def]
        return {}

    await mw({"type": "lifespan"}, nothing, nothing)
    assert seen == ["lifespan"]
