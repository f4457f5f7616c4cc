"""Coalescer vs one-command-per-call vs a hand-made pipeline (EVALSHA of a small script).

    python bench/redis_coalescing.py [--seconds 2] [--url redis://127.0.0.1:6390/0]

Target (issue #2): the coalescer reaches >= 2x the one-command-per-call throughput at 64
concurrent tasks, measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import Report, run_concurrent
from fleetkit.redis import ClientOptions, Coalescer, Script, create_client

SCRIPT = Script("return redis.call('INCRBY', KEYS[1], ARGV[1])", name="bench_incr")


async def main(url: str, seconds: float) -> int:
    report = Report("redis_coalescing", "EVALSHA throughput: coalescer vs per-call vs pipeline")
    client = create_client(url, options=ClientOptions(max_connections=300))
    await SCRIPT.load(client)
    coalescer = Coalescer(client)
    for conc in (64, 256):
        keys = [f"bench:co:{i}" for i in range(conc)]

        async def per_call(i: int, keys: list[str] = keys) -> None:
            await SCRIPT(client, [keys[i]], [1])

        async def coalesced(i: int, keys: list[str] = keys) -> None:
            await coalescer.run(SCRIPT, [keys[i]], [1])

        async def pipeline(_: int, keys: list[str] = keys, conc: int = conc) -> None:
            pipe = client.pipeline(transaction=False)
            for k in keys:
                pipe.evalsha(SCRIPT.sha, 1, k, 1)
            await pipe.execute()

        base = f"per-call x{conc}"
        r = await run_concurrent(per_call, concurrency=conc, seconds=seconds)
        report.add(base, r.rate, "commands/s", errors=r.errors)
        r = await run_concurrent(pipeline, concurrency=1, seconds=seconds)
        report.add(f"hand pipeline of {conc}", r.rate * conc, "commands/s", baseline=base)
        before = (coalescer.pipelines, coalescer.commands)
        r = await run_concurrent(coalesced, concurrency=conc, seconds=seconds)
        batches = coalescer.pipelines - before[0]
        per_batch = (coalescer.commands - before[1]) / batches if batches else 0
        report.add(f"coalescer x{conc}", r.rate, "commands/s", baseline=base, errors=r.errors,
                   commands_per_pipeline=round(per_batch, 1))
    ratio64 = report.get("coalescer x64").ratio or 0.0
    report.check("coalescer >= 2x per-call at 64 tasks", ratio64 >= 2.0, f"{ratio64:.2f}x")
    report.info["url"] = url.split("@")[-1]
    report.save(chart_unit="commands/s")
    await coalescer.aclose()
    await client.aclose()
    return report.exit_code()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--url", default=os.environ.get("FLEETKIT_TEST_REDIS_URL",
                                                        "redis://127.0.0.1:6390/0"))
    ns = parser.parse_args()
    sys.exit(uvloop.run(main(ns.url, ns.seconds)))
