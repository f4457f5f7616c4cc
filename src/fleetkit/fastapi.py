"""FastAPI (and Starlette) integration in one call, typed dependencies, OpenAPI.

.. code-block:: python

    from fastapi import FastAPI
    from fleetkit.config import load_settings
    from fleetkit.fastapi import CurrentSession, install

    app = FastAPI()
    fleet = install(app, load_settings())       # every component, middleware, lifespan, /metrics

    @app.get("/me")
    async def me(session: CurrentSession) -> dict[str, str]:
        return {"user": session.user_id}

``install`` builds a :class:`~fleetkit.integration.Fleet` from settings, adds its middleware in
the one correct order, starts and stops it in the app's lifespan, adds ``/metrics`` (a Route: a
Mount would redirect it) and the problem+json handlers (429 rate limited, 503 circuit open), and
documents the 401/403/429/503 responses and the security schemes in OpenAPI.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.security import APIKeyCookie, HTTPBearer
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Route

from fleetkit.config import Settings, load_settings
from fleetkit.errors import CircuitOpenError, MiddlewareOrderError
from fleetkit.integration import DEFAULT_EXEMPT, Fleet, Layer
from fleetkit.observability import MetricsApp
from fleetkit.ratelimit import Policy
from fleetkit.ratelimit.fastapi import RateLimit, RateLimited, rate_limited
from fleetkit.ratelimit.fastapi import install as install_ratelimit
from fleetkit.sessions import Session, SessionContext

__all__ = [
    "PROBLEM_SCHEMA",
    "CurrentSession",
    "CurrentUserId",
    "Fleet",
    "FleetDep",
    "OptionalSession",
    "RateLimit",
    "RateLimited",
    "SessionHandle",
    "Unauthenticated",
    "bearer_scheme",
    "cookie_scheme",
    "document_problems",
    "install",
    "problem_responses",
    "rate_limited",
]


def install(app: Starlette, settings: Settings | None = None, *, fleet: Fleet | None = None,
            policies: Sequence[Policy] | None = None, login_path: str | None = None,
            exempt: Sequence[str] = DEFAULT_EXEMPT, metrics_path: str | None = "/metrics",
            drain_signals: bool = False, database: bool | None = None,
            monitor: bool = True, version: str | None = None,
            guards: Sequence[Layer] = ()) -> Fleet:
    """Wire every fleetkit component into ``app`` (FastAPI or Starlette); returns the Fleet.

    ``settings`` defaults to :func:`~fleetkit.config.load_settings` (the environment).
    ``policies`` replaces the default ip/user(/login) rate-limit policies; ``login_path`` adds a
    stricter per-IP ``RATE_LIMIT_LOGIN`` policy on ``POST login_path``. ``drain_signals`` is for
    servers (readiness 503 on SIGTERM for ``SHUTDOWN_DELAY``); leave it off in tests.
    """
    if fleet is None:
        fleet = Fleet.from_settings(settings or load_settings(), database=database,
                                    monitor=monitor)
    app.state.fleet = fleet
    for cls, kwargs in fleet.layers(policies=policies, exempt=exempt, login_path=login_path,
                                    version=version, guards=guards):
        app.add_middleware(cls, **kwargs)  # each added outside the previous one
    if metrics_path is not None:
        multiproc = fleet.settings.prometheus_multiproc_dir
        app.router.routes.append(Route(metrics_path, MetricsApp(multiproc_dir=multiproc),
                                       methods=["GET", "HEAD"], include_in_schema=False))
    install_ratelimit(app)  # type: ignore[arg-type]  # Starlette has add_exception_handler too
    app.add_exception_handler(CircuitOpenError, _circuit_open)
    app.add_exception_handler(Unauthenticated, _unauthenticated)
    if isinstance(app, FastAPI):
        document_problems(app)
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(asgi_app: Any) -> AsyncIterator[Any]:
        async with fleet.running(drain_signals=drain_signals), inner(asgi_app) as state:
            yield state

    app.router.lifespan_context = lifespan
    return fleet


async def _circuit_open(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CircuitOpenError)
    retry = max(1, round(exc.retry_after or 1))
    return _problem(503, f"dependency {exc.name!r} is unavailable ({exc.state})",
                    "circuit-open", request.url.path, {"Retry-After": str(retry)})


def _problem(status: int, detail: str, type_: str, instance: str,
             headers: dict[str, str] | None = None) -> Response:
    import orjson

    body = {"type": type_, "title": _TITLES.get(status, "Error"), "status": status,
            "detail": detail, "instance": instance}
    return Response(orjson.dumps(body), status_code=status, headers=headers,
                    media_type="application/problem+json")


_TITLES = {401: "Unauthorized", 403: "Forbidden", 429: "Too Many Requests",
           503: "Service Unavailable"}


# --------------------------------------------------------------------------- dependencies

class _BearerScheme(HTTPBearer):
    """Declares the bearer scheme in OpenAPI; SessionMiddleware already read the token."""

    async def __call__(self, request: Request) -> None:  # type: ignore[override]
        return None


class _CookieScheme(APIKeyCookie):
    """Declares the session cookie scheme in OpenAPI (the name is the default cookie)."""

    async def __call__(self, request: Request) -> None:  # type: ignore[override]
        return None


#: Declare the schemes on a dependency of your own: ``_: Annotated[None, Depends(bearer_scheme)]``.
bearer_scheme = _bearer = _BearerScheme(
    scheme_name="bearer", auto_error=False, description="Authorization: Bearer <session token>")
cookie_scheme = _cookie = _CookieScheme(
    name="__Host-session", scheme_name="session-cookie", auto_error=False,
    description="The session cookie set at login (SESSION_COOKIE_NAME)")


def _context(request: Request) -> SessionContext:
    state = request.scope.get("state") or {}
    ctx = state.get("sessions")
    if ctx is None:
        raise MiddlewareOrderError(
            f"{request.url.path} uses a fleetkit session dependency but no SessionMiddleware "
            "ran for this request: call fleetkit.fastapi.install(app, settings), or "
            "app.add_middleware(SessionMiddleware, store=...) (after any RateLimitMiddleware).")
    assert isinstance(ctx, SessionContext)
    return ctx


async def session_handle(request: Request) -> SessionContext:
    """The request's :class:`SessionContext` (``login``/``logout``/``rotate``)."""
    return _context(request)


