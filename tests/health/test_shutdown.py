"""Readiness turns 503 at SIGTERM while the listener still accepts (real uvicorn process)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import httpx

from tests.support import ROOT, free_port, wait_port


def test_readiness_flips_to_503_at_sigterm_before_listener_closes() -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests/health/drain_app.py"), str(port),
                             "2.0"], cwd=ROOT)
    try:
        wait_port(port, timeout=20)
        url = f"http://127.0.0.1:{port}"
        # A fresh connection per request: each answer proves the listener still accepts.
        with httpx.Client(base_url=url, timeout=2.0,
                          limits=httpx.Limits(max_keepalive_connections=0)) as client:
            deadline = time.monotonic() + 10
            while client.get("/health/ready").status_code != 200:
                assert time.monotonic() < deadline, "never became ready"
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            answers = []
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    r = client.get("/health/ready")
                except httpx.TransportError:
                    break  # the listener closed: the drain delay is over
                answers.append((r.status_code, r.json()))
                if r.status_code == 503:
                    live, app = client.get("/health/live"), client.get("/")
                    assert live.status_code == 200  # the process is alive, just draining
                    assert app.status_code == 200 and app.text == "hello"  # still serving
                    break
                time.sleep(0.02)
        assert answers, "no answer after SIGTERM"
        assert answers[-1][0] == 503, answers
        assert answers[-1][1]["output"] == "shutting down"
        assert proc.wait(timeout=20) is not None  # then it does stop
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
