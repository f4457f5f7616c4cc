"""The standalone probe's exit codes and messages, as Docker runs it (a fresh process)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support import ROOT, free_port


def run_probe(*args: str, module: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = ([sys.executable, "-m", "fleetkit.health.probe"] if module
           else [str(ROOT / ".venv/bin/fleetkit"), "healthcheck"])
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=30, cwd=ROOT)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = int(self.path.rsplit("/", 1)[-1])
        body = b'{"status":"pass"}' if status == 200 else b'{"status":"fail"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/health+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@pytest.fixture(scope="module")
def http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_healthy_endpoint_exits_0(http_server: str) -> None:
    result = run_probe("--url", f"{http_server}/status/200")
    assert result.returncode == 0, result
    line = result.stdout.strip()
    assert line.startswith("OK: ") and "HTTP 200" in line and "memory" in line
    assert "uptime" in line and "\n" not in line


def test_http_503_exits_1(http_server: str) -> None:
    result = run_probe("--url", f"{http_server}/status/503")
    assert result.returncode == 1
    assert result.stdout.strip() == f"UNHEALTHY: {http_server}/status/503 answered HTTP 503"


def test_down_endpoint_exits_1() -> None:
    url = f"http://127.0.0.1:{free_port()}/health/live"
    result = run_probe("--url", url)
    assert result.returncode == 1
    assert result.stdout.startswith(f"UNHEALTHY: {url} unreachable")


def test_endpoint_that_never_answers_times_out_with_exit_1() -> None:
    with socket.socket() as listener:  # accepts connections (backlog) but never responds
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/health/live"
        result = run_probe("--url", url, "--timeout", "0.5")
    assert result.returncode == 1
    assert result.stdout.strip() == f"UNHEALTHY: {url} did not answer within 0.5s"


def test_memory_over_limit_exits_1(http_server: str) -> None:
    result = run_probe("--url", f"{http_server}/status/200", "--max-memory-percent", "0.001")
    assert result.returncode == 1
    assert "above the 0.001% limit" in result.stdout


def test_fleetkit_cli_subcommand(http_server: str) -> None:
    ok = run_probe("--url", f"{http_server}/status/200", module=False)
    down = run_probe("--url", f"http://127.0.0.1:{free_port()}/", module=False)
    assert (ok.returncode, down.returncode) == (0, 1), (ok, down)
    assert ok.stdout.startswith("OK: ")


def test_probe_imports_only_the_standard_library() -> None:
    code = ("import sys; import fleetkit.health.probe; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('fleetkit','prometheus_client','pydantic','starlette','orjson','redis')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30, cwd=ROOT, check=True).stdout.strip()
    assert out == "['fleetkit', 'fleetkit.health', 'fleetkit.health.probe', " \
                  "'fleetkit.health.status']"


def test_fleetkit_healthcheck_skips_the_other_commands() -> None:
    code = ("import sys; from fleetkit.cli import main; "
            "rc = main(['healthcheck', '--url', 'http://127.0.0.1:1/']); "
            "print(rc, sorted(m for m in ('alembic', 'sqlalchemy', 'redis', 'uvicorn', "
            "'prometheus_client', 'starlette') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30, cwd=ROOT, check=True).stdout.strip().splitlines()
    assert out[0].startswith("UNHEALTHY: http://127.0.0.1:1/ unreachable")
    assert out[1] == "1 []"
