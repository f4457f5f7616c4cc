"""The session monitor worker process (spawned and supervised by :mod:`.supervisor`).

It owns its own Redis connection and event loop, so scanning millions of keys never touches the
app's event loop. Every ``heartbeat_interval`` it sends a heartbeat; every ``interval`` it tries to
take the fleet-wide lease and, if it holds it, runs one cleanup pass: a cluster-aware SCAN of the
per-user indexes, each pruned by one script, reporting counts to the parent over the pipe.
The lease only avoids duplicate work: the prune script is atomic and idempotent, so two cleaners
overlapping after a lease expiry would still be correct.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from fleetkit.keys import (
    SESSION,
    SESSION_TOMBSTONE,
    SESSIONS_PREFIX,
    index_base,
    monitor_lease_key,
    session_index_pattern,
)
from fleetkit.redis import Coalescer, Script, create_client
from fleetkit.tasks import cancel_and_wait

__all__ = ["BUCKETS", "WorkerConfig", "bucket_of", "run_worker"]

PRUNE = Script.from_package("fleetkit.monitor", "prune.lua")
LEASE = Script.from_package("fleetkit.monitor", "lease.lua")
RELEASE = Script.from_package("fleetkit.monitor", "release.lua")

#: Sessions-per-user distribution buckets.
BUCKETS = ("1", "2", "3-5", "6-10", "11+")


def bucket_of(n: int) -> str:
    return "1" if n == 1 else "2" if n == 2 else "3-5" if n <= 5 else "6-10" if n <= 10 else "11+"


@dataclass(frozen=True, kw_only=True)
class WorkerConfig:
    """Everything the worker needs (picklable: it crosses the spawn boundary)."""

    redis_url: str
    prefix: str = SESSIONS_PREFIX
    instance_id: str = "fleetkit"
    interval: float = 30.0
    heartbeat_interval: float = 1.0
    lease_ttl: float = 90.0
    scan_count: int = 500
    batch: int = 200

    @property
    def lease_key(self) -> str:
        return monitor_lease_key(self.prefix)

    @property
    def pattern(self) -> str:
        return session_index_pattern(self.prefix)


def _prune_args(index_key: str, since: int) -> list[str | int]:
    base = index_base(index_key)
    return [base + SESSION, base + SESSION_TOMBSTONE, since]


def run_worker(config: WorkerConfig, conn: Connection) -> None:
    """Process entry point (multiprocessing spawn target)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    with contextlib.suppress(BrokenPipeError, EOFError, KeyboardInterrupt):
        asyncio.run(_Worker(config, conn).run())
    conn.close()


async def _scan(client: Any, pattern: str, count: int) -> AsyncIterator[str]:
    # RedisCluster.scan_iter walks every primary with its own cursor; standalone is one cursor.
    async for key in client.scan_iter(match=pattern, count=count, _type="ZSET"):
        yield key.decode() if isinstance(key, bytes) else str(key)


class _Worker:
    def __init__(self, config: WorkerConfig, conn: Connection) -> None:
        self.config = config
        self.conn = conn
        self.parent = os.getppid()
        self.stop = asyncio.Event()
        self.leader = False
        self.since: int | None = None

    def _send(self, kind: str, payload: dict[str, Any]) -> None:
        self.conn.send((kind, payload))

    def _on_message(self) -> None:
        try:
            while self.conn.poll():
                if self.conn.recv() == "stop":
                    self.stop.set()
        except (EOFError, OSError):
            self.stop.set()

    async def _heartbeats(self) -> None:
        while not self.stop.is_set():
            if os.getppid() != self.parent:  # the app died: do not linger as an orphan
                self.stop.set()
                return
            self._send("hb", {"pid": os.getpid(), "leader": self.leader, "time": time.time()})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), self.config.heartbeat_interval)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.conn.fileno(), self._on_message)
        client = create_client(self.config.redis_url, role="sessions")
        beat = asyncio.create_task(self._heartbeats())
        owner = self.config.instance_id
        ttl_ms = int(self.config.lease_ttl * 1000)
        try:
            while not self.stop.is_set():
                try:
                    self.leader = bool(await LEASE(client, [self.config.lease_key],
                                                   [owner, ttl_ms]))
                    if self.leader:
                        await self._pass(client, owner, ttl_ms)
                except Exception as exc:  # report and retry next interval; never die on Redis
                    self.leader = False
                    self._send("error", {"error": f"{type(exc).__name__}: {exc}"})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), self.config.interval)
        finally:
            # The heartbeat failing (the parent gone) must not keep the lease from release.
            await cancel_and_wait(beat, ignore_errors=True)
            with contextlib.suppress(Exception):
                if self.leader:
                    await RELEASE(client, [self.config.lease_key], [owner])
            loop.remove_reader(self.conn.fileno())
            await client.aclose()

    async def _pass(self, client: Any, owner: str, ttl_ms: int) -> None:
        cfg = self.config
        coalescer = Coalescer(client)
        started, t0 = time.time(), time.perf_counter()
        totals = {"indexes": 0, "sessions": 0, "users": 0, "expired": 0, "revoked": 0,
                  "created": 0}
        buckets = dict.fromkeys(BUCKETS, 0)
        since = self.since if self.since is not None else 2**62
        first_now: int | None = None
        batch: list[str] = []

        async def flush() -> bool:
            nonlocal first_now
            replies = await asyncio.gather(*(
                coalescer.run(PRUNE, [k], _prune_args(k, since)) for k in batch))
            for live, expired, revoked, created, now in replies:
                first_now = int(now) if first_now is None else first_now
                totals["indexes"] += 1
                totals["sessions"] += int(live)
                totals["expired"] += int(expired)
                totals["revoked"] += int(revoked)
                totals["created"] += int(created)
                if int(live):
                    totals["users"] += 1
                    buckets[bucket_of(int(live))] += 1
            batch.clear()
            # Renew between batches; stop at once if another instance took over.
            return bool(await LEASE(client, [cfg.lease_key], [owner, ttl_ms]))

        try:
            async for key in _scan(client, cfg.pattern, cfg.scan_count):
                if self.stop.is_set():
                    return
                batch.append(key)
                if len(batch) >= cfg.batch and not await flush():
                    self.leader = False
                    return
            if batch:
                await flush()
        finally:
            await coalescer.aclose()
        window = (first_now - self.since) / 1000 if first_now and self.since else None
        if first_now is not None:
            self.since = first_now
        elapsed = time.perf_counter() - t0
        self._send("pass", {
            **totals, "buckets": buckets, "instance": owner, "pid": os.getpid(),
            "start": started, "end": time.time(), "seconds": elapsed,
            "created_rate": totals["created"] / window if window else None,
            "expired_rate": totals["expired"] / window if window else None,
        })
