"""Issue 18 items 10 and 11: audit gaps, input hygiene and account enumeration, through HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetkit.app.auth import is_common_password
from tests.app.conftest import AppFactory, distributed_env, new_email, register_and_login
from tests.app.security_support import bearer, login, wait_for_event

PASSWORD = "correct horse battery"


def _full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if c.isalnum() else c for c in text)


@pytest.mark.parametrize("form", ["spaces-and-case", "full-width"])
async def test_emails_are_normalised_before_any_check(form: str, tmp_path: Path,
                                                      app_factory: AppFactory) -> None:
    _, client = await app_factory(distributed_env(tmp_path))
    email = new_email()
    local, domain = email.split("@")
    raw = (f"  {local.upper()}@{domain.upper()} " if form == "spaces-and-case"
           else f"{_full_width(local)}@{domain}")
    r = await client.post("/v1/auth/register", json={"email": raw, "password": PASSWORD})
    assert r.status_code == 202, r.text
    # NFKC folds full-width letters, the spaces go, case does not matter: one account.
    for spelling in (email, raw):
        r = await login(client, spelling, PASSWORD)
        assert r.status_code == 200, r.text
        assert r.json()["user"]["email"] == email


@pytest.mark.parametrize("email", ["evil\u202egro.example@x.com", "<script>@example.com",
                                   "a b@example.com", "a@b@example.com", "x@localhost",
                                   "\u200bzero@example.com", "nul\u0000@example.com"])
async def test_hostile_emails_get_a_clean_422(email: str, tmp_path: Path,
                                              app_factory: AppFactory) -> None:
    _, client = await app_factory(distributed_env(tmp_path))
    for path in ("/v1/auth/register", "/v1/auth/login"):
        r = await client.post(path, json={"email": email, "password": PASSWORD})
        assert r.status_code == 422, (path, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert [e["loc"][-1] for e in r.json()["errors"]] == ["email"]


async def test_common_passwords_are_refused_at_registration(
        tmp_path: Path, app_factory: AppFactory) -> None:
    _, client = await app_factory(distributed_env(tmp_path))
    assert is_common_password("Password1") and not is_common_password(PASSWORD)
    for weak in ("password1", "Qwertyuiop", "baseball", "12345678"):
        r = await client.post("/v1/auth/register", json={"email": new_email(), "password": weak})
        assert r.status_code == 422, weak
        assert "common" in r.json()["errors"][0]["msg"]


async def test_patch_without_changes_keeps_the_version(tmp_path: Path,
                                                       app_factory: AppFactory) -> None:
    _, client = await app_factory(distributed_env(tmp_path))
    token, _ = await register_and_login(client)
    item = (await client.post("/v1/items", json={"title": "t"}, headers=bearer(token))).json()
    for body in ({}, {"title": None}):
        r = await client.patch(f"/v1/items/{item['id']}", json=body, headers=bearer(token))
        assert r.status_code == 200 and r.json()["version"] == 1
    r = await client.patch(f"/v1/items/{item['id']}", json={"body": "b"}, headers=bearer(token))
    assert r.json()["version"] == 2


async def test_attempts_on_other_users_items_and_sessions_are_audited(
        tmp_path: Path, app_factory: AppFactory) -> None:
    app, client = await app_factory(distributed_env(tmp_path))
    owner, owner_body = await register_and_login(client)
    intruder, intruder_body = await register_and_login(client)
    iid = (await client.post("/v1/items", json={"title": "mine"}, headers=bearer(owner))
           ).json()["id"]
    me = str(intruder_body["user"]["id"])
    assert (await client.get(f"/v1/items/{iid}", headers=bearer(intruder))).status_code == 404
    assert (await client.patch(f"/v1/items/{iid}", json={"title": "x"},
                               headers=bearer(intruder))).status_code == 404
    assert (await client.patch(f"/v1/items/{iid}", json={},
                               headers=bearer(intruder))).status_code == 404
    assert (await client.delete(f"/v1/items/{iid}", headers=bearer(intruder))).status_code == 404
    sid = owner_body["session_id"]
    assert (await client.delete(f"/v1/sessions/{sid}", headers=bearer(intruder))
            ).status_code == 404
    for action in ("item.read", "item.update", "item.delete"):
        event = await wait_for_event(app, action, actor=me, outcome="denied")
        assert event.resource == f"item/{iid}" and event.reason == "no such item of this user"
    await wait_for_event(app, "session.revoke", actor=me, outcome="denied",
                         resource=f"session/{sid}")
    # The owner's item and session are untouched.
    assert (await client.get(f"/v1/items/{iid}", headers=bearer(owner))).status_code == 200


async def test_replaced_and_evicted_sessions_are_audited(tmp_path: Path,
                                                         app_factory: AppFactory) -> None:
    app, client = await app_factory(distributed_env(tmp_path, SESSION_MAX_PER_USER="2",
                                                    RATE_LIMIT_LOGIN="100/minute"))
    email = new_email()
    _, body = await register_and_login(client, email)
    uid = str(body["user"]["id"])
    # A browser logging in again: its previous session is revoked and that is recorded.
    client.cookies.clear()
    first = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    second = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    client.cookies.clear()
    replaced = await wait_for_event(app, "session.revoke", actor=uid,
                                    resource=f"session/{first.json()['session_id']}")
    assert replaced.reason == "replaced by a new login"
    assert replaced.metadata == {"new_session": second.json()["session_id"]}
    # The cap (2): the third live session evicts the oldest, and that is recorded too.
    for _ in range(2):
        assert (await login(client, email, PASSWORD)).status_code == 200
    evicted = await wait_for_event(app, "session.evict", actor=uid)
    assert evicted.resource == f"user/{uid}" and evicted.reason == "per-user session cap"
    assert evicted.metadata is not None and evicted.metadata["evicted"] >= 1
    assert evicted.metadata["cap"] == 2


async def test_a_token_shaped_request_id_is_not_stored(tmp_path: Path,
                                                       app_factory: AppFactory) -> None:
    app, client = await app_factory(distributed_env(tmp_path))
    token, _ = await register_and_login(client)
    for rid, kept in ((token, False), ("token=abc", False), ("req-1.edge:7", True)):
        r = await client.get(f"/v1/items/{10**12}", headers={**bearer(token), "X-Request-ID": rid})
        assert r.status_code == 404
        assert (r.headers["x-request-id"] == rid) is kept
        event = await wait_for_event(app, "item.read", request_id=r.headers["x-request-id"])
        assert (event.request_id == rid) is kept
