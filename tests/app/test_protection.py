"""Rate limits, breaker, admin and bad input through the reference service's HTTP API."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from tests.app.conftest import (
    AppFactory,
    distributed_env,
    embedded_env,
    new_email,
    register_and_login,
)
from tests.app.security_support import login, set_role


async def register_and_login_again(client: httpx.AsyncClient,
                                   email: str) -> tuple[str, dict[str, Any]]:
    body = (await login(client, email, "correct horse battery")).json()
    return body["token"], body


async def test_login_is_rate_limited_with_problem_json(tmp_path: Path,
                                                       app_factory: AppFactory) -> None:
    _, client = await app_factory(distributed_env(tmp_path, RATE_LIMIT_LOGIN="3/minute"))
    email = new_email()
    codes = []
    for _ in range(5):
        r = await client.post("/v1/auth/login", json={"email": email, "password": "nope-nope"})
        codes.append(r.status_code)
    assert codes[:3] == [401, 401, 401]
    assert codes[3:] == [429, 429]
    assert r.headers["content-type"] == "application/problem+json"
    assert int(r.headers["retry-after"]) >= 1
    assert "login" in r.headers["ratelimit-policy"]
    assert r.json()["status"] == 429


async def test_per_ip_limit_is_shared_by_requests(tmp_path: Path,
                                                  app_factory: AppFactory) -> None:
    _, client = await app_factory(embedded_env(tmp_path, RATE_LIMIT_IP="4/minute"))
    codes = [(await client.get("/v1/me")).status_code for _ in range(6)]
    assert codes == [401, 401, 401, 401, 429, 429]


async def test_spoofed_forwarded_for_is_ignored_without_trusted_proxies(
        tmp_path: Path, app_factory: AppFactory) -> None:
    _, client = await app_factory(embedded_env(tmp_path, RATE_LIMIT_IP="3/minute"))
    codes = []
    for i in range(5):  # a new fake address each time must not reset the client's quota
        r = await client.get("/v1/me", headers={"X-Forwarded-For": f"203.0.113.{i}, garbage"})
        codes.append(r.status_code)
    assert codes == [401, 401, 401, 429, 429]


async def test_admin_routes_need_the_admin_role_and_control_the_breaker(
        tmp_path: Path, app_factory: AppFactory) -> None:
    admin_email = new_email()
    app, client = await app_factory(distributed_env(tmp_path))
    user, _ = await register_and_login(client)
    r = await client.get("/v1/admin/breakers", headers={"Authorization": f"Bearer {user}"})
    assert r.status_code == 403 and r.json()["type"] == "forbidden"

    _, body = await register_and_login(client, admin_email)
    await set_role(app, body["user"]["id"], "admin")  # as `fleetkit admin create` would
    admin, body = await register_and_login_again(client, admin_email)
    assert body["user"]["role"] == "admin"
    a = {"Authorization": f"Bearer {admin}"}
    u = {"Authorization": f"Bearer {user}"}
    assert (await client.get("/v1/me", headers=u)).status_code == 200
    r = await client.post("/v1/admin/breakers/database/force-open", headers=a)
    assert r.json()["state"] == "forced_open"
    blocked = await client.get("/v1/me", headers=u)
    assert blocked.status_code == 503
    assert blocked.json()["type"] == "circuit-open" and "retry-after" in blocked.headers
    names = [b["name"] for b in (await client.get("/v1/admin/breakers", headers=a)).json()]
    assert "database" in names
    assert (await client.post("/v1/admin/breakers/database/close", headers=a)
            ).json()["state"] == "closed"
    assert (await client.get("/v1/me", headers=u)).status_code == 200
    assert (await client.post("/v1/admin/breakers/nope/close", headers=a)).status_code == 404

    # Rate-limit inspection and reset, and revoking another user's sessions.
    r = await client.get("/v1/admin/ratelimit/ip/198.51.100.7", headers=a)
    assert r.status_code == 200 and r.json()["limits"]
    assert (await client.delete("/v1/admin/ratelimit/ip/198.51.100.7", headers=a)
            ).status_code == 204
    uid = (await client.get("/v1/me", headers=u)).json()["id"]
    r = await client.delete(f"/v1/admin/users/{uid}/sessions", headers=a)
    assert r.json()["revoked"] == 1
    assert (await client.get("/v1/me", headers=u)).status_code == 401


async def test_bad_input_gets_4xx_problem_json(tmp_path: Path, app_factory: AppFactory) -> None:
    _, client = await app_factory(embedded_env(tmp_path, MAX_BODY_BYTES="2048"))
    cases = [
        await client.post("/v1/auth/register", content=b"{not json",
                          headers={"content-type": "application/json"}),
        await client.post("/v1/auth/register", json={"email": "no-at-sign", "password": "x"}),
        await client.post("/v1/auth/register", json={"email": "a@b.c", "password": "p" * 5000}),
        await client.get("/v1/me", headers={"Cookie": "__Host-session=%%%garbage\x7f"}),
        await client.get("/v1/me", headers={"Authorization": "Bearer " + "A" * 5000}),
        await client.get("/v1/items/not-a-number",
                         headers={"Authorization": "Bearer v1.bad.token"}),
        await client.get("/v1/audit?before=';drop table"),
    ]
    for r in cases:
        assert 400 <= r.status_code < 500, (r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/problem+json"), r.text
    assert [r.status_code for r in cases[:3]] == [422, 422, 413]


async def test_audit_trail_embedded(tmp_path: Path, app_factory: AppFactory) -> None:
    _, client = await app_factory(embedded_env(tmp_path))
    token, body = await register_and_login(client)
    auth = {"Authorization": f"Bearer {token}"}
    uid = str(body["user"]["id"])
    events: list[dict[str, object]] = []
    for _ in range(50):  # the embedded sink writes in the background: poll, bounded
        events = (await client.get("/v1/audit", headers=auth)).json()["items"]
        if {"user.register", "session.create"} <= {e["action"] for e in events}:
            break
        await asyncio.sleep(0.1)
    assert {"user.register", "session.create"} <= {e["action"] for e in events}
    assert all(e["actor"] == uid for e in events)
    r = await client.get("/v1/audit?actor=someone-else", headers=auth)
    assert r.status_code == 403


async def test_per_user_limit_follows_the_session(tmp_path: Path,
                                                  app_factory: AppFactory) -> None:
    _, client = await app_factory(distributed_env(tmp_path, RATE_LIMIT_USER="3/minute"))
    first, _ = await register_and_login(client)
    second, _ = await register_and_login(client)
    codes = [(await client.get("/v1/me", headers={"Authorization": f"Bearer {first}"})
              ).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    # Another user from the same address has a quota of its own.
    other = await client.get("/v1/me", headers={"Authorization": f"Bearer {second}"})
    assert other.status_code == 200
    assert "user" in other.headers["ratelimit-policy"]


async def test_audit_events_carry_the_real_client_and_request_id(
        tmp_path: Path, app_factory: AppFactory) -> None:
    _, client = await app_factory(embedded_env(tmp_path, TRUSTED_PROXIES="198.51.100.7/32"))
    email = new_email()
    headers = {"X-Forwarded-For": "spoofed, 203.0.113.9", "X-Request-ID": "req-audit-1"}
    r = await client.post("/v1/auth/register", json={"email": email, "password": "pw-12345678"},
                          headers=headers)
    assert r.status_code == 202
    login = await client.post("/v1/auth/login", json={"email": email, "password": "pw-12345678"})
    auth = {"Authorization": f"Bearer {login.json()['token']}"}
    for _ in range(50):
        items = (await client.get("/v1/audit", headers=auth)).json()["items"]
        found = [e for e in items if e["action"] == "user.register"]
        if found:
            break
        await asyncio.sleep(0.1)
    assert found[0]["client_ip"] == "203.0.113.9"  # behind the trusted proxy, not spoofed
    assert found[0]["request_id"] == "req-audit-1"
