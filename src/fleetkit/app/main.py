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
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI
from starlette.routing import Route

from fleetkit.app.admin import router as admin_router
from fleetkit.app.auth import router as auth_router
from fleetkit.app.guard import ProtocolGuardMiddleware
from fleetkit.app.problems import BodyLimitMiddleware, install_problem_handlers
from fleetkit.app.routes import router
from fleetkit.app.services import Services
from fleetkit.config import Settings, load_settings
from fleetkit.fastapi import document_problems
from fleetkit.health.asgi import HealthMiddleware
from fleetkit.health.shutdown import CloseWhileDraining, drain_on_signal
from fleetkit.observability import (
    HTTPMetricsMiddleware,
    MetricsApp,
    RequestIdMiddleware,
    configure_logging,
)
from fleetkit.overload import OverloadMiddleware, RouteClassifier
from fleetkit.ratelimit import Policy, RateLimitMiddleware, ip_key, user_key
from fleetkit.sessions import SessionMiddleware

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

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await services.start()
        if freeze_gc:
            gc.collect()
            gc.freeze()
        restore: Callable[[], None] | None = None
        if install_signal_handlers:
            restore = drain_on_signal(services.health, delay=settings.shutdown_delay)
        try:
            yield
        finally:
            services.health.begin_shutdown()
            if restore is not None:
                restore()
            await services.aclose()

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
        # A Route (not a Mount): Mount would redirect /metrics to /metrics/.
        routes=[Route("/metrics", MetricsApp(multiproc_dir=settings.prometheus_multiproc_dir),
                      methods=["GET", "HEAD"], include_in_schema=False)],
    )
    app.state.services = services
    app.state.settings = settings
    app.include_router(router)
    app.include_router(auth_router)
    app.include_router(admin_router)
    install_problem_handlers(app)
    document_problems(app)  # 401/403 on protected routes, 429/503 everywhere, in OpenAPI

    trusted = list(settings.trusted_proxies)
    policies = [
        Policy("ip", settings.rate_limit_ip, key=ip_key(trusted)),
        Policy("user", settings.rate_limit_user, key=user_key),
        Policy("login", settings.rate_limit_login, key=ip_key(trusted), path="/v1/auth/login",
               methods=frozenset({"POST"})),
    ]
    # add_middleware wraps: the last added is the outermost.
    app.add_middleware(RateLimitMiddleware, limiter=services.limiter, policies=policies,
                       shadow=settings.rate_limit_shadow, exempt=("/metrics", "/docs",
                                                                  "/openapi.json"))
    app.add_middleware(SessionMiddleware, store=services.sessions,
                       cookie_name=settings.session_cookie_name,
                       cookie_secure=settings.session_cookie_secure)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(HealthMiddleware, registry=services.health,
                       show_details=settings.health_show_details,
                       service_id=settings.instance_id, version="0.1.0")
    app.add_middleware(ProtocolGuardMiddleware, max_header_bytes=settings.max_header_bytes,
                       max_header_count=settings.max_header_count)
    app.add_middleware(HTTPMetricsMiddleware, exclude=("/metrics",))
    app.add_middleware(RequestIdMiddleware)
    if settings.overload_enabled:
        app.add_middleware(OverloadMiddleware, controller=services.overload,
                           classifier=RouteClassifier.from_settings(settings),
                           sampler=services.overload_sampler,
                           retry_after=settings.overload_retry_after)
    # Outermost: while draining, every answer (of any layer) closes its connection.
    app.add_middleware(CloseWhileDraining, registry=services.health)
    return app


def app_from_env() -> Any:
    """Uvicorn factory: settings from the environment (used by ``fleetkit serve`` workers)."""
    settings = load_settings()
    configure_logging(level=settings.log_level, json=settings.log_json,
                      static={"instance": settings.instance_id})
    return create_app(settings, freeze_gc=True)
