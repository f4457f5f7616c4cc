"""`fleetkit serve` accepts a burst of connections in a few event-loop iterations, not one each.

libuv (under uvloop) accepts one connection per loop iteration; on a busy loop that left a burst
of new clients waiting seconds in the kernel's accept queue (bench/overload.py measured 700
queued, up to 4 s), out of admission control's reach. Counted, not timed: the app blocks its
loop while 200 connections queue up, then reports the loop iteration at which it saw each one.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.support import ROOT, free_port, wait_port

CONNECTIONS = 200


def _wait_for(path: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while not path.exists():
        assert proc.poll() is None, "the server exited"
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.01)


def _answer(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    return data


def test_a_queued_burst_is_accepted_within_a_few_loop_iterations(tmp_path: Path) -> None:
    port = free_port()
    code = ("from fleetkit.app.server import serve; serve('tests.app.accept_app:make_app', "
            f"host='127.0.0.1', port={port}, workers=1, graceful_timeout=5, "
            "log_level='warning')")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(tmp_path / "server.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT, stdout=log,
                                stderr=log)
    clients: list[socket.socket] = []
    try:
        wait_port(port, timeout=60)
        until = tmp_path / "go"
        blocker = socket.create_connection(("127.0.0.1", port), timeout=30)
        blocker.sendall(f"GET /block?until={until} HTTP/1.1\r\nHost: t\r\n"
                        "Connection: close\r\n\r\n".encode())
        _wait_for(Path(f"{until}.blocking"), proc)
        # The loop is blocked: these complete their handshakes into the accept queue and wait.
        for _ in range(CONNECTIONS):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            sock.sendall(b"GET /seen HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            clients.append(sock)
        until.touch()
        assert _answer(blocker).startswith(b"HTTP/1.1 200")
        seen = []
        for sock in clients:
            head, _, body = _answer(sock).partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            seen.append(int(body))
        stop = socket.create_connection(("127.0.0.1", port), timeout=30)
        stop.sendall(b"GET /stop HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        _answer(stop)
        assert len(seen) == CONNECTIONS
        assert max(seen) > 0  # the iteration counter ran
        # One accept per iteration would spread them over at least 200 iterations.
        assert max(seen) - min(seen) <= 16, sorted(seen)
    finally:
        for sock in clients:
            sock.close()
        proc.terminate()
        proc.wait(timeout=30)
