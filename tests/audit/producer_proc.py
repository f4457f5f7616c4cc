"""A producer process for the exactly-once test (run with ``python -m``; not a test module).

    python -m tests.audit.producer_proc REDIS_URL PREFIX SPOOL_DIR MIN NAME IDS_OUT STATUS STOP

Logs events — MIN of them in chunks of 500 at a pace that takes about 10 s, then 50 every 0.2 s
— **until** the file STOP exists and at least MIN events are logged: production overlaps
every fault the test injects, however slow the machine, instead of racing it. After each
chunk it writes ``logged spooled replayed`` to STATUS (atomically), so the test can wait for
the state it needs (e.g. "every producer has spooled").
Then it flushes, waits for its spool to be replayed, and writes the event ids whose ``log()``
returned to IDS_OUT.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from fleetkit.audit import AuditEvent, AuditLog
from fleetkit.redis import ClientOptions, create_client

CHUNK = 500
SECONDS = 10.0  # for the first MIN events
SLOW = (50, 0.2)  # (events, seconds) per chunk after that, until told to stop: ~250/s


def _status(path: Path, log: AuditLog, logged: int) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{logged} {log.events_spooled} {log.events_replayed}\n")
    os.replace(tmp, path)


async def main(url: str, prefix: str, spool: str, minimum: int, name: str, out: str,
               status: str, stop: str) -> int:
    client = create_client(url, options=ClientOptions(socket_timeout=1.0, connect_timeout=0.5,
                                                      retries=0))
    log = AuditLog(redis=client, prefix=prefix, spool_dir=spool, probe_interval=0.1,
                   close_timeout=60)
    ids: list[str] = []
    status_path, stop_path = Path(status), Path(stop)

    async def one(i: int) -> None:
        event = AuditEvent(actor=name, action="load", resource=f"item/{i}", outcome="success")
        await log.log(event)
        ids.append(event.event_id)

    i = 0
    while len(ids) < minimum or not stop_path.exists():
        started = time.monotonic()
        chunk, pace = (CHUNK, SECONDS * CHUNK / minimum) if len(ids) < minimum else SLOW
        await asyncio.gather(*(one(i + k) for k in range(chunk)))
        i += chunk
        _status(status_path, log, len(ids))
        if (ahead := started + pace - time.monotonic()) > 0:
            await asyncio.sleep(ahead)
    await log.flush()
    drained = await log.drain_spool(60)
    await log.aclose()
    await client.aclose()
    _status(status_path, log, len(ids))
    Path(out).write_text("\n".join(ids))
    print(f"{name}: {len(ids)} logged, {log.events_spooled} spooled, "
          f"{log.events_replayed} replayed, drained={drained}", flush=True)
    return 0 if drained and len(ids) == i else 1


if __name__ == "__main__":
    a = sys.argv[1:]
    sys.exit(asyncio.run(main(a[0], a[1], a[2], int(a[3]), a[4], a[5], a[6], a[7])))
