"""Exactly-once rows: at least 200,000 events from 3 producer processes while the consumer process
is killed with kill -9 twice and Redis (appendonly + appendfsync always) is restarted once.

No timing guesses: the producers run until the test tells them to stop (tests/audit/
producer_proc.py), so they are still producing at every fault; each fault waits for the state it
needs (consumer progress in rows, every producer's own progress and its spooling, read from the
status file it rewrites after every chunk) and the test asserts that state happened.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from fleetkit.audit import verify_postgres
from tests.audit.helpers import row_count
from tests.support import PG_PRIMARY_URL, ROOT, RedisServer

TOTAL = 200_000
PRODUCERS = 3


def _consumer(server: RedisServer, schema: str, prefix: str, name: str,
              tmp: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "REDIS_URL": server.url, "DATABASE_URL": PG_PRIMARY_URL,
           "AUDIT_STREAM_SHARDS": "4", "AUDIT_MAX_DELIVERIES": "50", "INSTANCE_ID": name,
           "PYTHONPATH": str(ROOT / "src")}
    with (tmp / f"{name}.log").open("ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "fleetkit.cli", "worker", "audit", "--schema", schema,
             "--consumer", name, "--claim-idle", "1", "--prefix", prefix],
            env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=err)


def _status(tmp: Path, i: int) -> tuple[int, int, int]:
    """(logged, spooled, replayed) that producer ``i`` last reported ((0, 0, 0) before that)."""
    try:
        logged, spooled, replayed = (tmp / f"status{i}.txt").read_text().split()
    except (FileNotFoundError, ValueError):
        return 0, 0, 0
    return int(logged), int(spooled), int(replayed)


async def _wait_producers(tmp: Path, producers: list[subprocess.Popen[bytes]], what: str,
                          ok: Any, timeout: float = 60) -> None:
    """Until ``ok(status)`` holds for every producer, each of them still running."""
    deadline = time.monotonic() + timeout
    while not all(ok(_status(tmp, i)) for i in range(len(producers))):
        assert all(p.poll() is None for p in producers), f"a producer exited before {what}"
        assert time.monotonic() < deadline, \
            f"not every producer {what} within {timeout}s: " \
            f"{[_status(tmp, i) for i in range(len(producers))]}"
        await asyncio.sleep(0.05)


async def _wait_rows(conn: Any, schema: str, at_least: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while (n := await row_count(conn, schema)) < at_least:
        assert time.monotonic() < deadline, f"only {n} rows after {timeout}s"
        await asyncio.sleep(0.1)
    return n


@pytest.mark.slow
@pytest.mark.timeout(300)  # 200K+ rows through three crashes on a shared 2-core machine
async def test_exactly_once_rows_through_crashes(redis_server: RedisServer, pg: tuple[Any, str],
                                                 prefix: str, tmp_path: Path) -> None:
    conn, schema = pg
    per = [TOTAL // PRODUCERS + (1 if i < TOTAL % PRODUCERS else 0) for i in range(PRODUCERS)]
    stop = tmp_path / "stop"
    producers = [subprocess.Popen(
        [sys.executable, "-m", "tests.audit.producer_proc", redis_server.url, prefix,
         str(tmp_path / "spool"), str(n), f"p{i}", str(tmp_path / f"ids{i}.txt"),
         str(tmp_path / f"status{i}.txt"), str(stop)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for i, n in enumerate(per)]
    consumer = _consumer(redis_server, schema, prefix, "c1", tmp_path)
    try:
        await _wait_rows(conn, schema, 5_000, 60)
        consumer.send_signal(signal.SIGKILL)  # crash 1: restarts under the same name (own PEL)
        consumer.wait(10)
        consumer = _consumer(redis_server, schema, prefix, "c1", tmp_path)

        await _wait_rows(conn, schema, 15_000, 60)
        # Redis dies while every producer is producing (they run until told to stop) ...
        before = [_status(tmp_path, i)[0] for i in range(PRODUCERS)]
        redis_server.kill9()
        # ... and stays down until each of them has spooled (AOF keeps acknowledged entries).
        await _wait_producers(tmp_path, producers, "spooled", lambda s: s[1] > 0)
        during = [_status(tmp_path, i)[0] for i in range(PRODUCERS)]
        assert all(d > b for b, d in zip(before, during, strict=True)), (before, during)
        redis_server.start()

        await _wait_rows(conn, schema, 40_000, 60)
        consumer.send_signal(signal.SIGKILL)  # crash 2: a new consumer claims c1's entries
        consumer.wait(10)
        consumer = _consumer(redis_server, schema, prefix, "c2", tmp_path)
        # Still producing after both crashes and the restart, and back on Redis.
        await _wait_producers(tmp_path, producers, "replayed its spool", lambda s: s[2] > 0)
        stop.touch()

        outputs = []
        for p in producers:
            out, _ = await asyncio.to_thread(p.communicate, timeout=120)
            outputs.append(out.decode())
            assert p.returncode == 0, outputs
        total = sum(_status(tmp_path, i)[0] for i in range(PRODUCERS))
        print(f"{total} events; {[_status(tmp_path, i) for i in range(PRODUCERS)]}")
        assert total >= TOTAL
        await _wait_rows(conn, schema, total, 90)
        # Graceful stop: the consumer commits the batches in hand before it exits, so anything
        # still in flight is in the table when the counts below are taken (no sleep needed).
        consumer.send_signal(signal.SIGTERM)
        assert consumer.wait(20) == 0
    finally:
        stop.touch()
        for p in [*producers, consumer]:
            if p.poll() is None:
                p.kill()
                p.wait(10)
            if p.stdout is not None:  # a failed run leaves the pipe unread: close it here
                p.stdout.close()

    logged: set[str] = set()
    for i in range(PRODUCERS):
        ids = (tmp_path / f"ids{i}.txt").read_text().split()
        assert len(ids) >= per[i]
        assert len(ids) == _status(tmp_path, i)[0]
        logged.update(ids)
    assert len(logged) == total
    stored = [str(r[0]) for r in await conn.fetch(f'SELECT event_id FROM "{schema}".audit_events')]
    assert len(stored) == total  # none twice
    assert set(stored) == logged  # exactly the logged events
    # Redis went down while they produced: every producer spooled and replayed.
    assert all(" 0 spooled" not in o for o in outputs), outputs
    assert (await verify_postgres(conn, schema)).ok
