"""A private PostgreSQL primary + streaming replica for fault tests.

The shared replica (5441) serves every engineer's tests at once, so a test that stops it, holds
it in shutdown or pauses its replay would fail theirs. Fault tests use this pair instead: a
fresh ``initdb`` in a temporary directory, a ``pg_basebackup`` of it, both on free ports, torn
down at the end of the session. As root, the server tools run as the ``postgres`` user
(PostgreSQL refuses to run as root), like ``scripts/services.sh``.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support import free_port

__all__ = ["PgCluster", "pg_bin"]

_CONF = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{sock}'
wal_level = replica
max_wal_senders = 4
wal_keep_size = 64MB
hot_standby = on
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = {max_connections}
shared_buffers = 16MB
"""


def pg_bin() -> Path:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.access(f"{candidate}/initdb", os.X_OK):
            return Path(candidate)
    found = shutil.which("initdb")
    assert found, "PostgreSQL server binaries not found: run scripts/services.sh start"
    return Path(found).parent


class PgCluster:
    """``primary_url``/``replica_url`` (user ``postgres``, database ``postgres``, trust auth)."""

    def __init__(self, *, max_connections: int = 40) -> None:
        self.max_connections = max_connections
        self.bin = pg_bin()
        self.root = Path(tempfile.mkdtemp(prefix="fleetkit-pg-"))
        self.primary_port = free_port()
        self.replica_port = free_port()
        self.primary_dir = self.root / "primary"
        self.replica_dir = self.root / "replica"
        self.sock = self.root / "sock"
        self.sock.mkdir()
        self._root_user = os.geteuid() == 0
        if self._root_user:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.sock, "postgres")
        self.primary_url = self._url(self.primary_port)
        self.replica_url = self._url(self.replica_port)

    @staticmethod
    def _url(port: int) -> str:
        return f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self._root_user:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, cwd=self.root, capture_output=True, text=True, timeout=120)
        if check:
            assert proc.returncode == 0, f"{args[0]} failed: {proc.stdout}{proc.stderr}"
        return proc

    def start(self) -> None:
        self._run("initdb", "-D", str(self.primary_dir), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
        with open(self.primary_dir / "postgresql.conf", "a") as conf:
            conf.write(_CONF.format(port=self.primary_port, sock=self.sock,
                                    max_connections=self.max_connections))
        with open(self.primary_dir / "pg_hba.conf", "w") as hba:
            hba.write("local all all trust\nhost all all 127.0.0.1/32 trust\n"
                      "local replication all trust\nhost replication all 127.0.0.1/32 trust\n")
        self.start_server(self.primary_dir, self.primary_port)
        self._run("pg_basebackup", "-h", "127.0.0.1", "-p", str(self.primary_port),
                  "-U", "postgres", "-D", str(self.replica_dir), "-R", "-X", "stream",
                  "-c", "fast", "--no-sync")
        with open(self.replica_dir / "postgresql.conf", "a") as conf:
            conf.write(f"\nport = {self.replica_port}\n")
        self.start_server(self.replica_dir, self.replica_port)
        self.wait_streaming()

    def start_server(self, data: Path, port: int) -> None:
        self._run("pg_ctl", "-D", str(data), "-l", str(self.root / f"{port}.log"), "-w",
                  "-t", "60", "start")

    def start_replica(self) -> None:
        self.start_server(self.replica_dir, self.replica_port)
        self.wait_streaming()

    def stop_replica(self, mode: str = "fast", *, wait: bool = True) -> None:
        """``pg_ctl stop -m MODE``; ``wait=False`` returns at once (a smart shutdown waits for
        every session to end, and answers new connections 57P03 meanwhile)."""
        self._run("pg_ctl", "-D", str(self.replica_dir), "-m", mode,
                  *(["-w", "-t", "60"] if wait else ["-W"]), "stop")

    def wait_stopped(self, data: Path, seconds: float = 60.0) -> None:
        deadline = time.monotonic() + seconds
        while (data / "postmaster.pid").exists():
            assert time.monotonic() < deadline, f"the server in {data} did not stop"
            time.sleep(0.05)

    def stop_primary(self, mode: str = "fast", *, wait: bool = True) -> None:
        self._run("pg_ctl", "-D", str(self.primary_dir), "-m", mode,
                  *(["-w", "-t", "60"] if wait else ["-W"]), "stop")

    def start_primary(self) -> None:
        self.start_server(self.primary_dir, self.primary_port)
        self.wait_streaming()

    def psql(self, port: int, sql: str) -> str:
        return self._run("psql", "-X", "-A", "-t", "-q", "-h", "127.0.0.1", "-p", str(port),
                         "-U", "postgres", "-d", "postgres", "-c", sql).stdout.strip()

    def wait_streaming(self, seconds: float = 60.0) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            proc = self._run("psql", "-X", "-A", "-t", "-q", "-h", "127.0.0.1",
                             "-p", str(self.primary_port), "-U", "postgres", "-d", "postgres",
                             "-c", "SELECT count(*) FROM pg_stat_replication "
                                   "WHERE state = 'streaming'", check=False)
            if proc.returncode == 0 and proc.stdout.strip() not in ("", "0"):
                return
            time.sleep(0.1)
        raise AssertionError("the private replica did not start streaming")

    def close(self) -> None:
        for data in (self.replica_dir, self.primary_dir):
            if (data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "-t", "60", "stop",
                          check=False)
        shutil.rmtree(self.root, ignore_errors=True)
