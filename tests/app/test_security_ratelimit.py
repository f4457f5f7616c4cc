"""Issue 18 item 9 (rate-limit part): a route's own 429 looks exactly like the middleware's."""

from __future__ import annotations

from pathlib import Path

from fleetkit.ratelimit import PROBLEM_TYPE
from tests.app.conftest import AppFactory, distributed_env, new_email
from tests.app.security_support import login

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
