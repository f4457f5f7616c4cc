"""Helpers for tests that need a private, killable Redis server or free ports."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

REDIS_URL = os.environ.get("FLEETKIT_TEST_REDIS_URL", "redis://127.0.0.1:6390/0")
#: ``redis://host:port`` of the standalone test server, for tests that pick a database of their own.
REDIS_SERVER = REDIS_URL.rsplit("/", 1)[0]
REDIS_ACL_URL = os.environ.get(
    "FLEETKIT_TEST_REDIS_ACL_URL", "redis://fleetkit:fleetkit-secret@127.0.0.1:6390/0"
)
SERVICES_DIR = os.environ.get("FLEETKIT_SERVICES_DIR", "/tmp/fleetkit-services")
REDIS_TLS_URL = os.environ.get(
    "FLEETKIT_TEST_REDIS_TLS_URL", f"rediss://127.0.0.1:6391/0?ssl_ca_certs={SERVICES_DIR}/tls/ca.crt"
)
REDIS_SENTINEL_URL = os.environ.get(
    "FLEETKIT_TEST_REDIS_SENTINEL_URL", "redis+sentinel://127.0.0.1:26390/fleetkit"
)
REDIS_CLUSTER_URL = os.environ.get("FLEETKIT_TEST_REDIS_CLUSTER_URL", "redis+cluster://127.0.0.1:7000")
PG_PRIMARY_URL = os.environ.get(
    "FLEETKIT_TEST_PG_PRIMARY_URL", "postgresql://fleetkit:fleetkit@127.0.0.1:5440/fleetkit"
)
PG_REPLICA_URL = os.environ.get(
    "FLEETKIT_TEST_PG_REPLICA_URL", "postgresql://fleetkit:fleetkit@127.0.0.1:5441/fleetkit"
)
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class RedisServer:
    """A private redis-server for fault tests: ``kill9()``, ``start()``, ``stop()``.

    It keeps its port across restarts so clients reconnect to the same address; ``appendonly``
    with ``appendfsync always`` so data acknowledged before a kill -9 survives the restart.
    """

    def __init__(self, workdir: Path, *, appendonly: bool = True) -> None:
        self.port = free_port()
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.appendonly = appendonly
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        assert exe, "redis-server is not installed: run scripts/services.sh start"
        args = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                "--save", "", "--daemonize", "no", "--logfile", str(self.dir / "redis.log")]
        if self.appendonly:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def kill9(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill9()
            self.proc = None
