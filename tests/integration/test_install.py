"""fleetkit.fastapi.install: one call wires every component in the right order, against the
real Redis; each misuse fails at start-up (or import) with a message that says what to do."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from fleetkit.errors import MiddlewareOrderError
from fleetkit.fastapi import CurrentSession, CurrentUserId, OptionalSession, SessionHandle, install
from fleetkit.integration import Fleet
from fleetkit.ratelimit import Policy, RateLimiter, RateLimitMiddleware, user_key
from fleetkit.ratelimit.fastapi import RateLimit, rate_limited
from fleetkit.sessions import SessionMiddleware, SessionStore
from fleetkit.testing import client, embedded_settings, lifespan
from tests.support import REDIS_URL


def _settings(**env: str) -> Any:
    return embedded_settings({"REDIS_URL": REDIS_URL, "RATE_LIMIT_USER": "2/minute",
                              "RATE_LIMIT_IP": "1000/minute", **env})


def _app() -> tuple[FastAPI, Fleet]:
    app = FastAPI()
    fleet = install(app, _settings(), monitor=False)

    @app.post("/login")
    async def login(handle: SessionHandle) -> dict[str, str]:
        return {"token": (await handle.login("u42", data={"role": "user"})).token}

    @app.get("/me")
    def me(session: CurrentSession, user: CurrentUserId) -> dict[str, str]:  # a plain def
        return {"user": user, "role": session.data["role"]}

    @app.get("/maybe")
    async def maybe(session: OptionalSession) -> dict[str, bool]:
        return {"anonymous": session is None}

    return app, fleet


@pytest.mark.usefixtures("redis")  # flushed first
async def test_install_wires_sessions_user_limits_health_and_metrics() -> None:
    app, fleet = _app()
    async with client(app) as http:
        assert fleet.redis.embedded is False
        anonymous = await http.get("/me")
        assert anonymous.status_code == 401
        assert anonymous.headers["content-type"] == "application/problem+json"
        assert (await http.get("/maybe")).json() == {"anonymous": True}
        login = await http.post("/login")
        assert "session=" in login.headers["set-cookie"]  # plain-HTTP test settings
        assert login.headers["x-request-id"]
        http.cookies.clear()
        auth = {"Authorization": f"Bearer {login.json()['token']}"}
        codes = [(await http.get("/me", headers=auth)).status_code for _ in range(4)]
        assert codes == [200, 200, 429, 429]  # the per-user policy applies
        denied = await http.get("/me", headers=auth)
        assert denied.headers["content-type"] == "application/problem+json"
        assert int(denied.headers["retry-after"]) > 0
        health = await http.get("/health/ready")
        assert health.status_code == 200
        metrics = await http.get("/metrics")  # a Route: a Mount would redirect to /metrics/
        assert metrics.status_code == 200 and 'route="/me",status="200"' in metrics.text


async def test_a_user_policy_inside_the_session_middleware_fails_at_startup() -> None:
    """The issue's trap: SessionMiddleware added first (so it is *inside*) disabled the user
    policy silently ([200, 200, 200, 200]); now start-up fails and says what to do."""
    limiter = RateLimiter(redis=None)
    app = FastAPI()
    app.add_middleware(SessionMiddleware, store=SessionStore(redis=None))
    app.add_middleware(RateLimitMiddleware, limiter=limiter,
                       policies=[Policy("user", "2/minute", key=user_key)])
    with pytest.raises(RuntimeError, match="no SessionMiddleware runs before it") as info:
        async with lifespan(app):
            pass
    assert isinstance(info.value.__cause__, MiddlewareOrderError)
    assert "add_middleware" in str(info.value)
    # An in-process client that runs no lifespan: the first request raises, nothing passes.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        with pytest.raises(MiddlewareOrderError, match="per-user policies"):
            await http.get("/")
    await limiter.aclose()


async def test_the_right_order_by_hand_limits_per_user() -> None:
    store = SessionStore(redis=None)
    limiter = RateLimiter(redis=None)
    session = await store.create("u1")

    async def hello(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/", hello)])
    app.add_middleware(RateLimitMiddleware, limiter=limiter,
                       policies=[Policy("user", "2/minute", key=user_key)])
    app.add_middleware(SessionMiddleware, store=store)
    async with client(app, headers={"Authorization": f"Bearer {session.token}"}) as http:
        codes = [(await http.get("/")).status_code for _ in range(4)]
    assert codes == [200, 200, 429, 429]
    await limiter.aclose()


async def test_a_session_dependency_without_session_middleware_names_the_fix() -> None:
    app = FastAPI()

    @app.get("/me")
    async def me(session: CurrentSession) -> dict[str, str]:
        return {"user": session.user_id}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        with pytest.raises(MiddlewareOrderError, match=r"install\(app, settings\)"):
            await http.get("/me")


async def test_rate_limited_works_on_def_and_async_def_routes() -> None:
    limiter = RateLimiter(redis=None)
    app = FastAPI()

    @app.get("/sync")
    @rate_limited(limiter, "2/minute", name="sync")
    def sync_route() -> dict[str, str]:
        return {"kind": "def"}

    @app.get("/async")
    @rate_limited(limiter, "2/minute", name="async")
    async def async_route() -> dict[str, str]:
        return {"kind": "async"}

    async with client(app) as http:
        for path in ("/sync", "/async"):
            codes = [(await http.get(path)).status_code for _ in range(3)]
            assert codes == [200, 200, 429]
        assert (await http.get("/sync?x=1")).status_code == 429
    await limiter.aclose()


def test_rate_limited_above_the_route_decorator_fails_at_import() -> None:
    limiter = RateLimiter(redis=None)
    app = FastAPI()
    with pytest.raises(TypeError, match=r"under @app.get"):
        @rate_limited(limiter, "2/minute")
        @app.get("/x")
        async def x() -> dict[str, str]:
            return {}


@pytest.mark.usefixtures("redis")  # flushed first
async def test_one_ratelimit_pair_per_response() -> None:
    """A route limit plus the global policies: one RateLimit and one RateLimit-Policy field
    holding every item (the login route used to get two pairs)."""
    app = FastAPI()
    fleet = install(app, _settings(), monitor=False)
    login_limit = RateLimit(fleet.limiter, "2/minute", name="login")

    @app.post("/login", dependencies=[Depends(login_limit)])
    async def login() -> dict[str, bool]:
        return {"ok": True}

    async with client(app) as http:
        responses = [await http.post("/login") for _ in range(3)]
    for r in responses:
        assert len(r.headers.get_list("ratelimit")) == 1
        assert len(r.headers.get_list("ratelimit-policy")) == 1
        assert '"login-' in r.headers["ratelimit"] and '"ip-' in r.headers["ratelimit"]
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert responses[2].headers["content-type"] == "application/problem+json"


def test_openapi_documents_problems_and_security_for_user_routes() -> None:
    app, _ = _app()
    schema = app.openapi()
    me = schema["paths"]["/me"]["get"]
    assert {"401", "429", "503"} <= set(me["responses"])
    problem = me["responses"]["401"]["content"]["application/problem+json"]
    assert problem["schema"] == {"$ref": "#/components/schemas/Problem"}
    assert me["security"] == [{"bearer": []}, {"session-cookie": []}]
    schemes = schema["components"]["securitySchemes"]
    assert schemes["bearer"]["scheme"] == "bearer" and schemes["session-cookie"]["in"] == "cookie"
    login = schema["paths"]["/login"]["post"]
    assert "401" not in login["responses"] and "429" in login["responses"]
