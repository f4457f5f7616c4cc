"""Refusal at the door: a real uvicorn server with ``AdmissionProtocol``, over raw sockets.

The limit is pinned to one slot and one queue place, held by requests the test releases, so
whether a request is refused never depends on the machine's speed. An outer counting layer
shows which requests reached the ASGI app at all: refusals at the door never do.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from fleetkit.overload import AdmissionController, OverloadMiddleware, Priority, RouteClassifier
from fleetkit.overload.server import AdmissionProtocol
from fleetkit.types import ASGIApp, Receive, Scope, Send
from tests.support import free_port


@dataclass
class Counting:
    """Outermost layer: counts the HTTP requests that reached the ASGI app."""

    app: ASGIApp
    calls: list[str] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.calls.append(scope["path"])
        await self.app(scope, receive, send)


@dataclass
class Served:
    port: int
    app: Counting
    release: asyncio.Event
    controller: AdmissionController


@contextlib.asynccontextmanager
async def serving(lifespan: str = "on") -> AsyncIterator[Served]:
    release = asyncio.Event()

    async def slow(request: Request) -> PlainTextResponse:
        await release.wait()
        return PlainTextResponse("slow")

    async def fast(request: Request) -> PlainTextResponse:
        await request.body()
        return PlainTextResponse("fast")

    controller = AdmissionController(min_limit=1, max_limit=1, queue_timeout=60)
    inner = Starlette(routes=[Route("/slow", slow), Route("/fast", fast, methods=["GET", "POST"]),
                              Route("/report", fast)])
    app = Counting(OverloadMiddleware(inner, controller=controller, classifier=RouteClassifier(
        routes={"/report": "sheddable"})))
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http=AdmissionProtocol,
                            lifespan=lifespan, log_level="warning", loop="asyncio")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done(), "server failed to start"
            await asyncio.sleep(0.01)
        yield Served(port, app, release, controller)
    finally:
        release.set()
        server.should_exit = True
        await task


async def request(port: int, raw: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    return reader, writer


async def response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if line)
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(lines[0].split()[1]), headers, body


async def wait_for(predicate: Callable[[], bool], what: str) -> None:
    try:
        async with asyncio.timeout(30):  # a bound that only turns a hang into a failure
            while not predicate():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"never happened: {what}") from None


async def fill(served: Served) -> list[asyncio.StreamWriter]:
    """One request in the slot, one in the queue: the next normal request has no place."""
    writers = []
    for _ in range(2):
        _, writer = await request(served.port, b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        writers.append(writer)
    await wait_for(lambda: served.controller.in_flight == 1 and served.controller.queued == 1,
                   "slot and queue place held")
    return writers


GET_FAST = b"GET /fast HTTP/1.1\r\nHost: t\r\n\r\n"


async def test_refusals_are_written_before_the_app_runs() -> None:
    async with serving() as served:
        holders = await fill(served)
        reached = len(served.app.calls)
        reader, writer = await request(served.port, GET_FAST)
        status, headers, body = await response(reader)
        assert status == 503
        assert headers["content-type"] == "application/problem+json"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["cache-control"] == "no-store"
        assert 1 <= int(headers["retry-after"]) <= 3
        assert b'"type":"overloaded"' in body
        assert len(served.app.calls) == reached  # the app never saw it
        assert served.controller.refused[Priority.NORMAL] == 1

        # The kept-alive connection serves its next request once there is room again.
        served.release.set()
        await wait_for(lambda: served.controller.in_flight == 0, "held requests done")
        writer.write(GET_FAST)
        status, _, body = await response(reader)
        assert (status, body) == (200, b"fast")
        for w in [writer, *holders]:
            w.close()


async def test_a_burst_is_decided_at_the_door_whatever_its_timing() -> None:
    """Requests read in one loop iteration all pass the door before any of them runs: the door
    must take the whole decision (slot, queue place or refusal), not only refuse a full queue."""
    async with serving() as served:
        conns = [await asyncio.open_connection("127.0.0.1", served.port) for _ in range(4)]
        for _, writer in conns:
            writer.write(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        await asyncio.gather(*(writer.drain() for _, writer in conns))
        await wait_for(lambda: served.controller.refused[Priority.NORMAL] == 2, "two refused")
        assert (served.controller.in_flight, served.controller.queued) == (1, 1)
        served.release.set()
        answers = sorted([(await response(reader))[0] for reader, _ in conns])
        assert answers == [200, 200, 503, 503]
        assert served.app.calls == ["/slow", "/slow"]  # the refused two never reached the app
        for _, writer in conns:
            writer.close()


async def test_a_refused_post_body_is_discarded_and_pipelining_keeps_order() -> None:
    async with serving() as served:
        holders = await fill(served)
        body = b"x" * 5000
        post = b"POST /fast HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n" + body
        reader, writer = await request(served.port, post + GET_FAST + b"GET /report HTTP/1.1\r\n"
                                       b"Host: t\r\n\r\n")
        statuses = [(await response(reader))[0] for _ in range(3)]
        assert statuses == [503, 503, 503]
        served.release.set()
        await wait_for(lambda: served.controller.in_flight == 0, "held requests done")
        # The POST's body was not taken for a request line: the connection is still in sync.
        writer.write(post)
        status, _, answer = await response(reader)
        assert (status, answer) == (200, b"fast")
        for w in [writer, *holders]:
            w.close()


async def test_http10_refusal_closes_the_connection() -> None:
    async with serving() as served:
        holders = await fill(served)
        reader, writer = await request(served.port, b"GET /fast HTTP/1.0\r\n\r\n")
        status, _, _ = await response(reader)
        assert status == 503
        assert await reader.read() == b""  # closed by the server
        for w in [writer, *holders]:
            w.close()


async def test_without_the_lifespan_the_middleware_refuses() -> None:
    """No door in the state (``--lifespan off``): the same refusal, from the ASGI layer."""
    async with serving("off") as served:
        holders = await fill(served)
        reached = len(served.app.calls)
        reader, writer = await request(served.port, GET_FAST)
        status, headers, _ = await response(reader)
        assert status == 503 and headers["x-content-type-options"] == "nosniff"
        assert len(served.app.calls) == reached + 1
        for w in [writer, *holders]:
            w.close()
