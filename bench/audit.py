"""Audit pipeline: producer events/s; end-to-end events/s into PostgreSQL vs raw COPY vs naive.

    python bench/audit.py [--events 200000] [--seconds 3]

All in one run, on the same machine and the same rows:
- producer: ``await log.log(event)`` from 1000 concurrent tasks in one process (event built and
  validated inside the loop), into the standalone Redis; target >= 100K events/s;
- end-to-end: one producer process logs N events (``log_many``) while a ``fleetkit worker
  audit`` process moves them into PostgreSQL; time from the first event logged until the last
  row is committed;
- consumer drain: the same worker emptying a stream pre-filled with N events;
- raw COPY ceiling: the same N rows, already built in memory, COPYed straight into an identical
  empty table (same indexes) in 20K-row batches; target: end-to-end >= 70% of it;
- naive: one INSERT (autocommit) per event.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import Report, machine_cpu_seconds, run_concurrent
from fleetkit.audit import AuditEvent, AuditLog
from fleetkit.audit.schema import install
from fleetkit.audit.streams import stream_key
from fleetkit.redis import ClientOptions, create_client

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("FLEETKIT_TEST_REDIS_URL", "redis://127.0.0.1:6390/0")
PG_URL = os.environ.get("FLEETKIT_TEST_PG_PRIMARY_URL",
                        "postgresql://fleetkit:fleetkit@127.0.0.1:5440/fleetkit")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _event(i: int) -> AuditEvent:
    return AuditEvent(actor=f"user-{i % 5000}", action="session.create",
                      resource=f"session/{i}", outcome="success", client_ip="203.0.113.7",
                      request_id=f"req-{i}", metadata={"plan": "pro"})


async def _new_schema(conn: Any) -> str:
    schema = f"audit_bench_{uuid.uuid4().hex[:8]}"
    await install(conn, schema)
    return schema


async def _drop(conn: Any, schema: str) -> None:
    await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def _count(conn: Any, schema: str) -> int:
    n: int = await conn.fetchval(f'SELECT count(*) FROM "{schema}".audit_events')
    return n


def _worker(schema: str, prefix: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "REDIS_URL": REDIS_URL, "DATABASE_URL": PG_URL,
           "AUDIT_STREAM_SHARDS": "4", "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen([sys.executable, "-m", "fleetkit.cli", "worker", "audit",
                             "--schema", schema, "--prefix", prefix, "--consumer", "bench"],
                            env=env, cwd="/tmp", stdout=subprocess.DEVNULL)


async def _worker_ready(redis: Any, prefix: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if all([await redis.xinfo_groups(stream_key(prefix, i)) for i in range(4)]):
                return
        except Exception as exc:  # the streams do not exist until the worker creates them
            if "no such key" not in str(exc):
                raise
        await asyncio.sleep(0.05)
    raise RuntimeError("the audit worker did not start")


async def _wait_rows(conn: Any, schema: str, n: int, timeout: float = 300) -> float:
    # Poll the small batches table, not count(*) over the growing one: the poll must not
    # compete with the ingestion it measures.
    deadline = time.monotonic() + timeout
    while await conn.fetchval(
            f'SELECT coalesce(sum(row_count), 0) FROM "{schema}".audit_batches') < n:
        if time.monotonic() > deadline:
            raise RuntimeError("rows did not arrive in time")
        await asyncio.sleep(0.02)
    return time.perf_counter()


async def _produce(redis: Any, prefix: str, events: list[AuditEvent], spool: Path) -> None:
    # log_many (same validation and batching as log(), without one task per event) so that on
    # this 2-core machine the producer leaves CPU to the worker, PostgreSQL and Redis.
    log = AuditLog(redis=redis, prefix=prefix, spool_dir=spool)
    chunk = 2000
    await asyncio.gather(*(log.log_many(events[i:i + chunk]) for i in range(0, len(events), chunk)))
    await log.aclose()


async def _cleanup_streams(redis: Any, prefix: str) -> None:
    for i in range(4):
        await redis.delete(stream_key(prefix, i), f"{prefix}:dead:{{s{i}}}")


def _row(e: AuditEvent) -> tuple[Any, ...]:
    return (uuid.UUID(e.event_id), _EPOCH + timedelta(microseconds=e.time), e.actor, e.action,
            e.resource, e.outcome, e.reason, e.client_ip, e.user_agent, e.request_id,
            e.instance, orjson.dumps(e.metadata or {}).decode(), 1)


async def main(n: int, seconds: float) -> int:
    report = Report("audit", "Audit pipeline: producer and PostgreSQL ingestion (events/s)")
    redis = create_client(REDIS_URL, options=ClientOptions(max_connections=64,
                                                           socket_timeout=10))
    conn = await asyncpg.connect(PG_URL)
    spool = Path("/tmp") / f"audit-bench-spool-{os.getpid()}"
    tag = uuid.uuid4().hex[:8]

    # 1. producer, one process
    prefix = f"bench:audit:{tag}:p"
    log = AuditLog(redis=redis, prefix=prefix, spool_dir=spool)
    counter = [0]

    async def one(_: int) -> None:
        counter[0] += 1
        await log.log(_event(counter[0]))

    # Three rounds, the median: the first round of a fresh process is slower (allocator warm-up).
    runs = [await run_concurrent(one, concurrency=1000, seconds=seconds) for _ in range(3)]
    r = sorted(runs, key=lambda x: x.rate)[1]
    await log.aclose()
    report.add("producer log() x1000 tasks, 1 process", r.rate, "events/s",
               rounds=[round(x.rate) for x in runs],
               entries=log.entries_sent, events_per_entry=round(log.events_sent /
                                                                max(1, log.entries_sent), 1))
    await _cleanup_streams(redis, prefix)
    assert not log.spooling

    events = [_event(i) for i in range(n)]

    # 2. raw COPY ceiling of the same rows (the baseline)
    schema = await _new_schema(conn)
    rows = [_row(e) for e in events]
    cols = ["event_id", "time", "actor", "action", "resource", "outcome", "reason", "client_ip",
            "user_agent", "request_id", "instance", "metadata", "batch_id"]
    t0, cpu0 = time.perf_counter(), machine_cpu_seconds()
    for i in range(0, n, 20_000):
        await conn.copy_records_to_table("audit_events", schema_name=schema,
                                         records=rows[i:i + 20_000], columns=cols)
    copy_rate = n / (time.perf_counter() - t0)
    copy_cpu_us = (machine_cpu_seconds() - cpu0) / n * 1e6
    assert await _count(conn, schema) == n
    await _drop(conn, schema)
    report.add("raw COPY ceiling (same rows)", copy_rate, "events/s",
               machine_cpu_us_per_event=round(copy_cpu_us, 1))

    # 3. end-to-end: producer process (this one) + worker process, concurrently
    events = [_event(i) for i in range(n)]  # fresh ids
    schema = await _new_schema(conn)
    prefix = f"bench:audit:{tag}:e"
    worker = _worker(schema, prefix)
    try:
        await _worker_ready(redis, prefix)
        t0, cpu0 = time.perf_counter(), machine_cpu_seconds()
        await _produce(redis, prefix, events, spool)
        produced = time.perf_counter()
        t1 = await _wait_rows(conn, schema, n)
        e2e_cpu_us = (machine_cpu_seconds() - cpu0) / n * 1e6
    finally:
        worker.terminate()
        worker.wait(30)
    e2e = n / (t1 - t0)
    # Machine CPU per event (producer, Redis, worker and PostgreSQL together) bounds the rate:
    # at most cores / cpu_per_event events/s, on this machine shared by all four.
    report.add("end-to-end producer -> Redis -> worker -> PG", e2e, "events/s",
               baseline="raw COPY ceiling (same rows)",
               producer_seconds=round(produced - t0, 2), total_seconds=round(t1 - t0, 2),
               machine_cpu_us_per_event=round(e2e_cpu_us, 1),
               cpu_bound_events_per_s=round((os.cpu_count() or 1) / e2e_cpu_us * 1e6))
    await _drop(conn, schema)
    await _cleanup_streams(redis, prefix)

    # 4. consumer drain of a pre-filled stream
    events = [_event(i) for i in range(n)]
    schema = await _new_schema(conn)
    prefix = f"bench:audit:{tag}:d"
    await _produce(redis, prefix, events, spool)
    worker = _worker(schema, prefix)
    try:
        await _worker_ready(redis, prefix)
        t0, cpu0 = time.perf_counter(), machine_cpu_seconds()
        t1 = await _wait_rows(conn, schema, n)
        drain_cpu_us = (machine_cpu_seconds() - cpu0) / n * 1e6
    finally:
        worker.terminate()
        worker.wait(30)
    report.add("worker drain of a pre-filled stream -> PG", n / (t1 - t0), "events/s",
               baseline="raw COPY ceiling (same rows)",
               machine_cpu_us_per_event=round(drain_cpu_us, 1))
    await _drop(conn, schema)
    await _cleanup_streams(redis, prefix)

    # 5. naive: one INSERT per event (autocommit), on a sample
    schema = await _new_schema(conn)
    sample = rows[: min(n, 5000)]
    column_list = ", ".join(f'"{c}"' for c in cols)
    stmt = (f'INSERT INTO "{schema}".audit_events ({column_list}) '
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)")
    t0 = time.perf_counter()
    for row in sample:
        await conn.execute(stmt, *row)
    naive = len(sample) / (time.perf_counter() - t0)
    await _drop(conn, schema)
    report.add("naive one INSERT per event", naive, "events/s",
               baseline="raw COPY ceiling (same rows)", sample=len(sample))

    prod = report.get("producer log() x1000 tasks, 1 process").value
    ratio = report.get("end-to-end producer -> Redis -> worker -> PG").ratio or 0.0
    report.check("producer >= 100K events/s (one process)", prod >= 100_000, f"{prod:,.0f}/s")
    report.check("end-to-end >= 70% of raw COPY", ratio >= 0.70, f"{ratio:.0%}")
    e2e_vs_naive = e2e / naive if naive else 0.0
    report.check("end-to-end beats naive INSERT", e2e_vs_naive > 1, f"{e2e_vs_naive:.1f}x")
    report.info.update({"events": n, "shards": 4, "redis": REDIS_URL.split("@")[-1],
                        "postgres": PG_URL.split("@")[-1], "consumer_batch_entries": 64,
                        "producer_max_batch": 512})
    report.save(chart_unit="events/s")
    await conn.close()
    await redis.aclose()
    return report.exit_code()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    ns = parser.parse_args()
    sys.exit(uvloop.run(main(ns.events, ns.seconds)))
