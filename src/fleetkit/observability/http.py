"""HTTP metrics middleware: requests, latency histogram and in-flight gauge by route template.

Labels use the route template (``/users/{user_id}``), never the raw path, so that ids in URLs
cannot blow up the series count; anything no route matched is ``<unmatched>``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from fleetkit.observability.metrics import LabelCache
from fleetkit.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["UNMATCHED", "HTTPMetrics", "HTTPMetricsMiddleware"]


UNMATCHED = "<unmatched>"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class HTTPMetrics:
    """The three metric families, one set per registry (so tests can use their own)."""

    _by_registry: dict[int, HTTPMetrics] = {}

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("fleetkit_http_requests_total", "HTTP requests by route template.",
                                ["method", "route", "status"], registry=registry)
        self.latency = Histogram("fleetkit_http_request_duration_seconds",
                                 "HTTP request latency (to the end of the body) by route template.",
                                 ["method", "route"], buckets=BUCKETS, registry=registry)
        self.in_flight = Gauge("fleetkit_http_requests_in_flight", "HTTP requests being served.",
                               ["method"], multiprocess_mode="livesum", registry=registry)

    @classmethod
    def of(cls, registry: CollectorRegistry) -> HTTPMetrics:
        found = cls._by_registry.get(id(registry))
        if found is None:
            found = cls._by_registry[id(registry)] = cls(registry)
        return found


def _match(routes: Sequence[Any], scope: Scope, prefix: str = "") -> str | None:
    """Template of the route matching ``scope`` (Starlette routes, recursing into Mounts)."""
    from starlette.routing import Match, Mount

    for route in routes:
        match, child = route.matches(scope)
        if match is Match.NONE:
            continue
        if isinstance(route, Mount):
            template = prefix + route.path  # Mount.path_format ends in "/{path}"
            inner = _match(route.routes, {**scope, **child}, template)
            if inner is None:  # a sub-router that matched nothing 404s; a plain app takes all
                return UNMATCHED if route.routes else template + "/{path}"
            return inner
        return prefix + _template_of(route)
    return None


def _template_of(route: Any) -> str:
    # path_format drops converters: "/users/{user_id:int}" -> "/users/{user_id}".
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return path if isinstance(path, str) else ""


class HTTPMetricsMiddleware:
    """Pure ASGI middleware; put it outermost so it also times the other middleware.

    ``routes``: the app's Starlette/FastAPI routes for matching up front (needed for mounted
    sub-apps). Without it the template is read from ``scope["route"]`` after the app ran,
    which Starlette and FastAPI routers set on the shared scope.
    """

    def __init__(self, app: ASGIApp, *, routes: Sequence[Any] | None = None,
                 registry: CollectorRegistry | None = None,
                 exclude: Sequence[str] = ()) -> None:
        self.app = app
        self.routes = routes
        self.metrics = HTTPMetrics.of(registry or REGISTRY)
        self.exclude = frozenset(exclude)
        self._in_flight = LabelCache(self.metrics.in_flight)
        self._requests = LabelCache(self.metrics.requests)
        self._latency = LabelCache(self.metrics.latency)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exclude:
            await self.app(scope, receive, send)
            return
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        template = _match(self.routes, scope) if self.routes is not None else None
        status = [500]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        in_flight = self._in_flight(method)
        in_flight.inc()
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            in_flight.dec()
            if template is None:
                route = scope.get("route")
                template = (_template_of(route) if route is not None else "") or UNMATCHED
            self._requests(method, template, str(status[0])).inc()
            self._latency(method, template).observe(elapsed)
