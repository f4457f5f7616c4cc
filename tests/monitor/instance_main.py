"""One app instance running a SessionMonitor for a while (used by the 3-process lease test).

    python -m tests.monitor.instance_main <redis_url> <prefix> <instance_id> <seconds>

Prints one JSON line: the cleanup passes its worker reported in ``seconds`` after it started.
"""

from __future__ import annotations

import asyncio
import json
import sys

from fleetkit.monitor import SessionMonitor


async def main(url: str, prefix: str, instance: str, seconds: float) -> None:
    monitor = SessionMonitor(redis_url=url, prefix=prefix, instance_id=instance, interval=0.2,
                             heartbeat_interval=0.2, heartbeat_timeout=20, lease_ttl=30)
    async with monitor:
        # Spawning the worker takes seconds on a loaded machine: the run starts once it beats.
        async with asyncio.timeout(120):
            while monitor.heartbeat_age is None:
                await asyncio.sleep(0.05)
        await asyncio.sleep(seconds)
    passes = [{"instance": p["instance"], "start": p["start"], "end": p["end"]}
              for p in monitor.passes]
    print(json.dumps({"instance": instance, "passes": passes}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
