"""Exactly-once rows: 200,000 events from 3 producer processes while the consumer process is
killed with kill -9 twice and Redis (appendonly + appendfsync always) is restarted once."""

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


async def _wait_rows(conn: Any, schema: str, at_least: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while (n := await row_count(conn, schema)) < at_least:
        assert time.monotonic() < deadline, f"only {n} rows after {timeout}s"
        await asyncio.sleep(0.1)
    return n


@pytest.mark.slow
async def test_exactly_once_rows_through_crashes(redis_server: RedisServer, pg: tuple[Any, str],
                                                 prefix: str, tmp_path: Path) -> None:
    conn, schema = pg
    per = [TOTAL // PRODUCERS + (1 if i < TOTAL % PRODUCERS else 0) for i in range(PRODUCERS)]
    producers = [subprocess.Popen(
        [sys.executable, "-m", "tests.audit.producer_proc", redis_server.url, prefix,
         str(tmp_path / "spool"), str(n), f"p{i}", str(tmp_path / f"ids{i}.txt")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for i, n in enumerate(per)]
    consumer = _consumer(redis_server, schema, prefix, "c1", tmp_path)
    try:
        await _wait_rows(conn, schema, 5_000, 60)
        consumer.send_signal(signal.SIGKILL)  # crash 1: restarts under the same name (own PEL)
        consumer.wait(10)
        consumer = _consumer(redis_server, schema, prefix, "c1", tmp_path)

        await _wait_rows(conn, schema, 15_000, 60)
        redis_server.kill9()  # producers spool to disk meanwhile; AOF keeps acknowledged entries
        await asyncio.sleep(1.0)
        redis_server.start()

        await _wait_rows(conn, schema, 40_000, 60)
        consumer.send_signal(signal.SIGKILL)  # crash 2: a new consumer claims c1's entries
        consumer.wait(10)
        consumer = _consumer(redis_server, schema, prefix, "c2", tmp_path)

        outputs = []
        for p in producers:
            out, _ = await asyncio.to_thread(p.communicate, timeout=90)
            outputs.append(out.decode())
            assert p.returncode == 0, outputs
        await _wait_rows(conn, schema, TOTAL, 60)
        await asyncio.sleep(1.0)  # anything still in flight would show up as an extra row
        consumer.send_signal(signal.SIGTERM)  # graceful stop
        assert consumer.wait(20) == 0
    finally:
        for p in [*producers, consumer]:
            if p.poll() is None:
                p.kill()
                p.wait(10)

    logged: set[str] = set()
    for i in range(PRODUCERS):
        ids = (tmp_path / f"ids{i}.txt").read_text().split()
        assert len(ids) == per[i]
        logged.update(ids)
    assert len(logged) == TOTAL
    stored = [str(r[0]) for r in await conn.fetch(f'SELECT event_id FROM "{schema}".audit_events')]
    assert len(stored) == TOTAL  # none twice
    assert set(stored) == logged  # exactly the logged events
    # Redis went down while they produced: every producer spooled and replayed.
    assert all(" 0 spooled" not in o for o in outputs), outputs
    assert (await verify_postgres(conn, schema)).ok
