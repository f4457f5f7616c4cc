"""Issue 18 item 2: a security event is never dropped for what the client put in it.

A normal user's 403 on admin paths that look like credentials or are over-long, and a failed
login from an address that does not parse, are recorded with the field sanitised (redacted,
truncated, moved to metadata) and ``metadata.sanitised`` naming it.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tests.app.conftest import AppFactory, distributed_env, embedded_env, register_and_login
from tests.app.security_support import bearer, wait_for_event


@pytest.fixture(params=["sqlite", "postgresql"])
async def app_client(request: pytest.FixtureRequest, tmp_path: Path,
                     app_factory: AppFactory) -> tuple[FastAPI, httpx.AsyncClient]:
    env = embedded_env(tmp_path) if request.param == "sqlite" else distributed_env(tmp_path)
    return await app_factory(env)


async def test_denied_admin_access_with_credential_like_paths_is_recorded(
        app_client: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = app_client
    token, body = await register_and_login(client)
    uid, auth = str(body["user"]["id"]), bearer(token)
    long_name = "n" * 600
    cases = [
        (await client.get("/v1/admin/ratelimit/ip/token=abc", headers=auth),
         "/v1/admin/ratelimit/ip/token=[redacted]"),
        (await client.post("/v1/admin/breakers/secret:1/force-open", headers=auth),
         "/v1/admin/breakers/secret:[redacted]/force-open"),
        (await client.delete("/v1/admin/users/password:x/sessions", headers=auth),
         "/v1/admin/users/password:[redacted]/sessions"),
        (await client.post(f"/v1/admin/breakers/{long_name}/force-open", headers=auth),
         ("/v1/admin/breakers/" + long_name)[:498] + "...[truncated]"),
    ]
    for response, resource in cases:
        assert response.status_code == 403, response.text
        event = await wait_for_event(app, "admin.access", actor=uid, resource=resource)
        assert event.outcome == "denied"
        assert event.metadata is not None and event.metadata["sanitised"] == ["resource"]
    r = await client.get("/v1/audit?actor=token%3Dabc", headers=auth)
    assert r.status_code == 403
    event = await wait_for_event(app, "audit.read", actor=uid, resource="actor/token=[redacted]")
    assert event.outcome == "denied"


async def test_failed_login_from_an_address_that_does_not_parse_is_recorded(
        app_client: tuple[FastAPI, httpx.AsyncClient]) -> None:
    # What uvicorn's proxy-header handling used to put in the scope for
    # `X-Forwarded-For: evil-not-an-ip` (now off unless TRUSTED_PROXIES, see
    # test_security_serve); any server may hand the app a peer that is not an address.
    app, _ = app_client
    transport = httpx.ASGITransport(app=app, client=("evil-not-an-ip", 0))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        r = await client.post("/v1/auth/login", json={"email": "nobody@example.com",
                                                      "password": "wrong password"})
    assert r.status_code == 401
    event = await wait_for_event(app, "auth.login", outcome="failure")
    assert event.client_ip is None
    assert event.metadata is not None
    assert event.metadata["client_ip_given"] == "evil-not-an-ip"
    assert "client_ip" in event.metadata["sanitised"]
