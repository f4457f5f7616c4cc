"""Fuzzing every route of the service's own OpenAPI schema: no input produces a 500.

A real ``fleetkit serve`` in a subprocess, embedded (SQLite) and distributed (PostgreSQL + Redis).
Every operation is called with schemathesis' schema-conforming inputs, then with the same cases
where parameters and body fields are replaced by hostile values (issue 18 item 1): integers past
BIGINT, NUL, lone surrogates, bidi controls, astral characters, UUID look-alikes. Anonymously
and with a valid bearer token. Bounded: a fixed number of examples per operation, derandomized.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from tests.support import PG_PRIMARY_URL, REDIS_SERVER, free_port, wait_port

_HIGH = "100000/second"
_NASTY_TEXT = ["\x00", "a\x00b", "nul\u0000x@example.com", "\u202e", "<script>", " " * 3,
               "-" * 36, "a" * 36, "token=abc", "secret:1", "n" * 600, "\U0001f4a5" * 40,
               "%00", "../../etc/passwd", "0x7fffffffffffffff"]
_NASTY_INTS = [2**63, 2**63 - 1, -(2**63) - 1, 10**20, -1, 0]
# Path and query values travel in the URL: no surrogates (they have no UTF-8 form to send).
_URL_TEXT = st.one_of(st.sampled_from(_NASTY_TEXT), st.text(
    st.characters(codec="utf-8"), max_size=40), st.sampled_from([str(i) for i in _NASTY_INTS]))
# JSON bodies can carry "\ud800" escapes: lone surrogates included.
_BODY_VALUE = st.one_of(
    st.sampled_from(_NASTY_TEXT), st.sampled_from(_NASTY_INTS),
    st.text(st.characters(), max_size=40), st.sampled_from(["\ud800", "x\udfffy"]),
    st.integers(min_value=-(2**70), max_value=2**70), st.none(), st.booleans())


def _env(work: Path, mode: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (
        "REDIS_URL", "REDIS_RATE_LIMIT_URL", "REDIS_SESSION_URL", "DATABASE_READ_URLS",
        "DATABASE_URL", "TRUSTED_PROXIES", "ENVIRONMENT", "SESSION_REGIONS")}
    env.update({"AUDIT_SPOOL_DIR": str(work / "spool"), "DATA_DIR": str(work),
                "RATE_LIMIT_IP": _HIGH, "RATE_LIMIT_USER": _HIGH, "RATE_LIMIT_LOGIN": _HIGH,
                "RATE_LIMIT_LOGIN_ACCOUNT": _HIGH, "RATE_LIMIT_LOGIN_ACCOUNT_IP": _HIGH,
                "RATE_LIMIT_LOGIN_DEVICE": _HIGH, "SESSION_COOKIE_SECURE": "false",
                "SESSION_COOKIE_NAME": "session", "SESSION_MAX_PER_USER": "1000",
                "LOG_LEVEL": "warning"})
    if mode == "sqlite":
        env["DATABASE_URL"] = f"sqlite+aiosqlite:///{work}/app.db"
    else:
        env["DATABASE_URL"] = PG_PRIMARY_URL
        env["REDIS_URL"] = f"{REDIS_SERVER}/7"
    return env


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp(f"schemathesis-{request.param}")
    env = _env(work, request.param)
    if request.param == "postgresql":
        from redis import Redis

        from fleetkit.app.migrations import migrate

        asyncio.run(migrate(PG_PRIMARY_URL))
        with Redis.from_url(env["REDIS_URL"]) as r:
            r.flushdb()
    port = free_port()
    with open(work / "server.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fleetkit.cli", "serve", "--port", str(port)],
            env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=log)
        try:
            wait_port(port, timeout=60)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(30)
    text = (work / "server.log").read_text(errors="replace")
    assert "Traceback" not in text, text[-4000:]  # no 500 hid behind another status


class _Account:
    """The fuzzing user; logs in again whenever a fuzzed logout or revocation ended its token."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.creds = {"email": f"fuzz-{os.getpid()}@example.com",
                      "password": "fuzzing password 1"}
        httpx.post(f"{base}/v1/auth/register", json=self.creds, timeout=30)
        self.token = ""
        self.refresh()

    def refresh(self) -> None:
        r = httpx.post(f"{self.base}/v1/auth/login", json=self.creds, timeout=30)
        r.raise_for_status()
        self.token = r.json()["token"]

    def headers(self) -> dict[str, str]:
        if httpx.get(f"{self.base}/v1/me", headers={"Authorization": f"Bearer {self.token}"},
                     timeout=30).status_code == 401:
            self.refresh()
        return {"Authorization": f"Bearer {self.token}"}


def _mutate(case: schemathesis.Case, data: st.DataObject) -> None:
    """Replace some parameters and body fields of ``case`` with hostile values."""
    for params in (case.path_parameters, case.query):
        if params:
            for key in list(params):
                if data.draw(st.booleans()):
                    params[key] = data.draw(_URL_TEXT)
    if isinstance(case.body, dict):
        for key in list(case.body):
            if data.draw(st.booleans()):
                case.body[key] = data.draw(_BODY_VALUE)


def test_no_input_causes_a_server_error(server: str) -> None:
    # Driven by hand (not schemathesis' pytest plugin): one Hypothesis run per operation.
    schema = schemathesis.openapi.from_url(f"{server}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15, [op.label for op in operations]
    account = _Account(server)
    calls: dict[str, int] = {"schema": 0, "hostile": 0}

    auth: dict[str, str] = {}

    def call(case: schemathesis.Case, kind: str) -> None:
        for headers in ({}, auth):
            response = case.call(base_url=server, headers=headers, timeout=30)
            calls[kind] += 1
            case.validate_response(response, checks=[not_a_server_error])

    # The admin API and the routes that end the caller's session last (they only shrink
    # what the others can reach).
    operations.sort(key=lambda op: ("/admin" in op.label, "logout" in op.label,
                                    op.label.startswith("DELETE /v1/sessions")))
    for operation in operations:
        auth.clear()
        auth.update(account.headers())  # a fuzzed logout may have ended the last token

        @given(case=operation.as_strategy())
        @settings(max_examples=15, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def conforming(case: schemathesis.Case) -> None:
            call(case, "schema")

        @given(case=operation.as_strategy(), data=st.data())
        @settings(max_examples=15, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def hostile(case: schemathesis.Case, data: Any) -> None:
            _mutate(case, data)
            call(case, "hostile")

        conforming()
        hostile()
    print(f"fuzzed {len(operations)} operations: {calls['schema']} schema calls, "
          f"{calls['hostile']} hostile calls, no 5xx")  # seen with pytest -s
    assert calls["schema"] > 200 and calls["hostile"] > 200, calls
