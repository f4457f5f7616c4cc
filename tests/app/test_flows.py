"""End-to-end HTTP flows of the reference service: embedded and distributed mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.app.conftest import (
    AppFactory,
    distributed_env,
    embedded_env,
    new_email,
    register_and_login,
)
from tests.support import REDIS_SERVER

MODES = {"distributed": distributed_env, "embedded": embedded_env}


@pytest.mark.parametrize("mode", list(MODES))
async def test_account_session_and_items_flow(mode: str, tmp_path: Path,
                                              app_factory: AppFactory) -> None:
    _, client = await app_factory(MODES[mode](tmp_path))
    email = new_email()
    token, body = await register_and_login(client, email)
    assert len(token) >= 43 and body["user"]["email"] == email
    auth = {"Authorization": f"Bearer {token}"}

    me = await client.get("/v1/me", headers=auth)
    assert me.status_code == 200 and me.json()["email"] == email
    assert "RateLimit" in me.headers and "RateLimit-Policy" in me.headers

    # Read-your-writes: the item is visible at once, even though reads go to a replica.
    created = await client.post("/v1/items", json={"title": "first", "body": "x"}, headers=auth)
    assert created.status_code == 201
    item = created.json()
    listed = await client.get("/v1/items", headers=auth)
    assert [i["id"] for i in listed.json()["items"]] == [item["id"]]
    patched = await client.patch(f"/v1/items/{item['id']}", json={"title": "second"},
                                 headers=auth)
    assert patched.json()["title"] == "second" and patched.json()["version"] == 2
    got = await client.get(f"/v1/items/{item['id']}", headers=auth)
    assert got.json()["title"] == "second"
    assert (await client.delete(f"/v1/items/{item['id']}", headers=auth)).status_code == 204
    assert (await client.get(f"/v1/items/{item['id']}", headers=auth)).status_code == 404

    # Another user cannot see the first user's items.
    other, _ = await register_and_login(client)
    mine = await client.post("/v1/items", json={"title": "private"}, headers=auth)
    peek = await client.get(f"/v1/items/{mine.json()['id']}",
                            headers={"Authorization": f"Bearer {other}"})
    assert peek.status_code == 404

    sessions = (await client.get("/v1/sessions", headers=auth)).json()
    assert [s["current"] for s in sessions] == [True]

    assert (await client.post("/v1/auth/logout", headers=auth)).status_code == 204
    after = await client.get("/v1/me", headers=auth)
    assert after.status_code == 401
    assert after.headers["content-type"] == "application/problem+json"


async def test_login_rotates_and_session_management(tmp_path: Path,
                                                    app_factory: AppFactory) -> None:
    _, client = await app_factory(distributed_env(tmp_path))
    email = new_email()
    first, _ = await register_and_login(client, email)
    r = await client.post("/v1/auth/login", json={"email": email,
                                                  "password": "correct horse battery"})
    second = r.json()["token"]
    client.cookies.clear()  # three devices: no login here carries another's cookie
    third = (await client.post("/v1/auth/login", json={
        "email": email, "password": "correct horse battery"})).json()["token"]
    assert len({first, second, third}) == 3
    auth = {"Authorization": f"Bearer {third}"}
    listed = (await client.get("/v1/sessions", headers=auth)).json()
    assert len(listed) == 3
    # Revoke one other session by id, then all the others.
    victim = next(s["id"] for s in listed if not s["current"])
    assert (await client.delete(f"/v1/sessions/{victim}", headers=auth)).status_code == 204
    assert (await client.delete(f"/v1/sessions/{victim}", headers=auth)).status_code == 404
    r = await client.delete("/v1/sessions", headers=auth)
    assert r.json() == {"revoked": 1}
    for old in (first, second):
        assert (await client.get("/v1/me", headers={"Authorization": f"Bearer {old}"})
                ).status_code == 401
    assert (await client.get("/v1/me", headers=auth)).status_code == 200


async def test_login_on_a_browser_with_a_session_rotates_it(
        tmp_path: Path, app_factory: AppFactory) -> None:
    _, client = await app_factory(distributed_env(tmp_path))
    email = new_email()
    await client.post("/v1/auth/register", json={"email": email, "password": "pw-123456789"})
    first = (await client.post("/v1/auth/login", json={"email": email,
                                                       "password": "pw-123456789"})).json()
    second = (await client.post("/v1/auth/login", json={"email": email,
                                                        "password": "pw-123456789"})).json()
    assert first["session_id"] != second["session_id"]
    # The browser's old session was revoked by the new login (session fixation defence).
    old = await client.get("/v1/me", headers={"Authorization": f"Bearer {first['token']}"})
    assert old.status_code == 401
    ids = [s["id"] for s in (await client.get("/v1/sessions")).json()]
    assert ids == [second["session_id"]]


async def test_browser_cookie_is_secure_and_works(tmp_path: Path,
                                                  app_factory: AppFactory) -> None:
    _, client = await app_factory(distributed_env(tmp_path))
    email = new_email()
    await client.post("/v1/auth/register", json={"email": email, "password": "pw-123456789"})
    r = await client.post("/v1/auth/login", json={"email": email, "password": "pw-123456789"})
    # The session cookie, and the device cookie of the login protection (docs/security.md).
    cookies = {c.split("=", 1)[0]: c for c in r.headers.get_list("set-cookie")}
    assert set(cookies) == {"__Host-session", "__Host-device"}
    cookie = cookies["__Host-session"]
    for attr in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
        assert attr in cookie
    assert r.headers["cache-control"] == "no-store"
    # httpx keeps the cookie: the next request is authenticated without a bearer token.
    assert (await client.get("/v1/me")).json()["email"] == email


async def test_wrong_password_and_duplicate_email(tmp_path: Path,
                                                  app_factory: AppFactory) -> None:
    _, client = await app_factory(distributed_env(tmp_path))
    email = new_email()
    await register_and_login(client, email)
    r = await client.post("/v1/auth/login", json={"email": email, "password": "wrong-password"})
    assert r.status_code == 401 and r.json()["type"] == "bad-credentials"
    r = await client.post("/v1/auth/login", json={"email": new_email(), "password": "whatever1"})
    assert r.status_code == 401
    # Registering a taken address answers exactly like a new one (no account enumeration), and
    # does not touch the existing account.
    taken = await client.post("/v1/auth/register",
                              json={"email": email, "password": "another-pw1"})
    fresh = await client.post("/v1/auth/register",
                              json={"email": new_email(), "password": "another-pw1"})
    assert taken.status_code == fresh.status_code == 202
    assert taken.json() == fresh.json() and taken.json()["status"] == "accepted"
    r = await client.post("/v1/auth/login", json={"email": email, "password": "another-pw1"})
    assert r.status_code == 401


async def test_metrics_and_health_endpoints(tmp_path: Path, app_factory: AppFactory) -> None:
    _, client = await app_factory(embedded_env(tmp_path, HEALTH_SHOW_DETAILS="true"))
    await client.get("/v1/ping")
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    assert "fleetkit_http_requests_total" in metrics.text
    assert 'route="/v1/ping"' in metrics.text
    for path in ("/health", "/health/ready", "/health/live"):
        r = await client.get(path)
        assert r.status_code == 200, (path, r.text)
        assert r.headers["content-type"].startswith("application/health+json")
        assert r.json()["status"] in ("pass", "warn")
    checks = (await client.get("/health")).json()["checks"]
    assert {"postgres:status", "ratelimit:status", "sessions:status", "audit:status"} <= set(checks)
    assert "x-request-id" in metrics.headers


async def test_foreign_region_tokens_are_routed_home_or_rejected(
        tmp_path: Path, app_factory: AppFactory) -> None:
    home_sessions = f"{REDIS_SERVER}/10"  # not APP_REDIS_URL: app_factory flushes that
    _, eu = await app_factory(distributed_env(tmp_path, REGION="eu-west",
                                              REDIS_SESSION_URL=home_sessions))
    token, _ = await register_and_login(eu)
    assert token.startswith("eu-west.")
    # An instance in another region, with its own session Redis, knows where eu-west lives.
    env_us = distributed_env(tmp_path, REGION="us-east",
                             REDIS_SESSION_URL=f"{REDIS_SERVER}/14",
                             SESSION_REGIONS=f"eu-west={home_sessions}")
    _, us = await app_factory(env_us)
    auth = {"Authorization": f"Bearer {token}"}
    assert (await us.get("/v1/me", headers=auth)).status_code == 200
    _, strict = await app_factory({**env_us, "SESSION_FOREIGN_TOKENS": "reject"})
    assert (await strict.get("/v1/me", headers=auth)).status_code == 401
