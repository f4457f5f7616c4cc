"""Stream key layout shared by the producer and the consumer.

The stream is sharded over ``shards`` keys, each with its own hash tag so a Redis Cluster spreads
them over its masters; a shard's dead-letter stream shares the shard's tag so moving an entry there
is one atomic script on one node.
"""

from __future__ import annotations

__all__ = ["DEFAULT_PREFIX", "FORMAT_VERSION", "GROUP", "dead_key", "stream_key", "stream_keys"]

DEFAULT_PREFIX = "fleetkit:audit"
GROUP = "audit"
#: Entry fields: ``v`` (format version), ``n`` (event count), ``e`` (one JSON per line).
FORMAT_VERSION = b"1"


def stream_key(prefix: str, shard: int) -> str:
    return f"{prefix}:{{s{shard}}}"


def dead_key(prefix: str, shard: int) -> str:
    return f"{prefix}:dead:{{s{shard}}}"


def stream_keys(prefix: str, shards: int) -> list[str]:
    return [stream_key(prefix, i) for i in range(shards)]
