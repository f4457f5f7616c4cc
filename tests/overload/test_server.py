"""One bounded overload of a real `fleetkit serve` (embedded mode, uvicorn).

Deterministic on any machine: the concurrency limit is pinned to 2 through settings and two
requests hold both slots (their bodies are sent only at the end), so every request of the burst
must be refused whatever the machine's speed. The test asserts behaviour, never a latency:
probes all answer 200 during the burst, the excess gets 503 problem+json with Retry-After,
critical requests still get in, and the held requests complete.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson

from tests.support import free_port, wait_port

BURST = 300
PROBES = 60


def held_register(port: int) -> socket.socket:
    """POST /v1/auth/register whose body is still on its way: it holds an admission slot."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    body_len = len(body_bytes())
    sock.sendall(b"POST /v1/auth/register HTTP/1.1\r\nHost: t\r\nContent-Type: application/json"
                 b"\r\nContent-Length: " + str(body_len).encode() + b"\r\n\r\n")
    return sock


def body_bytes() -> bytes:
    return orjson.dumps({"email": "held@example.com", "password": "correct horse battery"})


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    """Wait for a state of the server (a generous bound only turns a hang into a failure)."""
    deadline = time.monotonic() + 120
    while not predicate():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


def metric(text: str, name: str) -> float:
    total = 0.0
    for value in re.findall(rf"^{name}(?:{{[^}}]*}})? ([\d.e+-]+)$", text, re.M):
        total += float(value)
    return total


async def burst(base: str) -> tuple[list[httpx.Response], list[httpx.Response],
                                    httpx.Response]:
    limits = httpx.Limits(max_connections=BURST + PROBES + 8, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        excess = [client.get("/v1/ping") for _ in range(BURST)]
        probes = [client.get("/health/live" if i % 2 else "/health/ready")
                  for i in range(PROBES)]
        critical = client.post("/v1/auth/login",
                               json={"email": "nobody@example.com", "password": "x" * 12})
        answers = await asyncio.gather(*excess, *probes, critical)
    return list(answers[:BURST]), list(answers[BURST:BURST + PROBES]), answers[-1]


def test_probes_stay_up_and_the_excess_is_refused_fast_and_honestly(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/app.db",
           "AUDIT_SPOOL_DIR": str(tmp_path / "spool"), "LOG_LEVEL": "warning",
           "RATE_LIMIT_IP": "100000/second", "RATE_LIMIT_LOGIN": "1000/minute",
           "OVERLOAD_MIN_LIMIT": "2", "OVERLOAD_MAX_LIMIT": "2",
           "SESSION_COOKIE_SECURE": "false", "HEALTH_INTERVAL": "0.5"}
    for key in ("REDIS_URL", "DATABASE_READ_URLS", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(key, None)
    base = f"http://127.0.0.1:{port}"
    with open(tmp_path / "server.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "fleetkit.cli", "serve", "--port",
                                 str(port)], env=env, cwd=tmp_path, stdout=log, stderr=log)
        holders: list[socket.socket] = []
        try:
            wait_port(port, timeout=60)
            holders = [held_register(port) for _ in range(2)]
            # Wait (by state, not time) until both hold their slot.
            wait_until(lambda: metric(httpx.get(f"{base}/metrics", timeout=30).text,
                                      "fleetkit_overload_in_flight") == 2, "two slots held")
            excess, probes, critical = asyncio.run(burst(base))

            assert [p.status_code for p in probes] == [200] * PROBES
            for response in excess:
                assert response.status_code == 503, response.text
                assert response.headers["content-type"] == "application/problem+json"
                assert 1 <= int(response.headers["retry-after"]) <= 3
                assert orjson.loads(response.content)["type"] == "overloaded"
            # Retry-After is jittered: refused clients do not all come back at once.
            assert len({r.headers["retry-after"] for r in excess}) > 1
            # Login is critical: it has a reserve above the limit (unknown user: 401).
            assert critical.status_code == 401, critical.text

            # Health says warn while shedding (the check refreshes every HEALTH_INTERVAL);
            # readiness stays 200: a busy instance must stay in rotation.
            wait_until(lambda: httpx.get(f"{base}/health", timeout=30).json()["status"] == "warn",
                       "health warn while shedding")
            assert httpx.get(f"{base}/health/ready", timeout=30).status_code == 200
            text = httpx.get(f"{base}/metrics", timeout=30).text
            assert metric(text, "fleetkit_overload_refused_total") >= BURST

            for sock in holders:  # the held requests complete normally
                sock.sendall(body_bytes())
            statuses = []
            for sock in holders:
                head = sock.recv(65536).split(b"\r\n", 1)[0]
                statuses.append(int(head.split()[1]))
            assert sorted(statuses) == [202, 202]  # the same email twice: register never tells
        finally:
            for sock in holders:
                sock.close()
            proc.terminate()
            proc.wait(60)
    # A single uvicorn process re-raises the SIGTERM it handled once it has shut down.
    assert proc.returncode in (0, -signal.SIGTERM)
