"""Circuit breaker overhead per call in the closed state vs a bare call, same run.

    python bench/breaker.py [--calls 100000] [--rounds 7] [--url redis://127.0.0.1:6390/0]

The breaker runs with Redis shared state enabled (flush loop and pub/sub subscription live),
so the numbers include whatever the background work costs. Target (issue #5): <= 10 us of
overhead per call. The sync variants (``with breaker:``, ``@breaker`` on a ``def``) run in a
worker thread, as a framework runs ``def`` routes, against a bare sync call in the same thread;
their outcomes are counted under a lock, so their overhead is reported separately. The Redis
commands issued during the timed loops are counted too: the hot
path must not do Redis I/O, so they stay at a few flushes per second, whatever the call count.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import Report
from fleetkit.breaker import CircuitBreaker
from fleetkit.redis import create_client, role_stats


async def work() -> int:
    return 1


def sync_work() -> int:
    return 1


async def pause(i: int) -> None:
    # Every variant yields to the loop now and then, so the flush loop and the subscriber run.
    if i % 500 == 0:
        await asyncio.sleep(0)


async def main(url: str, calls: int, rounds: int) -> int:
    report = Report("breaker", "Circuit breaker overhead per call (closed state, Redis shared)")
    client = create_client(url, role="bench-breaker")
    prefix = f"bench:cb:{uuid.uuid4().hex[:8]}"
    plain = CircuitBreaker("bench", redis=client, key_prefix=prefix)
    timed = CircuitBreaker("bench-slow", redis=client, key_prefix=prefix, slow_call_seconds=1.0)
    await plain.start()
    await timed.start()

    async def bare() -> None:
        for i in range(calls):
            await pause(i)
            await work()

    async def ctx() -> None:
        for i in range(calls):
            await pause(i)
            async with plain:
                await work()

    async def ctx_timed() -> None:
        for i in range(calls):
            await pause(i)
            async with timed:
                await work()

    async def call() -> None:
        for i in range(calls):
            await pause(i)
            await plain.call(work)

    @plain
    async def decorated() -> int:
        return 1

    async def deco() -> None:
        for i in range(calls):
            await pause(i)
            await decorated()

    @plain
    def sync_decorated() -> int:
        return 1

    def sync_bare_loop() -> None:
        for _ in range(calls):
            sync_work()

    def sync_with_loop() -> None:
        for _ in range(calls):
            with plain:
                sync_work()

    def sync_deco_loop() -> None:
        for _ in range(calls):
            sync_decorated()

    async def sync_bare() -> None:
        await asyncio.to_thread(sync_bare_loop)

    async def sync_with() -> None:
        await asyncio.to_thread(sync_with_loop)

    async def sync_deco() -> None:
        await asyncio.to_thread(sync_deco_loop)

    variants: dict[str, Callable[[], Awaitable[None]]] = {
        "bare call": bare, "async with breaker": ctx, "breaker.call(fn)": call,
        "@breaker decorator": deco, "async with (slow-call rule on)": ctx_timed,
        "bare sync call (thread)": sync_bare, "with breaker (sync, thread)": sync_with,
        "@breaker on a def (thread)": sync_deco,
    }
    sync_labels = [label for label in variants if "thread" in label]
    samples: dict[str, list[float]] = {k: [] for k in variants}
    stats = role_stats("bench-breaker")
    commands_before, started = stats.commands, time.perf_counter()
    for _ in range(rounds):  # interleaved, so machine noise hits every variant alike
        for label, fn in variants.items():
            t0 = time.perf_counter()
            await fn()
            samples[label].append((time.perf_counter() - t0) / calls * 1e6)
    elapsed = time.perf_counter() - started
    commands = stats.commands - commands_before
    total_calls = calls * rounds * (len(variants) - 2)

    worst = {"async": 0.0, "sync": 0.0}
    for kind, baseline in (("async", "bare call"), ("sync", "bare sync call (thread)")):
        base = statistics.median(samples[baseline])
        report.add(baseline, base, "us/call")
        for label in variants:
            if label == baseline or (label in sync_labels) != (kind == "sync"):
                continue
            value = statistics.median(samples[label])
            report.add(label, value, "us/call", baseline=baseline)
            report.add(f"overhead: {label}", value - base, "us overhead/call")
            worst[kind] = max(worst[kind], value - base)
    report.check("overhead <= 10 us per call (closed, Redis shared state)",
                 max(worst.values()) <= 10.0,
                 f"worst async {worst['async']:.2f} us, sync {worst['sync']:.2f} us")
    report.check("no Redis I/O on the hot path", commands < total_calls / 1000,
                 f"{commands} Redis commands for {total_calls:,} breaker calls in {elapsed:.1f} s"
                 " (background flushes/polls only)")
    assert plain.state == "closed" and not plain.local_only
    report.info.update(url=url.split("@")[-1], calls_per_round=calls, rounds=rounds,
                       redis_commands=commands, breaker_calls=total_calls)
    report.save(chart_unit="us/call")
    await plain.aclose()
    await timed.aclose()
    await client.aclose()
    return report.exit_code()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--url", default=os.environ.get("FLEETKIT_TEST_REDIS_URL",
                                                        "redis://127.0.0.1:6390/0"))
    ns = parser.parse_args()
    sys.exit(uvloop.run(main(ns.url, ns.calls, ns.rounds)))
