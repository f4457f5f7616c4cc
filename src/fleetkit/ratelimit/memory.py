"""The in-memory rate limit backend: the Lua scripts' Python twin, in one process.

Used for embedded mode (``redis=None``) and as the limiter's local fallback while Redis is down.
State is a bounded LRU (``max_keys``) with the same TTLs the scripts set, so memory stays flat
under key churn. It takes and gives the scripts' binary argument and reply
(:mod:`fleetkit.ratelimit.backend`), so the limiter runs one code path on both backends.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from fleetkit.deprecation import renamed
from fleetkit.errors import ConfigError
from fleetkit.ratelimit.algorithms import ALGORITHMS
from fleetkit.ratelimit.backend import Algorithm
from fleetkit.ratelimit.decision import pack_reply
from fleetkit.ratelimit.limits import HEADER

__all__ = ["ALGORITHMS", "MemoryRateLimitBackend", "MemoryStore"]

_LIMIT = struct.Struct("<qq")


class MemoryStore:
    """Per-key state with expiry, least recently used keys evicted beyond ``max_keys``."""

    def __init__(self, *, max_keys: int = 100_000) -> None:
        if max_keys < 1:
            raise ConfigError("max_keys must be >= 1")
        self.max_keys = max_keys
        self._data: OrderedDict[str, tuple[Any, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str, now_us: int) -> Any:
        item = self._data.get(key)
        if item is None:
            return None
        if item[1] <= now_us:
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return item[0]

    def set(self, key: str, value: Any, ttl_ms: int | None, now_us: int) -> None:
        """Store with a TTL, or keep the current expiry when ``ttl_ms`` is None (KEEPTTL)."""
        if ttl_ms is None:
            self._data[key] = (value, self._data[key][1])
        else:
            self._data[key] = (value, now_us + ttl_ms * 1000)
        self._data.move_to_end(key)
        while len(self._data) > self.max_keys:
            self._data.popitem(last=False)

    def delete(self, *keys: str) -> int:
        return sum(self._data.pop(k, None) is not None for k in keys)

    def clear(self) -> None:
        self._data.clear()


class MemoryRateLimitBackend:
    """:class:`~fleetkit.ratelimit.backend.RateLimitBackend` in this process's memory."""

    name = "memory"
    distributed = False

    def __init__(self, *, algorithm: Algorithm = "sliding_window",
                 max_keys: int = 100_000) -> None:
        if algorithm not in ALGORITHMS:
            raise ConfigError(f"unknown algorithm {algorithm!r}; use one of {sorted(ALGORITHMS)}")
        self.store = MemoryStore(max_keys=max_keys)
        self._evaluate = ALGORITHMS[algorithm]
        self._instances: dict[str, int] = {}  # heartbeat set: instance id -> expiry (ms)

    def __len__(self) -> int:
        return len(self.store)

    def decide(self, keys: Sequence[str], arg: bytes) -> list[int]:
        """One decision in the scripts' argument format; the reply as integers."""
        cost, dry, now_us = HEADER.unpack_from(arg)
        if now_us < 0:
            now_us = time.time_ns() // 1000
        args: list[int] = []
        for offset in range(HEADER.size, len(arg), _LIMIT.size):
            args += _LIMIT.unpack_from(arg, offset)
        return self._evaluate(self.store, keys, args, cost, bool(dry), now_us)

    def submit(self, keys: Sequence[str], arg: bytes, reply_size: int) -> asyncio.Future[bytes]:
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        future.set_result(pack_reply(self.decide(keys, arg)))
        return future

    async def delete(self, keys: Sequence[str]) -> None:
        self.store.delete(*keys)

    async def announce(self, key: str, instance_id: str, ttl_ms: int, *, leave: bool) -> int:
        now = time.time_ns() // 1_000_000  # as heartbeat.lua, one process: the set is local
        if leave:
            self._instances.pop(instance_id, None)
        else:
            self._instances[instance_id] = now + ttl_ms
        self._instances = {i: t for i, t in self._instances.items() if t > now}
        return len(self._instances)

    def clear(self) -> None:
        self.store.clear()

    async def aclose(self) -> None:
        self.store.clear()


__getattr__ = renamed(__name__, MemoryBackend=(MemoryStore, "MemoryStore (the backend is "
                                                            "MemoryRateLimitBackend)"))
