"""Issue 18 items 4 and 5: admin rights follow the database at once; no admin by registration."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetkit.config import load_settings
from fleetkit.errors import ConfigError
from tests.app.conftest import AppFactory, distributed_env, new_email, register_and_login
from tests.app.security_support import bearer, login, set_role, wait_for_event

PASSWORD = "correct horse battery"


async def test_a_demoted_admin_token_is_refused_at_once_and_audited(
        tmp_path: Path, app_factory: AppFactory) -> None:
    # Two instances of one fleet (shared Redis and PostgreSQL).
    env = distributed_env(tmp_path, RATE_LIMIT_LOGIN="100/minute")
    app1, one = await app_factory(env)
    _, two = await app_factory({**env, "INSTANCE_ID": env["INSTANCE_ID"] + "-b"})
    email = new_email()
    _, body = await register_and_login(one, email)
    uid = body["user"]["id"]
    await set_role(app1, uid, "admin")
    token = (await login(one, email, PASSWORD)).json()["token"]
    assert (await one.get("/v1/admin/breakers", headers=bearer(token))).status_code == 200

    # Demoted behind the service's back (operator SQL): the old token loses admin at once.
    await set_role(app1, uid, "user")
    for client in (one, two):
        r = await client.get("/v1/admin/breakers", headers=bearer(token))
        assert r.status_code == 403 and r.json()["type"] == "forbidden"
    denied = await wait_for_event(app1, "admin.access", actor=str(uid), outcome="denied")
    assert denied.reason == "admin role revoked since login"
    assert denied.resource == "/v1/admin/breakers"
    # Not an admin for the audit trail of others either, and still a valid user.
    assert (await two.get("/v1/audit?actor=1", headers=bearer(token))).status_code == 403
    assert (await two.get("/v1/me", headers=bearer(token))).status_code == 200


async def test_a_role_change_through_the_api_revokes_every_session_fleet_wide(
        tmp_path: Path, app_factory: AppFactory) -> None:
    env = distributed_env(tmp_path, RATE_LIMIT_LOGIN="100/minute")
    app1, one = await app_factory(env)
    app2, two = await app_factory({**env, "INSTANCE_ID": env["INSTANCE_ID"] + "-b"})
    root_email, target_email = new_email(), new_email()
    _, root = await register_and_login(one, root_email)
    await set_role(app1, root["user"]["id"], "admin")
    root_token = (await login(one, root_email, PASSWORD)).json()["token"]
    _, target = await register_and_login(one, target_email)
    tid = target["user"]["id"]

    # Promotion: the user's old (non-admin) sessions end; a new login carries the role.
    r = await two.put(f"/v1/admin/users/{tid}/role", json={"role": "admin"},
                      headers=bearer(root_token))
    assert r.status_code == 200 and r.json() == {"id": tid, "role": "admin", "revoked": 1}
    tokens = [(await login(c, target_email, PASSWORD)).json()["token"] for c in (one, two)]
    for t in tokens:
        assert (await one.get("/v1/admin/breakers", headers=bearer(t))).status_code == 200

    # Demotion on instance 2: both tokens are dead on instance 1 at once (not just refused).
    r = await two.put(f"/v1/admin/users/{tid}/role", json={"role": "user"},
                      headers=bearer(root_token))
    assert r.status_code == 200 and r.json()["revoked"] == 2
    for t in tokens:
        assert (await one.get("/v1/admin/breakers", headers=bearer(t))).status_code == 401
        assert (await one.get("/v1/me", headers=bearer(t))).status_code == 401
    change = await wait_for_event(app2, "user.role_change", resource=f"user/{tid}",
                                  outcome="success", metadata={"old_role": "admin",
                                                               "new_role": "user",
                                                               "revoked": 2})
    assert change.actor == str(root["user"]["id"])

    # The same role again changes nothing and revokes nothing; unknown users are 404.
    again = await two.put(f"/v1/admin/users/{tid}/role", json={"role": "user"},
                          headers=bearer(root_token))
    assert again.json()["revoked"] == 0
    for missing in ("999999999999", "9999999999999999999"):
        r = await two.put(f"/v1/admin/users/{missing}/role", json={"role": "admin"},
                          headers=bearer(root_token))
        assert r.status_code == 404 and r.json()["type"] == "not-found"
    bad = await two.put(f"/v1/admin/users/{tid}/role", json={"role": "root"},
                        headers=bearer(root_token))
    assert bad.status_code == 422
    # A non-admin cannot use it (403, audited like every admin route).
    user_token = (await login(one, target_email, PASSWORD)).json()["token"]
    r = await one.put(f"/v1/admin/users/{tid}/role", json={"role": "admin"},
                      headers=bearer(user_token))
    assert r.status_code == 403


def test_admin_email_is_refused_at_start_up_pointing_to_admin_create() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({"ADMIN_EMAIL": "boss@example.com"})
    assert "ADMIN_EMAIL" in str(err.value) and "fleetkit admin create" in str(err.value)
    assert load_settings({"ADMIN_EMAIL": ""}).admin_email is None


async def test_registering_any_address_never_makes_an_admin(
        tmp_path: Path, app_factory: AppFactory) -> None:
    _, client = await app_factory(distributed_env(tmp_path))
    token, body = await register_and_login(client, new_email())
    assert body["user"]["role"] == "user"
    assert (await client.get("/v1/admin/breakers", headers=bearer(token))).status_code == 403
