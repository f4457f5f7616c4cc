"""Rate limiter decisions/s per algorithm vs the raw coalesced EVALSHA ceiling, and key memory.

    python bench/ratelimit.py [--seconds 1.5] [--rounds 3] [--url redis://127.0.0.1:6390/0]

The ceiling is a trivial one-key script sent through the same coalescer in the same run, one
EVALSHA per call: what the limiter could do if its script and its Python work were free. The
limiter goes above it on standalone Redis because its coalescer merges the concurrent decisions
of a batch into one EVALSHA (Coalescer.run_merged); "unmerged" rows show the limiter sending one
EVALSHA per decision, as it does on a Redis Cluster. Variants are measured in interleaved rounds
and the median is reported, because the machine is shared and noisy.
Target (issue #4): sliding_window >= 80% of the ceiling at 64 and 256 concurrent tasks.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import Report, run_concurrent
from fleetkit.config import load_settings
from fleetkit.ratelimit import Limit, RateLimiter
from fleetkit.ratelimit.limiter import Algorithm
from fleetkit.redis import ClientOptions, RedisClients, Script

TRIVIAL = Script("return 1", name="bench_trivial")
ALGORITHMS: tuple[Algorithm, ...] = ("sliding_window", "sliding_log", "gcra")
# Never exhausted during a run: every decision is a real Redis decision (no deny cache hits).
LIMIT = Limit.parse("1000000000/minute")


async def main(url: str, seconds: float, rounds: int) -> int:
    report = Report("ratelimit", "Rate limit decisions/s vs the coalesced EVALSHA ceiling")
    clients = RedisClients.from_urls(url, options=ClientOptions(max_connections=300))
    client = clients.ratelimit
    assert client is not None
    run = uuid.uuid4().hex[:8]
    # The limiters are built as the reference service builds its own (RateLimiter.from_settings),
    # on the coalescer it gets there; the ceiling runs through that same coalescer.
    limiters: dict[str, RateLimiter] = {
        a: RateLimiter.from_settings(load_settings(env={}, redis_url=url, rate_limit_algorithm=a),
                                     redis_clients=clients, prefix=f"bench:rl:{run}:")
        for a in ALGORITHMS}
    coalescer = clients.coalescer("ratelimit", RateLimiter.COALESCER)
    assert coalescer is not None and limiters["sliding_window"]._coalescer is coalescer
    unmerged = dataclasses.replace(RateLimiter.COALESCER, merge=False).build(client)
    limiters["sliding_window unmerged"] = RateLimiter.from_settings(
        load_settings(env={}, redis_url=url), redis_clients=clients, coalescer=unmerged,
        prefix=f"bench:rl:{run}:")
    for script in (TRIVIAL, *(lim._script for lim in limiters.values())):
        await script.load(client)
    for conc in (64, 256):
        keys = [f"client:{i}" for i in range(conc)]
        raw_keys = [f"bench:rl:{run}:{{{k}}}:raw" for k in keys]

        async def ceiling(i: int, raw_keys: list[str] = raw_keys) -> None:
            await coalescer.run(TRIVIAL, [raw_keys[i]], [1])

        variants: dict[str, Callable[[int], Awaitable[object]]] = {"ceiling": ceiling}
        for algorithm, limiter in limiters.items():
            async def decide(i: int, limiter: RateLimiter = limiter,
                             keys: list[str] = keys) -> None:
                if (await limiter.hit(keys[i], LIMIT)).backend != "redis":
                    raise RuntimeError("decided without Redis")

            variants[algorithm] = decide
        rates: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(rounds):
            for name, op in variants.items():
                for _attempt in range(5):  # shared services get restarted: redo such a round
                    r = await run_concurrent(op, concurrency=conc, seconds=seconds, warmup=0.2)
                    if r.errors == 0:
                        break
                    print(f"{name} x{conc}: {r.errors} errors (Redis restarted?), again")
                    await asyncio.sleep(2)
                else:
                    raise SystemExit(f"{name}: Redis kept failing")
                rates[name].append(r.rate)
        base = f"EVALSHA ceiling x{conc}"
        report.add(base, statistics.median(rates["ceiling"]), "decisions/s",
                   rounds=rates["ceiling"])
        for algorithm in limiters:
            report.add(f"{algorithm} x{conc}", statistics.median(rates[algorithm]),
                       "decisions/s", baseline=base, rounds=rates[algorithm])
        ratio = report.get(f"sliding_window x{conc}").ratio or 0.0
        report.check(f"sliding_window >= 80% of the ceiling at {conc} tasks", ratio >= 0.8,
                     f"{ratio:.0%}")
    # Memory per key in a typical state: a 100/minute limit after 50 requests.
    for algorithm in ALGORITHMS:
        limiter = limiters[algorithm]
        key = f"mem:{uuid.uuid4().hex}"
        limit = Limit.parse("100/minute")
        for _ in range(50):
            await limiter.hit(key, limit)
        redis_key = limiter._keys(key, (limit,))[0]
        used = await client.memory_usage(redis_key)
        report.add(f"{algorithm} key, 100/minute after 50 hits", float(used or 0), "bytes")
    report.info.update(url=url.split("@")[-1], seconds=seconds, rounds=rounds,
                       pipelines=coalescer.pipelines, commands=coalescer.commands)
    report.save(chart_unit="decisions/s")
    for limiter in limiters.values():
        await limiter.aclose()
    await unmerged.aclose()
    async for k in client.scan_iter(match=f"bench:rl:{run}:*", count=1000):
        await client.unlink(k)
    await clients.aclose()
    return report.exit_code()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--url", default=os.environ.get("FLEETKIT_TEST_REDIS_URL",
                                                        "redis://127.0.0.1:6390/0"))
    ns = parser.parse_args()
    sys.exit(uvloop.run(main(ns.url, ns.seconds, ns.rounds)))
