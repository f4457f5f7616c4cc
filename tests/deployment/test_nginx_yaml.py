"""Nginx configuration (`nginx -t` for both upstream sets, then a real run in front of three
small backends) and yamllint over the deployment YAML."""

from __future__ import annotations

import http.client
import json
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.deployment.tooling import DEPLOYMENT, NGINX, ROOT, run, tool
from tests.support import free_port, wait_port


def prefix_with(tmp_path: Path, upstream: str, listen: str) -> Path:
    """A private Nginx prefix laid out as the local stack does: nginx.conf + fleetkit/*.conf."""
    prefix = tmp_path / "nginx"
    (prefix / "fleetkit").mkdir(parents=True)
    shutil.copy(NGINX / "nginx.conf", prefix / "nginx.conf")
    (prefix / "fleetkit" / "upstream.conf").write_text(upstream)
    (prefix / "fleetkit" / "listen.conf").write_text(listen)
    return prefix


def nginx_test(prefix: Path) -> subprocess.CompletedProcess[str]:
    return run(tool("nginx"), "-t", "-q", "-e", "stderr", "-p", f"{prefix}/",
               "-c", str(prefix / "nginx.conf"))


@pytest.mark.parametrize("variant", ["local", "compose"])
def test_nginx_config_is_valid(tmp_path: Path, variant: str) -> None:
    prefix = prefix_with(tmp_path, (NGINX / f"upstream.{variant}.conf").read_text(),
                         (NGINX / f"listen.{variant}.conf").read_text())
    result = nginx_test(prefix)
    assert result.returncode == 0, result.stderr


def test_nginx_t_rejects_a_broken_config(tmp_path: Path) -> None:
    prefix = prefix_with(tmp_path, "server 127.0.0.1:8101 max_fails=;\n",
                         "listen 127.0.0.1:8100;\n")
    result = nginx_test(prefix)
    assert result.returncode != 0 and "max_fails" in result.stderr


def test_local_upstream_is_the_documented_ports() -> None:
    text = (NGINX / "upstream.local.conf").read_text()
    assert [line.split()[1] for line in text.splitlines() if line.startswith("server ")] == [
        "127.0.0.1:8101", "127.0.0.1:8102", "127.0.0.1:8103"]
    assert "listen 127.0.0.1:8100" in (NGINX / "listen.local.conf").read_text()


class Echo(BaseHTTPRequestHandler):
    """Answers with its name and the request headers it received (HTTP/1.1 keep-alive)."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = json.dumps({"backend": self.server.name,  # type: ignore[attr-defined]
                           "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def balancer(tmp_path: Path) -> Iterator[tuple[int, list[ThreadingHTTPServer]]]:
    backends = []
    for i in range(3):
        server = ThreadingHTTPServer(("127.0.0.1", free_port()), Echo)
        server.name = f"app-{i + 1}"  # type: ignore[attr-defined]
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        backends.append(server)
    port = free_port()
    upstream = "".join(f"server 127.0.0.1:{s.server_address[1]} max_fails=3 fail_timeout=10s;\n"
                       for s in backends)
    prefix = prefix_with(tmp_path, upstream, f"listen 127.0.0.1:{port};\n")
    proc = subprocess.Popen([tool("nginx"), "-e", "stderr", "-p", f"{prefix}/", "-c",
                             str(prefix / "nginx.conf"), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port(port, timeout=10)
        yield port, backends
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
        for server in backends:
            server.shutdown()
            server.server_close()


def get(port: int, path: str, headers: dict[str, str] | None = None,
        method: str = "GET", body: bytes | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_nginx_balances_and_forwards_headers(
        balancer: tuple[int, list[ThreadingHTTPServer]]) -> None:
    port, _ = balancer
    seen = set()
    for _ in range(12):
        status, body = get(port, "/v1/anything")
        assert status == 200
        seen.add(json.loads(body)["backend"])
    assert seen == {"app-1", "app-2", "app-3"}

    status, body = get(port, "/v1/x", {"X-Request-ID": "req-42", "X-Forwarded-For": "203.0.113.9"})
    headers = json.loads(body)["headers"]
    assert headers["x-request-id"] == "req-42"
    # The client's claim is kept, the real peer appended last (the app trusts only the proxy).
    assert headers["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert headers["x-real-ip"] == "127.0.0.1"
    # No incoming id (or a malformed one): Nginx makes one.
    for sent in ({}, {"X-Request-ID": "bad id with spaces"}):
        generated = json.loads(get(port, "/v1/x", sent)[1])["headers"]["x-request-id"]
        assert len(generated) == 32 and int(generated, 16) >= 0
    assert json.loads(get(port, "/v1/x")[1])["headers"].get("connection") != "close"  # keepalive

    assert get(port, "/nginx-health") == (200, b"ok\n")
    assert get(port, "/metrics")[0] == 404
    assert get(port, "/v1/upload", method="POST", body=b"x" * (2 * 1024 * 1024))[0] == 413


def test_nginx_skips_a_dead_instance(balancer: tuple[int, list[ThreadingHTTPServer]]) -> None:
    port, backends = balancer
    backends[1].shutdown()
    backends[1].server_close()
    results = [get(port, "/v1/anything") for _ in range(9)]
    assert all(status == 200 for status, _ in results)
    assert {json.loads(body)["backend"] for _, body in results} == {"app-1", "app-3"}


def yaml_files() -> list[Path]:
    return [*sorted((DEPLOYMENT / "k8s").glob("*.yaml")),
            DEPLOYMENT / "docker" / "docker-compose.production.yml", ROOT / ".yamllint"]


def test_yamllint() -> None:
    result = run(tool("yamllint"), "--strict", "-c", str(ROOT / ".yamllint"),
                 *map(str, yaml_files()))
    assert result.returncode == 0, result.stdout + result.stderr


def test_yamllint_is_really_linting(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: 1\na: 2\nb:   yes\n")
    result = run(tool("yamllint"), "--strict", "-c", str(ROOT / ".yamllint"), str(bad))
    assert result.returncode != 0
    assert "key-duplicates" in result.stdout and "truthy" in result.stdout
