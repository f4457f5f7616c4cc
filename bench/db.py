"""Database router: reads/s through ``db.read()`` vs a plain asyncpg engine, and a replica stop.

    python bench/db.py [--seconds 2] [--concurrency 32]

Phase 1 measures the router's overhead: the same query (``SELECT 1``, so the overhead is as
visible as it can be) on the same replica through a plain SQLAlchemy asyncpg engine (baseline)
and through ``db.read()``, ``db.run_read()``, ``db.read(lsn=token)`` and ``db.fetch_all()``
(the same Core statement run on the driver), in the same run.
Phase 1 only reads the shared services. Phase 2 stops a replica while 32 tasks read, counts
errors of requests that started after the router detected the failure (target: 0), restarts it,
then times until the monitor puts it back. That replica is a private primary + streaming replica
(``tests/db/pgcluster.py``: a fresh ``initdb`` and ``pg_basebackup`` in a temporary directory,
on free ports, removed at the end): the shared replica serves everyone's tests and is never
stopped here.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import literal, select, text
from sqlalchemy.ext.asyncio import create_async_engine
from tests.db.pgcluster import PgCluster

from bench.harness import Report, median, run_concurrent
from fleetkit.db import Database
from fleetkit.errors import DatabaseError

QUERY = text("SELECT 1")
CORE = select(literal(1).label("one"))


async def overhead(report: Report, primary: str, replica: str, seconds: float,
                   conc: int, rounds: int = 5) -> None:
    plain = create_async_engine(replica.replace("postgresql://", "postgresql+asyncpg://"),
                                pool_size=conc, max_overflow=0)
    db = Database(primary, read_urls=[replica], read_pool_size=conc, write_pool_size=4)
    await db.start()
    token = await db.current_lsn()

    async def baseline(_: int) -> None:
        async with plain.connect() as conn:
            await conn.execute(QUERY)

    async def routed(_: int) -> None:
        async with db.read() as conn:
            await conn.execute(QUERY)

    async def retried(_: int) -> None:
        await db.run_read(lambda conn: conn.execute(QUERY))

    async def ryw(_: int) -> None:
        async with db.read(lsn=token) as conn:
            await conn.execute(QUERY)

    async def driver(_: int) -> None:
        await db.fetch_all(CORE)

    try:
        # Interleave rounds of every variant and keep each one's median: on this shared machine
        # drift then hits all of them alike.
        loops = {f"plain asyncpg engine x{conc}": baseline, f"db.read() x{conc}": routed,
                 f"db.run_read() x{conc}": retried, f"db.read(lsn=token) x{conc}": ryw,
                 f"db.fetch_all() x{conc}": driver}
        rates: dict[str, list[float]] = {label: [] for label in loops}
        errors = dict.fromkeys(loops, 0)
        for _ in range(rounds):
            for label, op in loops.items():
                r = await run_concurrent(op, concurrency=conc, seconds=seconds)
                rates[label].append(r.rate)
                errors[label] += r.errors
        base = next(iter(loops))
        for label in loops:
            paired = [x / b for x, b in zip(rates[label], rates[base], strict=True) if b]
            report.add(label, median(rates[label]), "reads/s",
                       baseline=None if label == base else base, errors=errors[label],
                       rounds=[round(x) for x in rates[label]],
                       paired_ratio=round(median(paired), 3))
    finally:
        await db.aclose()
        await plain.dispose()


async def failover(report: Report, cluster: PgCluster, conc: int) -> None:
    """Stop and restart ``cluster``'s replica (private to this run) under ``conc`` readers."""
    db = Database(cluster.primary_url, read_urls=[cluster.replica_url], read_pool_size=conc,
                  write_pool_size=conc, health_interval=1.0, connect_timeout=2.0)
    await db.start()
    replica = db.replicas[0]
    ok: list[tuple[float, bool]] = []          # (started, on replica)
    failed: list[float] = []                   # started
    stop = asyncio.Event()

    async def reader() -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                async with db.read() as conn:
                    port = (await conn.execute(text("SELECT inet_server_port()"))).scalar()
                ok.append((started, port == replica.url.port))
            except DatabaseError:
                failed.append(started)

    tasks = [asyncio.create_task(reader()) for _ in range(conc)]
    t0 = time.monotonic()
    detected = back = None
    try:
        await asyncio.sleep(1.0)
        stopped_at = time.monotonic()
        try:
            stopper = asyncio.create_task(asyncio.to_thread(cluster.stop_replica))
            deadline = time.monotonic() + 30
            while replica.healthy and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            detected = replica.changed_at if not replica.healthy else None
            await stopper
            await asyncio.sleep(2.0)   # reads with the replica down
        finally:
            await asyncio.to_thread(cluster.start_replica)
        deadline = time.monotonic() + 60
        while not replica.healthy and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        back = replica.changed_at if replica.healthy else None
        await asyncio.sleep(1.0)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await db.aclose()
    elapsed = time.monotonic() - t0
    report.add(f"db.read() x{conc}, replica stopped mid-run", len(ok) / elapsed, "reads/s")
    after = sum(1 for s in failed if detected is not None and s >= detected)
    before = len(failed) - after
    report.add("failed reads before detection (in flight)", before, "reads")
    report.add("failed reads after detection", after, "reads")
    report.add("stop -> detection", (detected - stopped_at) if detected else -1, "s")
    report.add("back in rotation after restart", (back - detected) if back and detected else -1,
               "s (from detection)")
    on_replica_after = sum(1 for s, r in ok if back is not None and s > back and r)
    report.info["failover"] = {"reads": len(ok), "errors": len(failed),
                               "reads_on_replica_after_restart": on_replica_after}
    report.check("replica stop detected", detected is not None, "taken out of rotation")
    report.check("0 failed reads after detection", detected is not None and after == 0,
                 f"{after} errors after detection ({before} in flight at the stop)")
    report.check("replica used again after restart", on_replica_after > 0,
                 f"{on_replica_after} reads on the replica after it came back")


async def main(primary: str, replica: str, seconds: float, conc: int) -> int:
    report = Report("db", "PostgreSQL reads: router vs plain engine; replica stopped mid-run")
    await overhead(report, primary, replica, seconds, conc)
    # Median of per-round ratios: each round runs both loops within seconds of each other.
    ratio = float(report.get(f"db.read() x{conc}").extra["paired_ratio"])
    report.check("router overhead: db.read() >= 0.8x plain engine (paired rounds)",
                 ratio >= 0.8, f"{ratio:.2f}x")
    cluster = PgCluster(max_connections=2 * conc + 20)  # readers fall back to the primary
    try:
        await asyncio.to_thread(cluster.start)
        await failover(report, cluster, conc)
    finally:
        await asyncio.to_thread(cluster.close)
    report.info.update(primary=primary.split("@")[-1], replica=replica.split("@")[-1],
                       failover="private primary + replica (tests/db/pgcluster.py)",
                       query="SELECT 1", concurrency=conc)
    report.save(chart_unit="reads/s")
    return report.exit_code()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--primary", default=os.environ.get(
        "FLEETKIT_TEST_PG_PRIMARY_URL", "postgresql://fleetkit:fleetkit@127.0.0.1:5440/fleetkit"))
    parser.add_argument("--replica", default=os.environ.get(
        "FLEETKIT_TEST_PG_REPLICA_URL", "postgresql://fleetkit:fleetkit@127.0.0.1:5441/fleetkit"))
    ns = parser.parse_args()
    sys.exit(uvloop.run(main(ns.primary, ns.replica, ns.seconds, ns.concurrency)))
