"""The app at the top of docs/integration.md, saved as app.py and served by uvicorn against the
real Redis and PostgreSQL, does everything the page says: RateLimit fields and a 429, the
session cookie and a per-user limit, a fleet-wide breaker, the audit row in PostgreSQL with the
request id, health and metrics."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

from fleetkit.app.migrations import migrate
from fleetkit.audit import AuditConsumer
from fleetkit.breaker import CircuitBreaker
from fleetkit.redis import create_client
from tests.docs.runner import ROOT, blocks_of
from tests.support import PG_PRIMARY_URL, REDIS_URL, free_port, wait_port

PAGE = ROOT / "docs" / "integration.md"
#: Names that make a line "fleetkit code" (the page promises at most 15 such lines).
_FLEETKIT = re.compile(r"fleetkit|install\(|fleet\b|fleet\.|payments|CurrentSession|SessionHandle"
                       r"|rate_limited|handle\.|AuditEvent|get_request_id")
REDIS_DB = 10


def _app_source() -> str:
    first = blocks_of(PAGE)[0]
    assert first.run and first.source.lstrip().startswith('"""app.py'), first.where
    return first.source


def test_the_app_uses_at_most_15_lines_of_fleetkit_code() -> None:
    code = [line for line in _app_source().splitlines()
            if line.strip() and not line.lstrip().startswith(("#", '"""'))]
    body = code[code.index("from fastapi import FastAPI"):]  # after the module docstring
    fleetkit_lines = [line for line in body if _FLEETKIT.search(line.split("#")[0])]
    assert 8 <= len(fleetkit_lines) <= 15, fleetkit_lines


async def _flush(url: str) -> None:
    client = create_client(url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


async def _exercise(base: str, redis_url: str) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        assert (await http.get("/health/ready")).status_code == 200
        assert (await http.get("/me")).status_code == 401
        logins = [await http.post("/login", params={"name": "ada"}) for _ in range(4)]
        assert [r.status_code for r in logins] == [200, 200, 200, 429]
        first, denied = logins[0], logins[3]
        for r in logins:  # one pair of fields, the route's limit and the global policies
            assert len(r.headers.get_list("ratelimit")) == 1, r.headers
            assert len(r.headers.get_list("ratelimit-policy")) == 1
        assert '"login-' in first.headers["ratelimit"] and '"ip-' in first.headers["ratelimit"]
        assert denied.headers["content-type"] == "application/problem+json"
        assert int(denied.headers["retry-after"]) > 0
        cookie = first.headers["set-cookie"]
        assert cookie.startswith("__Host-session=") and "HttpOnly" in cookie
        assert "Secure" in cookie
        request_id = first.headers["x-request-id"]
        auth = {"Authorization": f"Bearer {first.json()['token']}"}
        codes = [(await http.get("/me", headers=auth)).status_code for _ in range(5)]
        assert codes == [200, 200, 200, 200, 429]  # RATE_LIMIT_USER=4/minute, per user

        # The breaker is fleet-wide: another process forces it open, the app refuses.
        redis = create_client(redis_url)
        other = CircuitBreaker("payments", redis=redis)
        try:
            await other.start()
            assert (await http.post("/pay", headers={"Authorization": "Bearer x"})
                    ).status_code == 401
            # The login limit counts per IP: bob comes through the (trusted) proxy.
            fresh = await http.post("/login", params={"name": "bob"},
                                    headers={"X-Forwarded-For": "198.51.100.1"})
            assert fresh.status_code == 200
            bob = {"Authorization": f"Bearer {fresh.json()['token']}"}
            assert (await http.post("/pay", headers=bob)).status_code == 200
            await other.force_open()
            async with asyncio.timeout(10):
                while (refused := await http.post("/pay", headers=bob)).status_code != 503:
                    await asyncio.sleep(0.05)
            assert refused.headers["content-type"] == "application/problem+json"
            assert int(refused.headers["retry-after"]) >= 1
            await other.reset()
        finally:
            await other.aclose()

        # The audit event reaches PostgreSQL through the consumer (`fleetkit worker audit`).
        consumer = AuditConsumer(redis=redis, database_url=PG_PRIMARY_URL, consumer="docs")
        task = asyncio.create_task(consumer.run())
        conn = await asyncpg.connect(PG_PRIMARY_URL)
        try:
            async with asyncio.timeout(30):
                while not await conn.fetchval(
                        "SELECT count(*) FROM audit_events WHERE request_id = $1", request_id):
                    await asyncio.sleep(0.1)
            row = await conn.fetchrow("SELECT actor, action, outcome FROM audit_events "
                                      "WHERE request_id = $1", request_id)
            assert dict(row) == {"actor": "ada", "action": "session.create",
                                 "outcome": "success"}
        finally:
            consumer.stop()
            await task
            await conn.close()
            await redis.aclose()

        metrics = (await http.get("/metrics")).text
        assert re.search(r'fleetkit_http_requests_total\{method="GET",route="/me",'
                         r'status="200"\} 4\.0', metrics), metrics[:3000]
        body = (await http.get("/health")).json()
        assert body["status"] in ("pass", "warn")


def test_the_integration_app_served_by_uvicorn(tmp_path: Path) -> None:
    redis_url = urlunsplit(urlsplit(REDIS_URL)._replace(path=f"/{REDIS_DB}"))
    asyncio.run(_flush(redis_url))
    # What `fleetkit migrate` does before a deploy (this database holds the service's tables too).
    asyncio.run(migrate(PG_PRIMARY_URL))
    (tmp_path / "app.py").write_text(_app_source())
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REDIS_", "DATABASE_", "RATE_LIMIT_", "SESSION_", "AUDIT_"))}
    env.update({"REDIS_URL": redis_url, "DATABASE_URL": PG_PRIMARY_URL,
                "DATA_DIR": str(tmp_path / "data"), "RATE_LIMIT_USER": "4/minute",
                "TRUSTED_PROXIES": "127.0.0.1/32", "LOG_LEVEL": "warning"})
    with open(tmp_path / "server.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "app:app", "--port", str(port)],
                                cwd=tmp_path, env=env, stdout=log, stderr=log)
        try:
            wait_port(port, timeout=60)
            asyncio.run(_exercise(f"http://127.0.0.1:{port}", redis_url))
        finally:
            proc.terminate()
            proc.wait(60)
    output = (tmp_path / "server.log").read_text()
    assert proc.returncode in (0, -15), output  # uvicorn re-raises the SIGTERM it handled
    assert "Application shutdown complete" in output
    assert "Traceback" not in output, output
    # Nothing written next to app.py: embedded files would go to DATA_DIR.
    assert {p.name for p in tmp_path.iterdir()} <= {"app.py", "server.log", "__pycache__", "data"}
