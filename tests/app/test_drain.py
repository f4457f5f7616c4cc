"""`fleetkit serve` draining after SIGTERM resets no connection a balancer may have sent on.

A real server process (embedded mode). While it drains every answer closes its connection; a
connection accepted before the listener closed gets its request answered after the close (stock
uvicorn closes such a connection at shutdown, which a balancer sees as a failed POST).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support import free_port, wait_port


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_drain_closes_after_each_answer_and_answers_an_open_connection(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/app.db",
           "AUDIT_SPOOL_DIR": str(tmp_path / "spool"), "LOG_LEVEL": "warning",
           "SHUTDOWN_DELAY": "1.5", "GRACEFUL_TIMEOUT": "20"}
    for key in ("REDIS_URL", "DATABASE_READ_URLS", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(key, None)
    with open(tmp_path / "server.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "fleetkit.cli", "serve", "--port",
                                 str(port)], env=env, cwd=tmp_path, stdout=log, stderr=log)
    idle = None
    try:
        wait_port(port, timeout=60)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            r = client.get("/v1/ping")
            assert r.status_code == 200 and "connection" not in r.headers  # kept alive
            # Accepted by the server, no request yet (as a balancer's fresh connection is).
            idle = socket.create_connection(("127.0.0.1", port), timeout=10)
            proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            while client.get("/health/ready").status_code != 503:
                assert time.monotonic() < deadline, "readiness never turned 503"
            r = client.get("/v1/ping")
            assert r.status_code == 200 and r.headers["connection"] == "close"
        deadline = time.monotonic() + 20
        while not _refused(port):
            assert time.monotonic() < deadline, "the listener never closed"
            time.sleep(0.05)
        assert proc.poll() is None  # still running: it waits for the open connection
        idle.sendall(b"GET /v1/ping HTTP/1.1\r\nHost: test\r\n\r\n")
        answer = b""
        while chunk := idle.recv(65536):
            answer += chunk
        head = answer.split(b"\r\n\r\n", 1)[0].lower()
        assert head.startswith(b"http/1.1 200"), answer
        assert b"\r\nconnection: close" in head, answer
        # uvicorn re-raises the SIGTERM it handled once it is done: a clean exit either way.
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if idle is not None:
            idle.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
