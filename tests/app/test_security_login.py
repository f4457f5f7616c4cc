"""Issue 18 items 8 and 11 (token keying): login protection that cannot be turned against the
real user, and session tokens that do not reveal who they belong to."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from fleetkit.app.keys import Keys
from fleetkit.config import load_settings
from fleetkit.errors import ConfigError
from fleetkit.sessions.tokens import make_route, parse_token
from tests.app.conftest import AppFactory, distributed_env, new_email, register_and_login
from tests.app.security_support import audit_events, bearer, login, wait_for_event

PROXY = "198.51.100.7/32"  # the test client: X-Forwarded-For names the client address
PASSWORD = "correct horse battery"
HOME = "192.0.2.10"


def _env(tmp_path: Path, account: str = "5/hour") -> dict[str, str]:
    return distributed_env(tmp_path, TRUSTED_PROXIES=PROXY, RATE_LIMIT_LOGIN="100/minute",
                           RATE_LIMIT_LOGIN_ACCOUNT=account, RATE_LIMIT_LOGIN_ACCOUNT_IP="3/hour",
                           RATE_LIMIT_LOGIN_DEVICE="3/hour")


def _device_cookie(r: httpx.Response) -> str:
    found = [c.split(";", 1)[0] for c in r.headers.get_list("set-cookie")
             if c.startswith("__Host-device=")]
    assert len(found) == 1, r.headers.get_list("set-cookie")
    return found[0]


async def _try(client: httpx.AsyncClient, email: str, password: str, ip: str,
               cookie: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": ip}
    if cookie:
        headers["Cookie"] = cookie
    return await login(client, email, password, **headers)


async def test_rotating_addresses_cannot_lock_out_a_known_device_or_address(
        tmp_path: Path, app_factory: AppFactory) -> None:
    app, client = await app_factory(_env(tmp_path))
    email = new_email()
    r = await client.post("/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert r.status_code in (201, 202)
    first = await _try(client, email, PASSWORD, HOME)  # 1 of the account's 5
    assert first.status_code == 200
    device = _device_cookie(first)
    attrs = next(c for c in first.headers.get_list("set-cookie") if c.startswith("__Host-dev"))
    for attr in ("Path=/", "HttpOnly", "SameSite=Strict", "Secure"):
        assert attr in attrs

    # An attacker rotating addresses: the per-account limit (5/hour) bites on the 6th try.
    codes = [(await _try(client, email, "wrong-password", f"203.0.113.{i}")).status_code
             for i in range(1, 6)]
    assert codes == [401, 401, 401, 401, 429]
    # ... for every client this account does not know, whatever the password.
    assert (await _try(client, email, PASSWORD, "203.0.113.77")).status_code == 429
    # A cookie for another account, or a forged one, is no key.
    other_email = new_email()
    await client.post("/v1/auth/register", json={"email": other_email, "password": PASSWORD})
    other = _device_cookie(await _try(client, other_email, PASSWORD, "203.0.113.90"))
    for cookie in (other, device[:-2] + "xx"):
        assert (await _try(client, email, PASSWORD, "203.0.113.78", cookie)).status_code == 429

    # The real user is not locked out: from the address of a live session, without cookie ...
    assert (await _try(client, email, PASSWORD, HOME)).status_code == 200
    # ... and from a new address with the device cookie of an earlier login.
    roaming = await _try(client, email, PASSWORD, "198.18.0.1", device)
    assert roaming.status_code == 200
    assert _device_cookie(roaming) == device  # the device keeps its id

    # A stolen device cookie has a limit of its own (3/hour; one used just above).
    stolen = [(await _try(client, email, "wrong-password", f"198.18.1.{i}", device)).status_code
              for i in range(3)]
    assert stolen == [401, 401, 429]

    # Denials are audited with a keyed hash of the targeted account, never the address.
    keys = Keys.from_secret(app.state.settings.secret_key.get_secret_value().encode())
    denied = await wait_for_event(app, "auth.login", outcome="denied",
                                  reason="too many attempts for this account")
    assert denied.metadata == {"account": keys.account_hash(email), "policy": "login-account"}
    assert denied.metadata["account"] != Keys.from_secret(b"another-secret").account_hash(email)
    device_denied = await wait_for_event(app, "auth.login", outcome="denied",
                                         reason="too many attempts from this device")
    assert device_denied.metadata["policy"] == "login-device"
    for event in await audit_events(app):
        assert email.encode() not in event.encode()


async def test_one_address_guessing_one_account_is_stopped_without_locking_the_account(
        tmp_path: Path, app_factory: AppFactory) -> None:
    app, client = await app_factory(_env(tmp_path, account="20/hour"))
    email = new_email()
    await client.post("/v1/auth/register", json={"email": email, "password": PASSWORD})
    codes = [(await _try(client, email, "wrong-password", "203.0.113.50")).status_code
             for _ in range(4)]
    assert codes == [401, 401, 401, 429]  # 3/hour for this account from this address
    r = await _try(client, email, "wrong-password", "203.0.113.50")
    assert r.status_code == 429 and r.json()["violated-policies"][0].startswith(
        "login-account-ip")
    # The same address may still try other accounts, and the owner logs in from elsewhere.
    assert (await _try(client, new_email(), "wrong-password", "203.0.113.50")).status_code == 401
    assert (await _try(client, email, PASSWORD, "203.0.113.51")).status_code == 200
    event = await wait_for_event(app, "auth.login", outcome="denied",
                                 reason="too many attempts for this account from this address")
    assert event.metadata is not None and event.metadata["policy"] == "login-account-ip"


async def test_token_route_is_keyed_by_the_secret_and_shared_by_the_fleet(
        tmp_path: Path, app_factory: AppFactory) -> None:
    env = distributed_env(tmp_path)
    _, one = await app_factory(env)
    _, two = await app_factory({**env, "INSTANCE_ID": env["INSTANCE_ID"] + "-b"})
    token, body = await register_and_login(one)
    uid = str(body["user"]["id"])
    parsed = parse_token(token)
    assert parsed is not None
    keys = Keys.from_secret(env["SECRET_KEY"].encode())
    assert parsed.route == make_route(uid, keys.route)
    assert parsed.route != make_route(uid)  # the unkeyed hash anyone could compute
    assert parsed.route != make_route(uid, Keys.from_secret(b"x" * 32).route)
    # Every instance derives the same route from the shared secret: lists and revokes work
    # on an instance that did not mint the token.
    listed = await two.get("/v1/sessions", headers=bearer(token))
    assert [s["id"] for s in listed.json()] == [body["session_id"]]
    assert (await two.delete(f"/v1/sessions/{body['session_id']}", headers=bearer(token))
            ).status_code == 204
    assert (await one.get("/v1/me", headers=bearer(token))).status_code == 401


def test_secret_key_is_required_in_production_and_must_be_long() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({"ENVIRONMENT": "production"})
    assert "SECRET_KEY: required in production" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_settings({"SECRET_KEY": "short-secret"})
    assert "SECRET_KEY" in str(err.value) and "short-secret" not in str(err.value)
