"""Issue 18 items 3, 6, 7 and 9 through a real ``fleetkit serve`` process.

- item 3: ``X-Forwarded-For`` from 127.0.0.1 does not pick the client's address while
  ``TRUSTED_PROXIES`` is empty (uvicorn's own proxy-header handling trusted 127.0.0.1);
- item 9: no ``Server`` header, a 4 MB header is 431, a chunked body over the limit is 413, a
  head that never ends is refused by the server once over ``MAX_HEADER_BYTES``;
- item 3 also: with ``TRUSTED_PROXIES`` set, the proxy's entry is the client, for uvicorn and
  fleetkit alike;
- items 5, 6 and 7: a bad setting (``ADMIN_EMAIL`` among them) stops ``fleetkit serve`` with
  one line naming it, no traceback, no password.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import free_port, wait_port

_DATASTORE_ENV = ("REDIS_URL", "REDIS_RATE_LIMIT_URL", "REDIS_SESSION_URL", "DATABASE_URL",
                  "DATABASE_READ_URLS", "PROMETHEUS_MULTIPROC_DIR", "SESSION_REGIONS",
                  "TRUSTED_PROXIES", "ENVIRONMENT", "FORWARDED_ALLOW_IPS")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DATASTORE_ENV}
    return {**env, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/app.db",
            "AUDIT_SPOOL_DIR": str(tmp_path / "spool"), "LOG_LEVEL": "warning",
            "SESSION_COOKIE_SECURE": "false", "SESSION_COOKIE_NAME": "session", **extra}


@contextlib.contextmanager
def _serve(tmp_path: Path, **extra: str) -> Iterator[str]:
    port = free_port()
    env = _env(tmp_path, RATE_LIMIT_IP="20/minute", RATE_LIMIT_LOGIN="1000/minute",
               MAX_BODY_BYTES="4096", **extra)
    with open(tmp_path / "server.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "fleetkit.cli", "serve", "--port",
                                 str(port)], env=env, cwd=tmp_path, stdout=log, stderr=log)
        try:
            wait_port(port, timeout=60)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(60)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    with _serve(tmp_path) as url:
        yield url


def _audit_rows(db: Path, action: str) -> list[tuple[str | None, str | None]]:
    """(client_ip, metadata) of the embedded sink's rows of ``action``, waiting for one."""
    rows: list[tuple[str | None, str | None]] = []
    for _ in range(100):  # the sink writes in the background: bounded polling
        try:
            with sqlite3.connect(db) as conn:
                rows = conn.execute("SELECT client_ip, metadata FROM audit_events "
                                    "WHERE action = ?", (action,)).fetchall()
        except sqlite3.OperationalError:  # table not created yet
            rows = []
        if rows:
            return rows
        time.sleep(0.1)
    return rows


def test_forwarded_for_from_localhost_is_not_the_client(served: str, tmp_path: Path) -> None:
    with httpx.Client(base_url=served, timeout=10) as client:
        # Audited requests first (the per-IP budget is 20 a minute for everything).
        r = client.post("/v1/auth/login", json={"email": "x@example.com", "password": "wrong pw!"},
                        headers={"X-Forwarded-For": "evil-not-an-ip"})
        assert r.status_code == 401
        r = client.post("/v1/auth/login", json={"email": "y@example.com", "password": "wrong pw!"},
                        headers={"X-Forwarded-For": "203.0.113.66"})
        assert r.status_code == 401
        codes = [client.get("/v1/ping", headers={"X-Forwarded-For": f"198.51.100.{i}"}
                            ).status_code for i in range(25)]
        assert r.headers.get("server") is None
    assert codes.count(429) >= 5, codes  # one budget for 127.0.0.1, whatever XFF says
    assert set(codes) == {200, 429}
    rows = _audit_rows(tmp_path / "app.db", "auth.login")
    assert len(rows) == 2, rows  # both failed logins recorded, the garbage address included
    assert {ip for ip, _ in rows} == {"127.0.0.1"}  # the peer, never the spoofed entries


