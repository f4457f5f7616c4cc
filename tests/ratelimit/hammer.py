"""Run by test_processes in a separate process: hammer one key per algorithm, print counts.

    python -m tests.ratelimit.hammer URL KEY LIMIT ATTEMPTS START_AT
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from fleetkit.ratelimit import Limit, RateLimiter
from fleetkit.ratelimit.limiter import Algorithm
from fleetkit.redis import create_client

ALGORITHMS: tuple[Algorithm, ...] = ("sliding_window", "sliding_log", "gcra")


async def main(url: str, key: str, limit: Limit, attempts: int, start_at: float) -> None:
    client = create_client(url)
    limiters = {a: RateLimiter(redis=client, algorithm=a, prefix="t:hammer:") for a in ALGORITHMS}
    allowed = dict.fromkeys(ALGORITHMS, 0)
    backends: set[str] = set()
    deadline = time.monotonic() + 30  # every loop is bounded in time

    async def worker(algorithm: Algorithm, n: int) -> None:
        for _ in range(n):
            if time.monotonic() > deadline:
                return
            d = await limiters[algorithm].hit(key, limit)
            allowed[algorithm] += d.allowed
            backends.add(d.backend)

    await asyncio.sleep(max(0.0, start_at - time.time()))
    await asyncio.gather(*(worker(a, attempts // 10) for a in ALGORITHMS for _ in range(10)))
    for limiter in limiters.values():
        await limiter.aclose()
    await client.aclose()
    print(json.dumps({"allowed": allowed, "backends": sorted(backends)}))


if __name__ == "__main__":
    url, key, spec, attempts, start_at = sys.argv[1:6]
    asyncio.run(main(url, key, Limit.parse(spec), int(attempts), float(start_at)))
