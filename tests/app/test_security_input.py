"""Issue 18 item 1: input the datastores cannot hold is a 422 problem+json, never a 500.

On SQLite (embedded) and on PostgreSQL (distributed): ids past BIGINT overflow both drivers, NUL
is PostgreSQL's ``CharacterNotInRepertoireError``, a lone surrogate has no UTF-8 form, and the
audit cursor must be a real UUID.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from tests.app.conftest import (
    AppFactory,
    distributed_env,
    embedded_env,
    new_email,
    register_and_login,
)
from tests.app.security_support import bearer

TOO_BIG = "9223372036854775808"  # BIGINT max + 1
BIGINT_MAX = "9223372036854775807"


@pytest.fixture(params=["sqlite", "postgresql"])
async def client(request: pytest.FixtureRequest, tmp_path: Path,
                 app_factory: AppFactory) -> httpx.AsyncClient:
    env = embedded_env(tmp_path) if request.param == "sqlite" else distributed_env(tmp_path)
    _, c = await app_factory(env)
    return c


def _is_422(r: httpx.Response) -> None:
    assert r.status_code == 422, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "validation-error"


async def test_ids_past_bigint_are_422(client: httpx.AsyncClient) -> None:
    token, _ = await register_and_login(client)
    auth = bearer(token)
    for r in (await client.get(f"/v1/items/{TOO_BIG}", headers=auth),
              await client.patch(f"/v1/items/{TOO_BIG}", json={"title": "t"}, headers=auth),
              await client.delete(f"/v1/items/{TOO_BIG}", headers=auth),
              await client.get("/v1/items?after=99999999999999999999", headers=auth),
              await client.get(f"/v1/items/-{TOO_BIG}", headers=auth)):
        _is_422(r)
    # The largest id the column holds is a valid question: no such item.
    r = await client.get(f"/v1/items/{BIGINT_MAX}", headers=auth)
    assert r.status_code == 404, r.text
    r = await client.get(f"/v1/items?after={BIGINT_MAX}", headers=auth)
    assert r.status_code == 200 and r.json()["items"] == []


async def test_nul_and_lone_surrogates_are_422(client: httpx.AsyncClient) -> None:
    # Unauthenticated: register and login must refuse before the database sees the text.
    nul_email = {"email": "nul\u0000x@example.com", "password": "long enough pw"}
    _is_422(await client.post("/v1/auth/register", json=nul_email))
    _is_422(await client.post("/v1/auth/login", json=nul_email))
    surrogate = b'{"email": "a@example.com", "password": "pass\\ud800word!"}'
    for path in ("/v1/auth/register", "/v1/auth/login"):
        _is_422(await client.post(path, content=surrogate,
                                  headers={"content-type": "application/json"}))
    token, _ = await register_and_login(client)
    auth = bearer(token)
    _is_422(await client.post("/v1/items", json={"title": "a\u0000b"}, headers=auth))
    _is_422(await client.post("/v1/items", json={"title": "t", "body": "x\u0000"}, headers=auth))
    _is_422(await client.post("/v1/items", content=b'{"title": "\\udc00"}',
                              headers={**auth, "content-type": "application/json"}))
    created = await client.post("/v1/items", json={"title": "fine \u00e9\U0001f600"},
                                headers=auth)
    assert created.status_code == 201, created.text
    item = created.json()["id"]
    _is_422(await client.patch(f"/v1/items/{item}", json={"body": "\u0000"}, headers=auth))
    _is_422(await client.get("/v1/audit?actor=a%00b", headers=auth))
    _is_422(await client.delete("/v1/sessions/a%00b", headers=auth))
    # Tabs, newlines and astral characters are text like any other.
    ok = await client.patch(f"/v1/items/{item}", json={"body": "line\n\ttab \U0001f600"},
                            headers=auth)
    assert ok.status_code == 200 and ok.json()["body"] == "line\n\ttab \U0001f600"


async def test_audit_cursor_must_be_a_uuid(client: httpx.AsyncClient) -> None:
    token, _ = await register_and_login(client)
    auth = bearer(token)
    for before in ("-" * 36, "a" * 36, "0" * 36, str(uuid.uuid4()).upper()):
        _is_422(await client.get(f"/v1/audit?before={before}", headers=auth))
    r = await client.get(f"/v1/audit?before={uuid.uuid4()}", headers=auth)
    assert r.status_code == 200, r.text


async def test_valid_input_still_round_trips(client: httpx.AsyncClient) -> None:
    # The validated types reject only what cannot be stored: a normal account works end to end.
    token, body = await register_and_login(client, email=new_email())
    r = await client.get("/v1/me", headers=bearer(token))
    assert r.status_code == 200 and r.json()["id"] == body["user"]["id"]
