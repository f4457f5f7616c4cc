"""Shared helpers of the audit tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from fleetkit.audit import AuditConsumer
from tests.support import PG_PRIMARY_URL


def consumer_for(redis: Any, schema: str, prefix: str, **kw: Any) -> AuditConsumer:
    options: dict[str, Any] = {"consumer": "c1", "shards": 4, "block_ms": 100,
                               "claim_interval": 0.2, "trim_interval": 0.5, "retry_delay": 0.05}
    options.update(kw)
    return AuditConsumer(redis=redis, database_url=PG_PRIMARY_URL, schema=schema, prefix=prefix,
                         **options)


async def run_until(consumer: AuditConsumer, done: Callable[[], Awaitable[bool]],
                    timeout: float = 40.0) -> None:
    """Run ``consumer`` until ``done()`` is true (bounded), then stop it gracefully."""
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(consumer.run())
    deadline = loop.time() + timeout
    try:
        while not await done():
            assert not task.done(), task.exception() if task.done() else None
            assert loop.time() < deadline, "the consumer did not finish in time"
            await asyncio.sleep(0.05)
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 15)


async def row_count(conn: Any, schema: str) -> int:
    n: int = await conn.fetchval(f'SELECT count(*) FROM "{schema}".audit_events')
    return n
