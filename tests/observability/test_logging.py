"""Request ids from/to X-Request-ID, JSON log lines, secrets never logged."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from fleetkit.observability import (
    JsonFormatter,
    RequestIdFilter,
    RequestIdMiddleware,
    get_request_id,
)

log = logging.getLogger("fleetkit.test.requests")


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter(static={"service": "fleetkit-test"}))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    yield stream
    log.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


async def endpoint(request: Request) -> PlainTextResponse:
    log.info("handling %s", request.url.path, extra={"user_id": "u1", "password": "hunter2"})
    log.warning("connecting to redis://fleetkit:fleetkit-secret@127.0.0.1:6390/0 token=abc123")
    return PlainTextResponse(get_request_id() or "")


app = Starlette(routes=[Route("/work", endpoint)], middleware=[Middleware(RequestIdMiddleware)])


async def get(headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://t") as client:
        return await client.get("/work", headers=headers)


async def test_incoming_request_id_is_propagated_to_logs_and_response(
        captured: io.StringIO) -> None:
    r = await get({"X-Request-ID": "req-abc.123:edge"})
    assert r.headers["x-request-id"] == "req-abc.123:edge"
    assert r.text == "req-abc.123:edge"  # visible to the app through the contextvar
    records = lines(captured)
    assert [rec["request_id"] for rec in records] == ["req-abc.123:edge"] * 2
    first = records[0]
    assert first["message"] == "handling /work" and first["level"] == "info"
    assert first["logger"] == "fleetkit.test.requests" and first["service"] == "fleetkit-test"
    assert first["user_id"] == "u1"
    assert str(first["time"]).endswith("+00:00")
    assert get_request_id() is None  # reset after the request


@pytest.mark.parametrize("bad", ["has space", "x" * 129, "quote\"d", "a\tb", "", "x" * 65,
                                 "token=abc", "user@example.com", "a/b+c",
                                 "local.X8drfM." + "B" * 43])
async def test_malformed_or_oversized_ids_are_replaced(captured: io.StringIO, bad: str) -> None:
    r = await get({"X-Request-ID": bad})
    new = r.headers["x-request-id"]
    assert new != bad and len(new) == 32 and int(new, 16) >= 0
    assert {rec["request_id"] for rec in lines(captured)} == {new}
    assert bad not in captured.getvalue() or bad == ""


async def test_missing_id_is_generated_and_unique(captured: io.StringIO) -> None:
    a, b = await get(), await get()
    assert a.headers["x-request-id"] != b.headers["x-request-id"]
    assert a.text == a.headers["x-request-id"]


async def test_secrets_are_never_logged(captured: io.StringIO) -> None:
    await get()
    text = captured.getvalue()
    assert "hunter2" not in text and "fleetkit-secret" not in text and "abc123" not in text
    records = lines(captured)
    assert records[0]["password"] == "***"
    assert records[1]["message"] == ("connecting to redis://fleetkit:***@127.0.0.1:6390/0 "
                                     "token=***")


def test_exceptions_and_lines_outside_requests(captured: io.StringIO) -> None:
    try:
        raise ValueError("bad\r\ninjected line")
    except ValueError:
        log.exception("failed")
    (record,) = lines(captured)  # CR/LF stay inside one JSON line
    assert record["request_id"] is None
    assert "ValueError: bad\r\ninjected line" in str(record["exception"])
