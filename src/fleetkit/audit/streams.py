"""Stream key layout and entry format shared by the producer and the consumer.

The stream is sharded over ``shards`` keys, each with its own hash tag so a Redis Cluster spreads
them over its masters; a shard's dead-letter stream shares the shard's tag so moving an entry there
is one atomic script on one node.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fleetkit.errors import AuditError
from fleetkit.keys import AUDIT_PREFIX

__all__ = ["DEFAULT_PREFIX", "FORMAT_VERSION", "GROUP", "dead_key", "stream_key", "stream_keys",
           "xadd", "xadd_many"]

DEFAULT_PREFIX = AUDIT_PREFIX  # the key layout is fleetkit.keys
GROUP = "audit"
#: Entry fields: ``v`` (format version), ``n`` (event count), ``e`` (one JSON per line).
FORMAT_VERSION = b"1"


def stream_key(prefix: str, shard: int) -> str:
    return f"{prefix}:{{s{shard}}}"


def dead_key(prefix: str, shard: int) -> str:
    return f"{prefix}:dead:{{s{shard}}}"


def stream_keys(prefix: str, shards: int) -> list[str]:
    return [stream_key(prefix, i) for i in range(shards)]


async def xadd(redis: Any, key: str, payload: bytes, n: int, *,
               wait: tuple[int, int] = (0, 0)) -> None:
    """Append one entry of ``n`` events; with ``wait=(replicas, timeout_ms)`` also ``WAIT``."""
    replicas, timeout = wait
    if not replicas:
        await redis.execute_command("XADD", key, "*", "v", FORMAT_VERSION, "n", n, "e", payload)
        return
    pipe = redis.pipeline(transaction=False)
    pipe.execute_command("XADD", key, "*", "v", FORMAT_VERSION, "n", n, "e", payload)
    pipe.execute_command("WAIT", replicas, timeout)
    _, acked = await pipe.execute()
    if int(acked) < replicas:
        raise AuditError(f"only {acked} of {replicas} replicas acknowledged the entry")


async def xadd_many(redis: Any, entries: Sequence[tuple[str, bytes]]) -> int:
    """Append ``(key, payload)`` entries in one pipeline; the number of events they hold."""
    pipe = redis.pipeline(transaction=False)
    events = 0
    for key, payload in entries:
        n = payload.count(b"\n") + 1
        events += n
        pipe.execute_command("XADD", key, "*", "v", FORMAT_VERSION, "n", n, "e", payload)
    await pipe.execute()
    return events
