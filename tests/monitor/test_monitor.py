"""The session monitor worker process: cleanup, metrics, supervision, fleet-wide lease."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY

from fleetkit.monitor import SessionMonitor
from fleetkit.redis import create_client
from fleetkit.sessions import SessionStore
from tests.sessions.conftest import SESSIONS_REDIS_URL as REDIS_URL
from tests.support import REDIS_CLUSTER_URL, ROOT


async def _wait(predicate: Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return False


@pytest.mark.parametrize("url", [REDIS_URL, REDIS_CLUSTER_URL], ids=["redis", "cluster"])
async def test_cleanup_pass_prunes_and_reports(url: str) -> None:
    prefix = f"mon{uuid.uuid4().hex[:8]}:"
    client = create_client(url, role="sessions")
    store = SessionStore(redis=client, prefix=prefix, idle_ttl=0.3, absolute_ttl=60,
                         max_per_user=10)
    keep = SessionStore(redis=client, prefix=prefix, idle_ttl=60, absolute_ttl=60,
                        max_per_user=10)
    try:
        for i in range(40):  # 40 users with 2 short sessions each (will expire)
            await store.create(f"user{i}")
            await store.create(f"user{i}")
        for i in range(30):  # 30 users with 3 long ones
            for _ in range(3):
                await keep.create(f"keeper{i}")
        await asyncio.sleep(0.5)
        assert await client.zcard(store.index_key("user0")) == 2  # dead entries still indexed

        ticks: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            while not stop.is_set():
                ticks.append(time.perf_counter())
                await asyncio.sleep(0.005)

        tick_task = asyncio.create_task(ticker())
        monitor = SessionMonitor(redis_url=url, prefix=prefix, instance_id=prefix,
                                 interval=0.5, heartbeat_interval=0.2, scan_count=50)
        async with monitor:
            assert await _wait(lambda: any(p["expired"] for p in monitor.passes))
            health = await monitor.health()
        stop.set()
        await tick_task
        first = next(p for p in monitor.passes if p["expired"])
        assert first["expired"] == 80
        assert first["sessions"] == 90 and first["users"] == 30
        assert first["buckets"]["3-5"] == 30
        assert await client.exists(store.index_key("user0")) == 0
        assert await client.zcard(keep.index_key("keeper0")) == 3
        assert health.status == "pass"
        assert REGISTRY.get_sample_value("fleetkit_monitor_sessions_active") is not None
        lags = [b - a - 0.005 for a, b in itertools.pairwise(ticks)]
        # Reported, not asserted on speed: the main loop kept running while the worker worked.
        print(f"\nloop lag while the monitor worked ({url.split(':')[0]}): "
              f"max {max(lags) * 1000:.1f} ms over {len(ticks)} ticks")
        assert len(ticks) > 10
    finally:
        await client.aclose()


async def test_restart_after_kill9() -> None:
    monitor = SessionMonitor(redis_url=REDIS_URL, prefix=f"k{uuid.uuid4().hex[:8]}:",
                             interval=5, heartbeat_interval=0.2, backoff=0.1)
    async with monitor:
        assert await _wait(lambda: monitor.heartbeat_age is not None)
        first = monitor.worker_pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        assert await _wait(lambda: monitor.restarts == 1 and monitor.heartbeat_age is not None
                           and monitor.worker_pid not in (None, first))
        assert (await monitor.health()).status == "pass"
    assert monitor.worker_pid is None


async def test_restart_on_missed_heartbeats() -> None:
    monitor = SessionMonitor(redis_url=REDIS_URL, prefix=f"h{uuid.uuid4().hex[:8]}:",
                             interval=5, heartbeat_interval=0.1, heartbeat_timeout=0.6,
                             backoff=0.1)
    async with monitor:
        assert await _wait(lambda: monitor.heartbeat_age is not None)
        hung = monitor.worker_pid
        assert hung is not None
        os.kill(hung, signal.SIGSTOP)  # alive but silent
        assert await _wait(lambda: monitor.restarts >= 1 and monitor.heartbeat_age is not None
                           and monitor.worker_pid not in (None, hung))
        with pytest.raises(ProcessLookupError):
            os.kill(hung, 0)  # the hung worker was killed, not left behind


async def test_only_one_cleaner_across_three_processes() -> None:
    prefix = f"l{uuid.uuid4().hex[:8]}:"
    client = create_client(REDIS_URL, role="sessions")
    store = SessionStore(redis=client, prefix=prefix)
    try:
        for i in range(20):
            await store.create(f"u{i}")
        procs = [subprocess.Popen(
            [sys.executable, "-m", "tests.monitor.instance_main", REDIS_URL, prefix,
             f"inst{i}", "6"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        ) for i in range(3)]
        results: list[dict[str, Any]] = []
        for p in procs:
            out, _ = await asyncio.to_thread(p.communicate, timeout=90)
            assert p.returncode == 0
            results.append(json.loads(out.decode().strip().splitlines()[-1]))
        passes = sorted((p for r in results for p in r["passes"]), key=lambda p: p["start"])
        assert len(passes) >= 2
        # At most one cleaner at a time: the holder cleans, the others stand by; an instance
        # takes over only after the holder released the lease (here: when it shut down).
        holders = [p["instance"] for p in passes]
        handoffs = [i for i in range(1, len(passes)) if holders[i] != holders[i - 1]]
        for i in handoffs:
            assert passes[i]["start"] >= passes[i - 1]["end"], (passes[i - 1], passes[i])
        assert len(handoffs) <= 2  # each instance held the lease for one contiguous tenure
        assert len(set(holders)) == len(handoffs) + 1
        assert await client.get(f"{prefix}monitor:lease") is None  # released on shutdown
    finally:
        await client.aclose()