async def optional_session(request: Request) -> Session | None:
    return _context(request).session


async def current_session(request: Request, _b: Annotated[None, Depends(_bearer)],
                          _c: Annotated[None, Depends(_cookie)]) -> Session:
    session = _context(request).session
    if session is None:
        raise Unauthenticated
    return session


class Unauthenticated(HTTPException):
    """401 from :data:`CurrentSession` (problem+json once :func:`install` ran)."""

    def __init__(self) -> None:
        super().__init__(401, "authentication required", headers={"WWW-Authenticate": "Bearer"})


async def _unauthenticated(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Unauthenticated)
    return _problem(401, str(exc.detail), "unauthenticated", request.url.path,
                    dict(exc.headers or {}))


async def current_user_id(session: Annotated[Session, Depends(current_session)]) -> str:
    return session.user_id


async def get_fleet(request: Request) -> Fleet:
    fleet = getattr(request.app.state, "fleet", None)
    if not isinstance(fleet, Fleet):
        raise MiddlewareOrderError("FleetDep needs fleetkit.fastapi.install(app, settings)")
    return fleet


#: The logged-in session; anonymous requests get 401 problem+json.
CurrentSession = Annotated[Session, Depends(current_session)]
#: The session, or ``None`` when anonymous.
OptionalSession = Annotated[Session | None, Depends(optional_session)]
#: The logged-in user's id (401 when anonymous).
CurrentUserId = Annotated[str, Depends(current_user_id)]
#: Log in / out / rotate: ``await handle.login(user_id, data={...})``.
SessionHandle = Annotated[SessionContext, Depends(session_handle)]
#: The :class:`Fleet` installed on the app (its limiter, breakers, audit log...).
FleetDep = Annotated[Fleet, Depends(get_fleet)]


# --------------------------------------------------------------------------- OpenAPI

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details",
    "type": "object",
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"},
        "status": {"type": "integer"}, "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
    "required": ["type", "title", "status"],
}
_DESCRIPTIONS = {
    401: "Not authenticated (no valid session)",
    403: "Authenticated but not allowed",
    429: "Rate limit exceeded; see Retry-After and the RateLimit fields",
    503: "A dependency is unavailable (circuit open) or the instance is overloaded",
}
_REF = {"$ref": "#/components/schemas/Problem"}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status as ``application/problem+json``."""
    return {status: {"description": _DESCRIPTIONS.get(status, "Error"),
                     "content": {"application/problem+json": {"schema": _REF}}}
            for status in statuses}


def document_problems(app: FastAPI, *, everywhere: Sequence[int] = (429, 503),
                      protected: Sequence[int] = (401, 403)) -> None:
    """Add problem+json responses to the app's OpenAPI: ``everywhere`` on every operation
    (the rate limiter and admission control can refuse any request), ``protected`` on the
    operations that declare a security scheme (those using :data:`CurrentSession`)."""
    original: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = original()
        schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                if not isinstance(operation, dict) or "responses" not in operation:
                    continue
                statuses = [*everywhere, *(protected if operation.get("security") else ())]
                for status, response in problem_responses(*statuses).items():
                    existing = operation["responses"].setdefault(str(status), response)
                    existing.setdefault("content", response["content"])
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
