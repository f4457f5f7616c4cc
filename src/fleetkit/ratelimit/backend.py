"""The rate limit backend contract: what :class:`~fleetkit.ratelimit.RateLimiter` needs.

Two implementations: :class:`~fleetkit.ratelimit.redis.RedisRateLimitBackend` (the Lua scripts
through a coalescer, shared by the fleet) and
:class:`~fleetkit.ratelimit.memory.MemoryRateLimitBackend` (the Python twin of the scripts, one
process: embedded mode and the local fallback). The limiter is written only against this
Protocol; both answer the same calls with the same bytes (``tests/ratelimit/test_backends.py``).

A decision travels in the scripts' binary format (``prologue.lua``): the argument is int32 cost,
int8 dry, int64 now_us (-1: the backend's clock), then int64 window_ms and int64 amount per
limit; the reply is int8 allowed, then int64 remaining, reset_ms, retry_ms per limit
(:mod:`fleetkit.ratelimit.decision`). ``submit`` returns a future rather than a coroutine so
that many decisions can be queued before the first is awaited (they share one round trip).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Literal, Protocol

__all__ = ["Algorithm", "RateLimitBackend"]

Algorithm = Literal["sliding_window", "sliding_log", "gcra"]


class RateLimitBackend(Protocol):
    """Decides rate limits for one algorithm."""

    #: ``Decision.backend`` of its decisions: ``redis`` or ``memory``.
    name: str
    #: State shared by the fleet: the limiter then keeps a heartbeat, caches denials (to save
    #: round trips) and falls back to local decisions when a call fails.
    distributed: bool

    def submit(self, keys: Sequence[str], arg: bytes, reply_size: int) -> asyncio.Future[bytes]:
        """Queue one decision over ``keys`` (one per limit); the future gets the binary reply
        of ``reply_size`` bytes, or the backend's error."""
        ...

    async def delete(self, keys: Sequence[str]) -> None:
        """Forget the state of ``keys``."""
        ...

    async def announce(self, key: str, instance_id: str, ttl_ms: int, *, leave: bool) -> int:
        """Mark ``instance_id`` live for ``ttl_ms`` in the set ``key`` (or remove it when
        ``leave``) and return how many instances are live."""
        ...

    async def aclose(self) -> None:
        """Release what the backend made (its coalescer)."""
        ...
