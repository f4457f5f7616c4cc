"""OverloadMiddleware on a real Starlette app, driven in-process over httpx."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from fleetkit.overload import (
    AdmissionController,
    OverloadMiddleware,
    Priority,
    RouteClassifier,
    parse_route_classes,
)


class Held:
    """Routes that block until released, so the test decides when slots free up."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = 0

    async def slow(self, request: Request) -> PlainTextResponse:
        self.entered += 1
        await self.release.wait()
        return PlainTextResponse("done")


async def fast(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def live(request: Request) -> JSONResponse:
    return JSONResponse({"status": "pass"})


def build(held: Held, controller: AdmissionController, *, trusted: tuple[str, ...] = ()
          ) -> OverloadMiddleware:
    app = Starlette(routes=[Route("/slow", held.slow), Route("/fast", fast),
                            Route("/health/live", live), Route("/v1/auth/login", fast,
                                                               methods=["POST"])])
    classifier = RouteClassifier(
        routes=parse_route_classes(["/health=never", "/v1/auth/login=critical",
                                    "/reports=sheddable"]),
        trusted_proxies=trusted)
    return OverloadMiddleware(app, controller=controller, classifier=classifier)


@pytest.fixture
async def env() -> AsyncIterator[tuple[Held, AdmissionController, httpx.AsyncClient]]:
    held = Held()
    controller = AdmissionController(min_limit=1, max_limit=1, queue_timeout=0.02)
    app = build(held, controller, trusted=("127.0.0.0/8",))
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield held, controller, client
    held.release.set()
    await app.sampler.aclose()


def refused(name: str, reason: str) -> float:
    return REGISTRY.get_sample_value("fleetkit_overload_refused_total",
                                     {"priority": name, "reason": reason}) or 0.0


async def wait_for(predicate: object) -> None:
    while not predicate():  # type: ignore[operator]
        await asyncio.sleep(0.001)


def assert_refusal(response: httpx.Response) -> None:
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert 1 <= int(response.headers["retry-after"]) <= 3
    body = orjson.loads(response.content)
    assert body["type"] == "overloaded" and body["status"] == 503
    assert int(response.headers["content-length"]) == len(response.content)


async def test_excess_is_refused_probes_and_critical_still_answer(
        env: tuple[Held, AdmissionController, httpx.AsyncClient]) -> None:
    held, controller, client = env
    before = refused("normal", "limit") + refused("normal", "queue_timeout")
    holder = asyncio.create_task(client.get("/slow"))
    await wait_for(lambda: held.entered == 1)
    assert controller.in_flight == 1
    # The one queue place times out (queue_timeout), every other request is refused at once.
    answers = await asyncio.gather(*(client.get("/fast") for _ in range(20)))
    for response in answers:
        assert_refusal(response)
    assert refused("normal", "limit") + refused("normal", "queue_timeout") - before == 20
    # Probes bypass admission; critical routes have a reserve above the limit.
    assert (await client.get("/health/live")).status_code == 200
    assert (await client.post("/v1/auth/login")).status_code == 200
    held.release.set()
    assert (await holder).text == "done"
    assert controller.in_flight == 0
    assert (await client.get("/fast")).status_code == 200
    assert (await controller.health()).status == "warn"


async def test_a_queued_request_runs_when_a_slot_frees(
        env: tuple[Held, AdmissionController, httpx.AsyncClient]) -> None:
    held, controller, client = env
    controller.queue_timeout = 30.0  # a long deadline: the wait ends by the release below
    holder = asyncio.create_task(client.get("/slow"))
    await wait_for(lambda: held.entered == 1)
    waiting = asyncio.create_task(client.get("/fast"))
    await wait_for(lambda: controller.queued == 1)
    held.release.set()
    assert (await waiting).status_code == 200
    assert (await holder).status_code == 200


async def test_the_priority_header_counts_only_from_trusted_proxies() -> None:
    held = Held()
    controller = AdmissionController(min_limit=1, max_limit=1, queue_timeout=30.0)
    for peer, expected in (("127.0.0.1", Priority.SHEDDABLE), ("203.0.113.9", Priority.NORMAL)):
        app = build(held, controller, trusted=("127.0.0.0/8",))
        scope = {"type": "http", "path": "/fast", "client": (peer, 1),
                 "headers": [(b"x-priority", b"sheddable")]}
        assert app.classifier(scope) is expected
    # A header cannot ask for never-shed, and unknown values are ignored.
    app = build(held, controller, trusted=("127.0.0.0/8",))
    for value in (b"never", b"vip"):
        scope = {"type": "http", "path": "/fast", "client": ("127.0.0.1", 1),
                 "headers": [(b"x-priority", value)]}
        assert app.classifier(scope) is Priority.NORMAL


async def test_sheddable_requests_are_refused_first(
        env: tuple[Held, AdmissionController, httpx.AsyncClient]) -> None:
    held, controller, client = env
    controller.queue_timeout = 30.0
    holder = asyncio.create_task(client.get("/slow"))
    await wait_for(lambda: held.entered == 1)
    sheddable = asyncio.create_task(client.get("/fast", headers={"x-priority": "sheddable"}))
    await wait_for(lambda: controller.queued == 1)
    # The queue is full (one place): a normal request evicts the sheddable waiter.
    normal = asyncio.create_task(client.get("/fast"))
    assert_refusal(await sheddable)
    held.release.set()
    assert (await normal).status_code == 200
    await holder


async def test_non_http_scopes_pass_through() -> None:
    seen: list[str] = []

    async def inner(scope: dict[str, object], receive: object, send: object) -> None:
        seen.append(str(scope["type"]))

    controller = AdmissionController(min_limit=1, max_limit=1)
    app = OverloadMiddleware(inner, controller=controller)  # type: ignore[arg-type]
    controller.in_flight = 1  # full: an HTTP request would queue, a lifespan must not
    await app({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    await app({"type": "websocket", "path": "/ws"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan", "websocket"]
    assert not app.sampler.running