def test_forwarded_for_from_a_trusted_proxy_is_the_client(tmp_path: Path) -> None:
    # The same one setting turns uvicorn's proxy headers on, for exactly those proxies.
    with _serve(tmp_path, TRUSTED_PROXIES="127.0.0.1/32") as served, \
            httpx.Client(base_url=served, timeout=10) as client:
        r = client.post("/v1/auth/login", json={"email": "y@example.com", "password": "wrong pw!"},
                        headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.66"})
        assert r.status_code == 401
        codes = [client.get("/v1/ping", headers={"X-Forwarded-For": f"198.51.100.{i}"}
                            ).status_code for i in range(25)]
        assert set(codes) == {200}  # one budget per client behind the proxy
        rows = _audit_rows(tmp_path / "app.db", "auth.login")
    assert [ip for ip, _ in rows] == ["203.0.113.66"]  # the entry the proxy appended


def test_protocol_limits_on_the_real_server(served: str) -> None:
    with httpx.Client(base_url=served, timeout=30) as client:
        r = client.get("/v1/ping")
        assert r.status_code == 200
        assert "server" not in r.headers
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["date"]
        big = client.get("/v1/ping", headers={"x-big": "a" * (4 * 1024 * 1024)})
        assert big.status_code == 431, big.text
        assert big.headers["content-type"] == "application/problem+json"

        def chunks() -> Iterator[bytes]:
            yield b'{"email": "a@example.com", "password": "'
            for _ in range(8):
                yield b"x" * 1024
            yield b'"}'

        r = client.post("/v1/auth/register", content=chunks(),
                        headers={"content-type": "application/json"})
        assert r.request.headers["transfer-encoding"] == "chunked"
        assert r.status_code == 413, r.text
        assert r.json()["type"] == "body-too-large"


def test_the_server_refuses_an_oversized_head_before_it_ends(served: str) -> None:
    # The head never ends (no blank line): an app-level check would never run, the server
    # would buffer all of it. fleetkit serve's protocol answers once MAX_HEADER_BYTES is past.
    host, port = served.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"GET /v1/ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (512 * 1024))
        reply = b""
        while True:  # the server closes after the 431 (or at EOF of its lingering read)
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 "), reply[:200]
    fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
    assert fields[b"content-type"] == b"application/problem+json"
    assert fields[b"x-content-type-options"] == b"nosniff"
    assert fields[b"connection"] == b"close" and len(fields[b"x-request-id"]) == 32
    assert b"server" not in fields
    assert json.loads(body)["type"] == "headers-too-large"
    # The server still answers (the refusal closed one connection, nothing else).
    assert httpx.get(f"{served}/v1/ping", timeout=10).status_code == 200


_KEY = "k" * 40


@pytest.mark.parametrize(("extra", "named", "secret"), [
    ({"RATE_LIMIT_IP": "0/second"}, "RATE_LIMIT_IP", None),
    ({"ADMIN_EMAIL": "boss@example.com"}, "ADMIN_EMAIL", None),  # item 5
    ({"RATE_LIMIT_USER": "5/0minute"}, "RATE_LIMIT_USER", None),
    ({"SESSION_REGIONS": "eu-west redis://:regionpass@127.0.0.1:1"}, "SESSION_REGIONS",
     "regionpass"),
    ({"REDIS_URL": "foo://:se/cret@127.0.0.1:1"}, "REDIS_URL", "se/cret"),
    ({"REDIS_URL": "foo://user:p@ss@127.0.0.1:1"}, "REDIS_URL", "p@ss"),
    ({"SESSION_COOKIE_NAME": "a;b"}, "SESSION_COOKIE_NAME", None),
    ({"ENVIRONMENT": "production", "SECRET_KEY": _KEY}, "SESSION_COOKIE_SECURE", None),
    ({"ENVIRONMENT": "production", "SECRET_KEY": _KEY, "SESSION_COOKIE_SECURE": "true"},
     "DATABASE_URL", None),
    ({"ENVIRONMENT": "production", "SECRET_KEY": _KEY, "SESSION_COOKIE_SECURE": "true",
      "DATABASE_URL": "postgresql+asyncpg://u:dbpass@127.0.0.1:1/x"}, "REDIS_URL", "dbpass"),
])
def test_bad_settings_stop_serve_naming_the_setting(tmp_path: Path, extra: dict[str, str],
                                                    named: str, secret: str | None) -> None:
    port = free_port()
    done = subprocess.run([sys.executable, "-m", "fleetkit.cli", "serve", "--port", str(port)],
                          env=_env(tmp_path, **extra), cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert f"{named}:" in out, out
    assert "Traceback" not in out, out
    assert len(out.splitlines()) <= 6, out
    if secret is not None:
        assert secret not in out, out
