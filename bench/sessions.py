"""Session store: Redis bytes per session, get/create throughput, monitor pass and loop lag.

    python bench/sessions.py [--sessions 100000] [--seconds 2]

Runs on a private redis-server (started and stopped here) so the 100k-session memory
measurement neither disturbs nor is disturbed by other users of the shared test server.

Target (issue #6): <= 256 bytes of Redis memory per session (MEMORY USAGE, empty data).
INFO used_memory is reported too: it adds what MEMORY USAGE leaves out (the expires-dict entry of
each key with a TTL and the hash-table buckets of both dicts, ~70-90 bytes per key).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support import RedisServer

from bench.harness import Report, run_concurrent
from fleetkit.config import load_settings
from fleetkit.monitor import SessionMonitor
from fleetkit.redis import ClientOptions, RedisClients
from fleetkit.sessions import SessionStore
from fleetkit.sessions.tokens import session_id

TARGET = 256


async def used_memory(client: object) -> int:
    info = await client.info("memory")  # type: ignore[attr-defined]
    return int(info["used_memory"])


async def fill(store: SessionStore, n: int, per_user: int) -> list[str]:
    tokens: list[str] = []
    sem = asyncio.Semaphore(256)

    async def one(i: int) -> None:
        async with sem:
            s = await store.create(f"u{i // per_user:07d}", ip="203.0.113.7", user_agent="x")
            tokens.append(s.token)

    for start in range(0, n, 10_000):
        await asyncio.gather(*(one(i) for i in range(start, min(n, start + 10_000))))
    return tokens


async def memory_usage(client: object, keys: list[str]) -> float:
    total = 0
    for key in keys:
        total += int(await client.execute_command("MEMORY", "USAGE", key, "SAMPLES", "0")  # type: ignore[attr-defined]
                     or 0)
    return total / len(keys)


async def measure_memory(report: Report, client: object, store: SessionStore, n: int,
                         per_user: int, tag: str) -> float:
    await client.flushall()  # type: ignore[attr-defined]
    await asyncio.sleep(0.2)
    before = await used_memory(client)
    tokens = await fill(store, n, per_user)
    after = await used_memory(client)
    delta = (after - before) / n
    sample = random.sample(tokens, min(2000, n))
    skeys = []
    for t in sample:
        _, route, _ = t.split(".")
        skeys.append(f"{store.prefix}{{{route}}}s{session_id(t)}")
    users = sorted({f"u{i // per_user:07d}" for i in random.sample(range(n), 500)})
    session_mu = await memory_usage(client, skeys)
    index_mu = await memory_usage(client, [store.index_key(u) for u in users]) / per_user
    report.add(f"{tag}: MEMORY USAGE session key", session_mu, "bytes/session")
    report.add(f"{tag}: MEMORY USAGE session + index share", session_mu + index_mu,
               "bytes/session")
    report.add(f"{tag}: INFO used_memory delta", delta, "bytes/session", sessions=n,
               sessions_per_user=per_user)
    return delta


async def main(n: int, seconds: float) -> int:
    report = Report("sessions", "Sessions: Redis bytes per session and throughput per process")
    tmp = tempfile.TemporaryDirectory()
    server = RedisServer(Path(tmp.name), appendonly=False)
    server.start()
    clients = RedisClients.from_urls(server.url, options=ClientOptions(max_connections=300))
    client = clients.sessions
    # Built as the reference service builds its store (SessionStore.from_settings), on the
    # coalescer it gets there; the PING baseline runs through that same coalescer.
    settings = load_settings(env={}, redis_url=server.url, session_max_per_user=5)
    store = SessionStore.from_settings(settings, redis_clients=clients)
    coalescer = clients.coalescer("sessions", SessionStore.COALESCER)
    assert client is not None and coalescer is not None
    stores = [store]
    try:
        main_delta = await measure_memory(report, client, store, n, 2, f"{n:,} sessions, 2/user")
        session_plus_index = report.measurements[-2].value
        await measure_memory(report, client, store, n // 5, 1, f"{n // 5:,} sessions, 1/user")
        # Extrapolation from the main run (linear: per-key costs dominate).
        for total in (1_000_000, 10_000_000):
            report.add(f"extrapolated Redis memory, {total // 1_000_000}M sessions",
                       main_delta * total / 2**20, "MiB")
        report.check(f"MEMORY USAGE per session (session + index share) <= {TARGET} B",
                     session_plus_index <= TARGET, f"{session_plus_index:.0f} B")
        # The target is defined on MEMORY USAGE (issue #6). INFO used_memory also counts
        # Redis' own per-key expiry bookkeeping (~70-90 B a key), so it is reported, and used
        # for the extrapolation above, but it is not the target's measure.
        report.info["used_memory_per_session_bytes"] = round(main_delta, 1)

        # Throughput (one process, 64 concurrent tasks).
        await client.flushall()
        tokens = await fill(store, 20_000, 4)

        async def ping(_: int) -> None:
            await coalescer.execute("PING")

        async def get(i: int) -> None:
            await store.get(tokens[random.randrange(len(tokens))])

        counter = [0]

        async def create(_: int) -> None:
            counter[0] += 1
            await store.create(f"c{counter[0] % 50_000}")

        # A store on a coalescer of its own (what a caller without RedisClients gets).
        plain = SessionStore(redis=client, max_per_user=5)
        stores.append(plain)

        async def get_uncoalesced(_: int) -> None:
            await plain.get(tokens[random.randrange(len(tokens))])

        r = await run_concurrent(ping, concurrency=64, seconds=seconds)
        report.add("PING (coalesced) x64", r.rate, "ops/s")
        r = await run_concurrent(get_uncoalesced, concurrency=64, seconds=seconds)
        report.add("get, one EVALSHA per call x64", r.rate, "ops/s",
                   baseline="PING (coalesced) x64", errors=r.errors)
        r = await run_concurrent(get, concurrency=64, seconds=seconds, record_latency=True)
        report.add("get (coalesced) x64", r.rate, "ops/s", baseline="PING (coalesced) x64",
                   errors=r.errors, p99_ms=round(r.percentile(99) * 1000, 2))
        r = await run_concurrent(create, concurrency=64, seconds=seconds, record_latency=True)
        report.add("create (coalesced) x64", r.rate, "ops/s", baseline="PING (coalesced) x64",
                   errors=r.errors, p99_ms=round(r.percentile(99) * 1000, 2))

        # One monitor cleanup pass over n sessions; main-loop lag measured meanwhile.
        await client.flushall()
        await fill(store, n, 2)
        lags: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            while not stop.is_set():
                t0 = time.perf_counter()
                await asyncio.sleep(0.005)
                lags.append(time.perf_counter() - t0 - 0.005)

        tick = asyncio.create_task(ticker())
        monitor = SessionMonitor(redis_url=server.url, interval=3600, heartbeat_interval=0.5)
        async with monitor:
            deadline = time.monotonic() + 300
            while not monitor.passes and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
        stop.set()
        await tick
        if monitor.passes:
            p = monitor.passes[0]
            report.add(f"monitor cleanup pass over {p['sessions']:,} sessions", p["seconds"],
                       "s", indexes=p["indexes"])
        lags.sort()
        report.add("main loop lag while monitoring, max", lags[-1] * 1000, "ms")
        report.add("main loop lag while monitoring, p99",
                   lags[int(len(lags) * 0.99)] * 1000, "ms", ticks=len(lags))
        report.info["redis"] = "private redis-server 7, no persistence"
        report.save(chart_unit="bytes/session")
    finally:
        for s in stores:
            await s.aclose()
        await clients.aclose()
        server.stop()
        tmp.cleanup()
    return report.exit_code()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=2.0)
    ns = parser.parse_args()
    sys.exit(uvloop.run(main(ns.sessions, ns.seconds)))
