"""`fleetkit serve` as a real process: several workers, metrics aggregated across them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support import free_port, wait_port


def test_serve_with_two_workers_aggregates_metrics(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/app.db",
           "AUDIT_SPOOL_DIR": str(tmp_path / "spool"), "LOG_LEVEL": "warning",
           "RATE_LIMIT_IP": "100000/second", "HEALTH_SHOW_DETAILS": "true"}
    for key in ("REDIS_URL", "DATABASE_READ_URLS", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(key, None)
    with open(tmp_path / "server.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "fleetkit.cli", "serve", "--port",
                                 str(port), "--workers", "2"], env=env, cwd=tmp_path,
                                stdout=log, stderr=log)
        try:
            wait_port(port, timeout=60)
            base = f"http://127.0.0.1:{port}"
            pids = set()
            sent = 0
            # A new connection each time, until both workers have answered: the kernel decides
            # which worker accepts a connection, so a fixed count could all land on one.
            while sent < 40 or (len(pids) < 2 and sent < 2000):
                with httpx.Client(base_url=base, timeout=10) as client:
                    assert client.get("/v1/ping").status_code == 200
                    sent += 1
                    health = client.get("/health/live").json()
                    pids.add(health.get("serviceId"))
            text = httpx.get(f"{base}/metrics", timeout=10).text
            counts = [float(m) for m in re.findall(
                r'fleetkit_http_requests_total\{[^}]*route="/v1/ping"[^}]*\} ([\d.e+]+)', text)]
            assert sum(counts) == sent, text[:2000]
            assert len(pids) == 2, pids  # both workers answered, and /metrics summed them
        finally:
            proc.terminate()
            proc.wait(60)
    assert proc.returncode == 0


def test_server_workers_freeze_the_start_up_heap(tmp_path: Path) -> None:
    # app_from_env (what `fleetkit serve` workers run) freezes the GC after start-up; apps
    # built in-process for tests do not (frozen objects are never freed).
    env = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/app.db",
           "AUDIT_SPOOL_DIR": str(tmp_path / "spool"), "LOG_LEVEL": "warning"}
    for key in ("REDIS_URL", "DATABASE_READ_URLS", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(key, None)
    code = """
import asyncio, gc
from fleetkit.app.main import app_from_env, create_app
from fleetkit.config import load_settings

async def frozen(app):
    async with app.router.lifespan_context(app):
        return gc.get_freeze_count()

print(asyncio.run(frozen(create_app(load_settings(), install_signal_handlers=False))))
print(asyncio.run(frozen(app_from_env())))
"""
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    plain, served = (int(x) for x in out.split()[-2:])
    assert plain == 0
    assert served > 100_000  # the libraries and the app, out of the collector's way
