"""HTTP metrics middleware: route templates (never raw paths), in-flight, status codes."""

from __future__ import annotations

import httpx
from prometheus_client import CollectorRegistry, Counter
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route

from fleetkit.observability import HTTPMetricsMiddleware
from fleetkit.observability.metrics import LabelCache

REGISTRIES: list[CollectorRegistry] = []


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


async def user(request: Request) -> Response:
    if request.path_params["user_id"] == 404:
        return PlainTextResponse("no such user", status_code=404)
    return PlainTextResponse("ok")


async def thing(request: Request) -> Response:
    registry = request.app.state.registry
    in_flight = value(registry, "fleetkit_http_requests_in_flight", method="GET")
    return PlainTextResponse(str(in_flight))


def make_app(*, explicit_routes: bool) -> tuple[Starlette, CollectorRegistry]:
    registry = CollectorRegistry()
    routes = [Route("/users/{user_id:int}", user),
              Mount("/api", routes=[Route("/things/{thing_id}", thing)])]
    app = Starlette(routes=routes, middleware=[Middleware(
        HTTPMetricsMiddleware, registry=registry, routes=routes if explicit_routes else None)])
    app.state.registry = registry
    return app, registry


async def test_labels_use_route_templates_with_explicit_routes() -> None:
    app, registry = make_app(explicit_routes=True)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://t") as client:
        for uid in (1, 2, 3, 404):
            await client.get(f"/users/{uid}")
        in_flight = (await client.get("/api/things/abc")).text
        await client.get("/users/not-an-int")
        await client.get("/random/path/1")
        await client.get("/api/nothing-here")
    total = "fleetkit_http_requests_total"
    assert value(registry, total, method="GET", route="/users/{user_id}", status="200") == 3.0
    assert value(registry, total, method="GET", route="/users/{user_id}", status="404") == 1.0
    assert value(registry, total, method="GET", route="/api/things/{thing_id}",
                 status="200") == 1.0
    assert value(registry, total, method="GET", route="<unmatched>", status="404") == 3.0
    assert in_flight == "1.0"  # counted while the request ran
    assert value(registry, "fleetkit_http_requests_in_flight", method="GET") == 0.0
    routes = {s.labels["route"] for m in registry.collect() for s in m.samples
              if "route" in s.labels}
    assert routes == {"/users/{user_id}", "/api/things/{thing_id}", "<unmatched>"}
    assert value(registry, "fleetkit_http_request_duration_seconds_count", method="GET",
                 route="/users/{user_id}") == 4.0


async def test_template_from_scope_route_without_explicit_routes() -> None:
    app, registry = make_app(explicit_routes=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://t") as client:
        await client.get("/users/7")
        await client.get("/users/8")
        await client.get("/nope")
    total = "fleetkit_http_requests_total"
    assert value(registry, total, method="GET", route="/users/{user_id}", status="200") == 2.0
    assert value(registry, total, method="GET", route="<unmatched>", status="404") == 1.0


async def test_non_http_scopes_pass_through() -> None:
    seen = []

    async def inner(scope: dict[str, object], receive: object, send: object) -> None:
        seen.append(scope["type"])

    registry = CollectorRegistry()
    middleware = HTTPMetricsMiddleware(inner, registry=registry)  # type: ignore[arg-type]
    await middleware({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan"]
    assert value(registry, "fleetkit_http_requests_total", method="GET", route="<unmatched>",
                 status="200") is None


def test_label_cache_resolves_each_child_once_and_stays_bounded() -> None:
    registry = CollectorRegistry()
    counter = Counter("fk_test_label_cache", "t", ["a"], registry=registry)
    cache = LabelCache(counter, max_size=2)
    cache("x").inc()
    assert cache("x") is counter.labels("x")
    cache("y").inc(2)
    cache("z").inc(3)  # over the bound: the cache starts afresh, the metric keeps its values
    assert len(cache._children) == 1
    assert registry.get_sample_value("fk_test_label_cache_total", {"a": "x"}) == 1
    assert registry.get_sample_value("fk_test_label_cache_total", {"a": "z"}) == 3
