"""Nginx in front of instances shedding load: an idempotent request refused with 503 by one busy
instance is tried once more on another, a POST never is, and a busy instance is not taken out of
the rotation (a fleet-wide overload stays 503, never 502 "no live upstreams")."""

from __future__ import annotations

import http.client
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.deployment.test_nginx_yaml import prefix_with
from tests.deployment.tooling import tool
from tests.support import free_port, wait_port

Balancer = Callable[[list[bool]], tuple[int, list[ThreadingHTTPServer]]]


class Backend(BaseHTTPRequestHandler):
    """200 when the server is healthy, else admission control's 503; counts what it got."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        server = self.server
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        with server.lock:  # type: ignore[attr-defined]
            server.hits.append(self.command)  # type: ignore[attr-defined]
        if server.busy:  # type: ignore[attr-defined]
            body = b'{"type":"overloaded","status":503}'
            self.send_response(503)
            self.send_header("Content-Type", "application/problem+json")
            self.send_header("Retry-After", "2")
        else:
            body = b"ok"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def balancer(tmp_path: Path) -> Iterator[Balancer]:
    started: list[tuple[subprocess.Popen[bytes], list[ThreadingHTTPServer]]] = []

    def start(busy: list[bool]) -> tuple[int, list[ThreadingHTTPServer]]:
        backends = []
        for flag in busy:
            server = ThreadingHTTPServer(("127.0.0.1", free_port()), Backend)
            server.busy = flag  # type: ignore[attr-defined]
            server.hits = []  # type: ignore[attr-defined]
            server.lock = threading.Lock()  # type: ignore[attr-defined]
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()
            backends.append(server)
        port = free_port()
        upstream = "".join(f"server 127.0.0.1:{s.server_address[1]} max_fails=3 "
                           "fail_timeout=10s;\n" for s in backends)
        prefix = prefix_with(tmp_path, upstream, f"listen 127.0.0.1:{port};\n")
        proc = subprocess.Popen([tool("nginx"), "-e", "stderr", "-p", f"{prefix}/", "-c",
                                 str(prefix / "nginx.conf"), "-g", "daemon off;"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append((proc, backends))
        wait_port(port, timeout=10)
        return port, backends

    yield start
    for proc, backends in started:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
        for server in backends:
            server.shutdown()
            server.server_close()


def call(port: int, method: str, path: str = "/v1/me") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=b"{}" if method != "GET" else None)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def hits(server: ThreadingHTTPServer, method: str) -> int:
    return server.hits.count(method)  # type: ignore[attr-defined]


def test_an_idempotent_request_refused_by_a_busy_instance_is_retried_elsewhere(
        balancer: Balancer) -> None:
    port, (busy, ok1, ok2) = balancer([True, False, False])
    for _ in range(3):  # three rounds: far more 503s than max_fails, and still in rotation
        answers = [call(port, "GET") for _ in range(12)]
        assert [a[0] for a in answers] == [200] * 12
    assert hits(busy, "GET") >= 3 * 3  # the busy one was asked (not taken out) each round
    assert hits(ok1, "GET") + hits(ok2, "GET") == 36  # each request served once, elsewhere


def test_a_post_refused_with_503_is_not_retried(balancer: Balancer) -> None:
    port, (busy, ok1, ok2) = balancer([True, False, False])
    answers = [call(port, "POST", "/v1/items") for _ in range(30)]
    refused = [a for a in answers if a[0] == 503]
    assert refused and len(refused) == hits(busy, "POST")  # the busy instance's answers, once
    assert hits(busy, "POST") + hits(ok1, "POST") + hits(ok2, "POST") == 30  # nothing twice
    for _, headers, body in refused:
        assert headers["content-type"] == "application/problem+json"
        assert 1 <= int(headers["retry-after"]) <= 3
        assert b'"overloaded"' in body


def test_a_fleet_wide_overload_is_one_retry_then_503_never_502(balancer: Balancer) -> None:
    port, backends = balancer([True, True, True])
    answers = [call(port, "GET") for _ in range(20)]
    assert {a[0] for a in answers} == {503}  # still the instances' refusal, not "no upstream"
    assert all(a[1]["content-type"] == "application/problem+json" for a in answers)
    # Exactly two attempts per request: a retry, never a storm.
    assert sum(hits(s, "GET") for s in backends) == 40
