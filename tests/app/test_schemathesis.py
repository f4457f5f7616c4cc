"""Schemathesis against the service's own OpenAPI schema: no input produces a 500.

A real ``fleetkit serve`` (embedded mode) in a subprocess; every operation is called with
generated inputs, anonymously and with a valid bearer token.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.support import free_port, wait_port

PORT = free_port()
BASE = f"http://127.0.0.1:{PORT}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("schemathesis")
    env = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{work}/app.db",
           "AUDIT_SPOOL_DIR": str(work / "spool"), "RATE_LIMIT_IP": "100000/second",
           "RATE_LIMIT_USER": "100000/second", "RATE_LIMIT_LOGIN": "100000/second",
           "SESSION_COOKIE_SECURE": "false", "LOG_LEVEL": "warning"}
    for key in ("REDIS_URL", "REDIS_RATE_LIMIT_URL", "REDIS_SESSION_URL", "DATABASE_READ_URLS"):
        env.pop(key, None)
    with open(Path(work) / "server.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fleetkit.cli", "serve", "--port", str(PORT)],
            env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=log)
        try:
            wait_port(PORT, timeout=30)
            yield BASE
        finally:
            proc.terminate()
            proc.wait(30)


@pytest.fixture(scope="module")
def token(server: str) -> str:
    creds = {"email": "fuzz@example.com", "password": "fuzzing-password"}
    httpx.post(f"{server}/v1/auth/register", json=creds, timeout=10)
    r = httpx.post(f"{server}/v1/auth/login", json=creds, timeout=10)
    r.raise_for_status()
    value: str = r.json()["token"]
    return value


def test_no_input_causes_a_server_error(server: str, token: str) -> None:
    # Driven by hand (not schemathesis' pytest plugin): one Hypothesis run per operation.
    schema = schemathesis.openapi.from_url(f"{server}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15, [op.label for op in operations]
    calls = 0

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=20, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            nonlocal calls
            for headers in ({}, {"Authorization": f"Bearer {token}"}):
                response = case.call(base_url=server, headers=headers, timeout=10)
                calls += 1
                case.validate_response(response, checks=[not_a_server_error])

        check()
    assert calls > 100
