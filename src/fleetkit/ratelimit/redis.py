"""The Redis rate limit backend: one Lua script per algorithm, sent through a coalescer.

Each algorithm's script is the shared ``prologue.lua``, the algorithm's ``decide()`` and the
shared ``epilogue.lua`` (Redis scripts cannot include one another). On standalone Redis the
coalescer merges the concurrent decisions of a batch into one EVALSHA
(:meth:`~fleetkit.redis.Coalescer.submit_merged`); on a Cluster each decision is its own call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from importlib import resources
from typing import Any

from fleetkit.errors import ConfigError
from fleetkit.ratelimit.backend import Algorithm
from fleetkit.redis import Coalescer, CoalescerConfig, Script

__all__ = ["COALESCER", "HEARTBEAT", "SCRIPTS", "RedisRateLimitBackend"]


def _lua(name: str) -> str:
    return resources.files("fleetkit.ratelimit").joinpath(f"{name}.lua").read_text("utf-8")


SCRIPTS: dict[str, Script] = {
    name: Script(_lua("prologue") + _lua(name) + _lua("epilogue"), name=name)
    for name in ("sliding_window", "sliding_log", "gcra")
}
HEARTBEAT = Script.from_package("fleetkit.ratelimit", "heartbeat.lua")

# The limiter's coalescer sends smaller batches, several on the wire at once: its scripts
# cost Redis several microseconds a decision, and with one big batch Python would sit idle
# while Redis runs it. Smaller batches overlap the work here with script execution there.
# The one place that decides it: RateLimiter.from_settings (the service) and
# bench/ratelimit.py both ask RedisClients.coalescer(role, COALESCER) for it.
COALESCER = CoalescerConfig(max_batch=32, max_inflight=8)


class RedisRateLimitBackend:
    """:class:`~fleetkit.ratelimit.backend.RateLimitBackend` on a Redis or RedisCluster client.

    ``coalescer`` shares an existing one (``clients.coalescer("ratelimit", COALESCER)``);
    otherwise the backend makes one with :data:`COALESCER` and closes it in :meth:`aclose`.
    """

    name = "redis"
    distributed = True

    def __init__(self, client: Any, *, algorithm: Algorithm = "sliding_window",
                 coalescer: Coalescer | None = None) -> None:
        if algorithm not in SCRIPTS:
            raise ConfigError(f"unknown algorithm {algorithm!r}; use one of {sorted(SCRIPTS)}")
        self.client = client
        self.script = SCRIPTS[algorithm]
        self._own_coalescer = coalescer is None
        self.coalescer = coalescer or COALESCER.build(client)

    def submit(self, keys: Sequence[str], arg: bytes, reply_size: int) -> asyncio.Future[bytes]:
        return self.coalescer.submit_merged(self.script, keys, arg, reply_size)

    async def delete(self, keys: Sequence[str]) -> None:
        await self.coalescer.execute("DEL", *keys)

    async def announce(self, key: str, instance_id: str, ttl_ms: int, *, leave: bool) -> int:
        live = await self.coalescer.run(HEARTBEAT, [key], [instance_id, ttl_ms,
                                                           "1" if leave else "0"])
        return int(live)

    async def aclose(self) -> None:
        if self._own_coalescer:
            await self.coalescer.aclose()
