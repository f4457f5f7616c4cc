"""Application factory of the reference service: the seed's request flow, end to end.

Middleware, outermost first (each a pure ASGI class)::

    close-while-draining (Connection: close on every answer after SIGTERM)
      → overload (admission control; probes and /metrics pass uncounted) → RequestId
      → HTTP metrics → protocol guard (header limits, security headers, the 500)
      → health (/health*, answered here) → body limit → sessions
      → rate limit (per IP, per user, login; one Redis round trip for all policies) → routes

Admission control is outermost so that a refusal costs nothing else (docs/overload.md).

A route then calls the database through the ``database`` circuit breaker (reads on a replica
with read-your-writes) and records security-relevant actions in the audit log.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

from fleetkit.app.admin import router as admin_router
from fleetkit.app.auth import router as auth_router
from fleetkit.app.guard import ProtocolGuardMiddleware
from fleetkit.app.problems import install_problem_handlers
from fleetkit.app.routes import router
from fleetkit.app.services import Services
from fleetkit.config import Settings, load_settings
from fleetkit.fastapi import install
from fleetkit.observability import (
    configure_logging,
)

__all__ = ["app_from_env", "create_app"]

log = logging.getLogger("fleetkit.app")


def create_app(settings: Settings, *, install_signal_handlers: bool = True,
               freeze_gc: bool = False) -> FastAPI:
    """Build the ASGI app for ``settings`` (reads no environment).

    ``install_signal_handlers`` wraps the server's SIGTERM handler so /health/ready answers 503
    for ``SHUTDOWN_DELAY`` seconds before the listener closes; tests that drive the app
    in-process turn it off. ``freeze_gc`` (the server's workers) moves every object alive after
    start-up out of the garbage collector's reach (``gc.freeze``): the imported libraries and
    the app are hundreds of thousands of objects that the oldest generation's collections would
    otherwise traverse again and again, 25-30% of a request's CPU (bench/http_load.py). Not for
    processes that build many apps (tests): frozen objects are never freed.
    """
    services = Services.build(settings)
    assert services.fleet is not None
    fleet = services.fleet

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Runs inside the fleet's lifespan (install): every component has started.
        if freeze_gc:
            gc.collect()
            gc.freeze()
        yield

    app = FastAPI(
        title="fleetkit reference service",
        version="0.1.0",
        description="Accounts, sessions, items and audit trail on a fleet sharing Redis and "
                    "PostgreSQL.",
        lifespan=lifespan,
        # Off by default in production (docs/security.md): the Swagger page loads its scripts
        # from a public CDN, and the schema maps the attack surface.
        docs_url="/docs" if settings.docs_enabled else None,
        redoc_url="/redoc" if settings.docs_enabled else None,
        openapi_url="/openapi.json" if settings.docs_enabled else None,
        # FastAPI's built-in OpenTelemetry layer is off: the service exports Prometheus metrics
        # and JSON logs, and the layer's per-request provider checks cost ~3% of a request.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.services = services
    app.state.settings = settings
    app.include_router(router)
    app.include_router(auth_router)
    app.include_router(admin_router)
    # The library's one integration call, as any user's app makes it: the middleware in order
    # (see the module docstring), start-up and shutdown in the lifespan, /metrics as a Route,
    # OpenAPI problem responses. Then the service's own problem handlers (they win).
    install(app, fleet=fleet, login_path="/v1/auth/login",
            exempt=("/metrics", "/docs", "/openapi.json"), version="0.1.0",
            drain_signals=install_signal_handlers,
            guards=[(ProtocolGuardMiddleware, {"max_header_bytes": settings.max_header_bytes,
                                               "max_header_count": settings.max_header_count})])
    install_problem_handlers(app)
    return app


def app_from_env() -> Any:
    """Uvicorn factory: settings from the environment (used by ``fleetkit serve`` workers)."""
    settings = load_settings()
    configure_logging(level=settings.log_level, json=settings.log_json,
                      static={"instance": settings.instance_id})
    return create_app(settings, freeze_gc=True)
