"""Issue 18 item 9 (protocol hygiene) and the 500 path, through the app's HTTP interface.

Chunked bodies over the limit are 413, oversized request heads 431, every response carries
``nosniff``, account data and 401s ``no-store``, ``/docs`` is off in production; a route that
raises answers a 500 problem+json with the request's ``X-Request-ID`` and one logged traceback.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from fleetkit.observability import RequestIdFilter
from tests.app.conftest import AppFactory, distributed_env, embedded_env, register_and_login
from tests.app.security_support import bearer


async def test_an_oversized_chunked_body_is_413(tmp_path: Path, app_factory: AppFactory) -> None:
    _, client = await app_factory(embedded_env(tmp_path, MAX_BODY_BYTES="2048"))

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"email": "a@example.com", "password": "'
        for _ in range(10):
            yield b"x" * 1024
        yield b'"}'

    r = await client.post("/v1/auth/register", content=chunks(),
                          headers={"content-type": "application/json"})
    assert "content-length" not in r.request.headers  # streamed, not declared
    assert r.status_code == 413, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "body-too-large"
    # Under the limit, the same streaming works.

    async def small() -> AsyncIterator[bytes]:
        yield b'{"email": "no-at-sign", '
        yield b'"password": "whatever1"}'

    r = await client.post("/v1/auth/register", content=small(),
                          headers={"content-type": "application/json"})
    assert r.status_code == 422


async def test_oversized_or_too_many_headers_are_431(tmp_path: Path,
                                                     app_factory: AppFactory) -> None:
    _, client = await app_factory(embedded_env(tmp_path))
    for headers in ({"x-big": "a" * (4 * 1024 * 1024)},
                    {f"x-h{i}": "v" for i in range(150)}):
        r = await client.get("/v1/ping", headers=headers)
        assert r.status_code == 431, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-request-id"]
    r = await client.get("/v1/ping", headers={"x-fine": "a" * 4000})
    assert r.status_code == 200


async def test_security_headers(tmp_path: Path, app_factory: AppFactory) -> None:
    _, client = await app_factory(embedded_env(tmp_path))
    token, _ = await register_and_login(client)
    auth = bearer(token)
    anonymous = [await client.get(p) for p in ("/v1/me", "/v1/sessions", "/v1/audit")]
    for r in anonymous:
        assert r.status_code == 401
        assert r.headers["cache-control"] == "no-store"
    private = [await client.get(p, headers=auth) for p in ("/v1/me", "/v1/sessions",
                                                           "/v1/audit")]
    for r in private:
        assert r.status_code == 200, r.text
        assert r.headers["cache-control"] == "no-store"
    public = [await client.get("/v1/ping"), await client.get("/health/live"),
              await client.get("/nowhere"), await client.get("/v1/items/x", headers=auth)]
    assert [r.status_code for r in public] == [200, 200, 404, 422]
    for r in anonymous + private + public:
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "server" not in r.headers
    assert "cache-control" not in public[0].headers  # only account data is no-store


async def test_docs_are_off_in_production(tmp_path: Path, app_factory: AppFactory) -> None:
    _, dev = await app_factory(embedded_env(tmp_path))
    assert (await dev.get("/openapi.json")).status_code == 200
    assert (await dev.get("/docs")).status_code == 200
    _, prod = await app_factory(distributed_env(tmp_path, ENVIRONMENT="production"))
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert (await prod.get(path)).status_code == 404, path
    assert (await prod.get("/v1/ping")).status_code == 200
    _, opted = await app_factory(distributed_env(tmp_path, ENVIRONMENT="production",
                                                 API_DOCS="true"))
    assert (await opted.get("/openapi.json")).status_code == 200


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.addFilter(RequestIdFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[_Records]:
    handler = _Records()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


async def test_a_500_carries_the_request_id_and_logs_one_traceback(
        tmp_path: Path, app_factory: AppFactory, records: _Records) -> None:
    app, client = await app_factory(embedded_env(tmp_path))

    async def boom() -> None:
        raise RuntimeError("a bug in a route")

    app.add_api_route("/v1/boom", boom)
    # httpx's ASGITransport re-raises whatever escapes the app: reaching the asserts below
    # means the exception stopped at the guard, where the server would not log it again.
    r = await client.get("/v1/boom", headers={"X-Request-ID": "req-boom-1"})
    assert r.status_code == 500
    assert r.headers["x-request-id"] == "req-boom-1"
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.json()["type"] == "internal-error"
    assert "a bug in a route" not in r.text  # no internals to the client
    tracebacks = [rec for rec in records.records if rec.exc_info]
    assert len(tracebacks) == 1, [rec.getMessage() for rec in tracebacks]
    assert tracebacks[0].request_id == "req-boom-1"  # type: ignore[attr-defined]
    assert "/v1/boom" in tracebacks[0].getMessage()
    # The service still answers, with a fresh id when the client sends none.
    ok = await client.get("/v1/ping")
    assert ok.status_code == 200 and ok.headers["x-request-id"] != "req-boom-1"
