"""Issue 18 item 9 (rate-limit part): a route's own 429 looks exactly like the middleware's;
item 10: the middleware's 429s are audited, aggregated."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from fleetkit.audit import AuditEvent
from fleetkit.ratelimit import PROBLEM_TYPE
from tests.app.conftest import (
    AppFactory,
    distributed_env,
    embedded_env,
    new_email,
    register_and_login,
)
from tests.app.security_support import audit_events, bearer, login, wait_for_event

PROXY = "198.51.100.7/32"  # the test client's address: X-Forwarded-For names the client


def _fields(headers: object, name: str) -> list[str]:
    return [v for k, v in headers.multi_items() if k.lower() == name]  # type: ignore[attr-defined]


async def test_per_account_429_has_one_retry_after_one_ratelimit_pair_and_the_same_type(
        tmp_path: Path, app_factory: AppFactory) -> None:
    _, client = await app_factory(distributed_env(
        tmp_path, TRUSTED_PROXIES=PROXY, RATE_LIMIT_LOGIN="3/minute",
        RATE_LIMIT_LOGIN_ACCOUNT="3/minute", RATE_LIMIT_LOGIN_ACCOUNT_IP="3/minute"))
    email = new_email()
    codes = []
    for i in range(4):  # one account, a new address each time: only the account limit bites
        r = await login(client, email, "wrong-password", **{"X-Forwarded-For": f"203.0.113.{i}"})
        codes.append(r.status_code)
    assert codes == [401, 401, 401, 429]
    account = r
    # The middleware's own 429: the per-IP login policy from one address.
    for _ in range(4):
        r = await login(client, new_email(), "wrong-password",
                        **{"X-Forwarded-For": "203.0.113.200"})
    assert r.status_code == 429
    middleware = r
    for resp in (account, middleware):
        assert resp.headers["content-type"] == "application/problem+json"
        assert len(_fields(resp.headers, "retry-after")) == 1
        assert int(resp.headers["retry-after"]) >= 1
        assert len(_fields(resp.headers, "ratelimit")) == 1
        assert len(_fields(resp.headers, "ratelimit-policy")) == 1
        assert resp.json()["type"] == PROBLEM_TYPE
        assert resp.json()["status"] == 429
    # One list names every policy of the request, the account's among them.
    assert "login-account" in account.headers["ratelimit-policy"]
    assert '"login-' in account.headers["ratelimit"] and '"ip-' in account.headers["ratelimit"]
    assert account.json()["title"] == middleware.json()["title"]
    assert any(p.startswith("login-account") for p in account.json()["violated-policies"])


# --- item 10: the middleware's 429s are audited, first one per key, the rest as a count ------

async def _pings(client: httpx.AsyncClient, n: int, ip: str,
                 **headers: str) -> list[httpx.Response]:
    return [await client.get("/v1/ping", headers={"X-Forwarded-For": ip, **headers})
            for _ in range(n)]


def _deny_events(events: list[AuditEvent]) -> list[AuditEvent]:
    return [e for e in events if e.action == "ratelimit.deny"]


@pytest.mark.parametrize("mode", ["sqlite", "postgresql"])
async def test_middleware_429s_are_audited_once_per_key_then_counted(
        mode: str, tmp_path: Path, app_factory: AppFactory) -> None:
    make_env = embedded_env if mode == "sqlite" else distributed_env
    app, client = await app_factory(make_env(tmp_path, TRUSTED_PROXIES=PROXY,
                                             RATE_LIMIT_IP="3/minute"))
    flooder, other = "203.0.113.1", "203.0.113.2"
    flood = await _pings(client, 10, flooder, **{"User-Agent": "flood/1"})
    assert [r.status_code for r in flood] == [200] * 3 + [429] * 7
    assert [r.status_code for r in await _pings(client, 4, other)] == [200] * 3 + [429]

    first = await wait_for_event(app, "ratelimit.deny", resource=f"ratelimit/ip/ip:{flooder}")
    assert (first.actor, first.outcome, first.reason) == ("anonymous", "denied",
                                                          "rate limit exceeded")
    assert first.client_ip == flooder and first.user_agent == "flood/1"
    assert first.request_id == flood[3].headers["x-request-id"]  # the first 429's
    assert first.metadata is not None
    assert (first.metadata["policy"], first.metadata["method"], first.metadata["path"]) == (
        "ip", "GET", "/v1/ping")
    await wait_for_event(app, "ratelimit.deny", resource=f"ratelimit/ip/ip:{other}")
    # 8 refusals, 2 events: the repeats are only counted, until the interval ends.
    assert len(_deny_events(await audit_events(app))) == 2

    fleet = app.state.services.fleet
    await fleet.denial_audit.flush()  # what the interval's timer does at its end
    repeated = await wait_for_event(app, "ratelimit.deny", reason="repeated denials")
    assert repeated.resource == f"ratelimit/ip/ip:{flooder}" and repeated.outcome == "denied"
    assert repeated.metadata is not None
    assert repeated.metadata["count"] == 6 and repeated.metadata["policy"] == "ip"
    assert repeated.metadata["first_event"] == first.event_id
    events = _deny_events(await audit_events(app))
    assert len(events) == 3  # the other address was refused once: nothing more to count

    # A new interval: a flood of 40 more refusals is again one event, then one count.
    assert {r.status_code for r in await _pings(client, 40, flooder)} == {429}
    await fleet.denial_audit.flush()
    for _ in range(100):
        events = _deny_events(await audit_events(app))
        if len(events) == 5:
            break
        await asyncio.sleep(0.05)
    assert [(e.reason, (e.metadata or {}).get("count")) for e in events[3:]] == [
        ("rate limit exceeded", None), ("repeated denials", 39)]


async def test_denials_of_a_user_and_of_many_keys_stay_bounded(
        tmp_path: Path, app_factory: AppFactory) -> None:
    app, client = await app_factory(distributed_env(
        tmp_path, TRUSTED_PROXIES=PROXY, RATE_LIMIT_IP="2/minute",
        RATE_LIMIT_USER="2/minute", RATE_LIMIT_LOGIN="100/minute"))
    fleet = app.state.services.fleet
    # The per-user policy: the event names the user.
    token, body = await register_and_login(client)
    uid = str(body["user"]["id"])
    codes = [(await client.get("/v1/me", headers={**bearer(token), "X-Forwarded-For":
                                                    f"198.18.0.{i}"})).status_code
             for i in range(3)]
    assert codes == [200, 200, 429]
    event = await wait_for_event(app, "ratelimit.deny", resource=f"ratelimit/user/user:{uid}")
    assert event.actor == uid and event.client_ip == "198.18.0.2"

    # Many addresses (a botnet): past the key cap, refusals are one count per policy.
    fleet.denial_audit.max_keys = 3
    for i in range(5):
        assert [r.status_code for r in await _pings(client, 3, f"192.0.2.{i}")] == [200, 200,
                                                                                   429]
    await fleet.denial_audit.flush()
    over = await wait_for_event(app, "ratelimit.deny", resource="ratelimit/*")
    assert over.metadata is not None
    assert over.metadata["count"] == 3 and over.metadata["policies"] == {"ip": 3}
    assert over.reason == "denials of keys over the audit's key cap"
    firsts = [e for e in _deny_events(await audit_events(app))
              if e.reason == "rate limit exceeded"]
    # The user's, then two addresses (3 keys); the 3 other addresses are in the count.
    assert [e.resource for e in firsts] == [f"ratelimit/user/user:{uid}", *(
        f"ratelimit/ip/ip:192.0.2.{i}" for i in range(2))]
