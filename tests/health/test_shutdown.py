"""Readiness turns 503 at SIGTERM while the listener still accepts (real uvicorn process)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

import httpx

from fleetkit.health.registry import HealthRegistry
from fleetkit.health.shutdown import CloseWhileDraining
from fleetkit.types import Message, Receive, Scope, Send
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


async def _answer(begin_shutdown_while_in_flight: bool) -> list[tuple[bytes, bytes]]:
    """The response headers CloseWhileDraining lets out for one request to a slow app."""
    registry = HealthRegistry(interval=60)
    in_flight, release = asyncio.Event(), asyncio.Event()
    sent: list[Message] = []

    async def slow_app(scope: Scope, receive: Receive, send: Send) -> None:
        in_flight.set()
        await release.wait()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"connection", b"keep-alive"), (b"x-a", b"1")]})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    app = CloseWhileDraining(slow_app, registry=registry)
    task = asyncio.create_task(app({"type": "http", "http_version": "1.1"}, receive, send))
    await in_flight.wait()
    if begin_shutdown_while_in_flight:
        registry.begin_shutdown()
    release.set()
    await task
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    return list(sent[0]["headers"])


async def test_a_request_in_flight_at_sigterm_closes_its_connection() -> None:
    # The request began before the drain: its connection must not go back to the balancer's
    # pool, where it could sit idle until the listener closes under it.
    assert await _answer(True) == [(b"x-a", b"1"), (b"connection", b"close")]


async def test_no_connection_close_while_not_draining() -> None:
    assert await _answer(False) == [(b"connection", b"keep-alive"), (b"x-a", b"1")]
