"""A producer process for the exactly-once test (run with ``python -m``; not a test module).

    python -m tests.audit.producer_proc REDIS_URL PREFIX SPOOL_DIR N NAME IDS_OUT

Logs N events at a steady pace (so production overlaps the test's kills), flushes, waits for
its spool to be replayed, then writes the event ids whose ``log()`` returned to IDS_OUT.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from fleetkit.audit import AuditEvent, AuditLog
from fleetkit.redis import ClientOptions, create_client


async def main(url: str, prefix: str, spool: str, n: int, name: str, out: str) -> int:
    client = create_client(url, options=ClientOptions(socket_timeout=1.0, connect_timeout=0.5,
                                                      retries=0))
    log = AuditLog(redis=client, prefix=prefix, spool_dir=spool, probe_interval=0.1,
                   close_timeout=60)
    ids: list[str] = []
    chunk, seconds = 500, 10.0
    start = time.monotonic()

    async def one(i: int) -> None:
        event = AuditEvent(actor=name, action="load", resource=f"item/{i}", outcome="success")
        await log.log(event)
        ids.append(event.event_id)

    for c in range(0, n, chunk):
        await asyncio.gather(*(one(i) for i in range(c, min(n, c + chunk))))
        ahead = start + seconds * (c + chunk) / n - time.monotonic()
        if ahead > 0:
            await asyncio.sleep(ahead)
    await log.flush()
    drained = await log.drain_spool(60)
    await log.aclose()
    await client.aclose()
    Path(out).write_text("\n".join(ids))
    print(f"{name}: {len(ids)} logged, {log.events_spooled} spooled, "
          f"{log.events_replayed} replayed, drained={drained}", flush=True)
    return 0 if drained and len(ids) == n else 1


if __name__ == "__main__":
    a = sys.argv[1:]
    sys.exit(asyncio.run(main(a[0], a[1], a[2], int(a[3]), a[4], a[5])))
