"""The Redis session backend: the ``.lua`` scripts next to this file, through a coalescer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fleetkit.redis import Coalescer, CoalescerConfig, Script

__all__ = ["COALESCER", "CREATE", "GET", "LIST", "REVOKE", "REVOKE_ALL", "ROTATE", "UPDATE",
           "RedisSessionBackend"]

_PKG = "fleetkit.sessions"
CREATE = Script.from_package(_PKG, "create.lua")
GET = Script.from_package(_PKG, "get.lua")
UPDATE = Script.from_package(_PKG, "update.lua")
ROTATE = Script.from_package(_PKG, "rotate.lua")
REVOKE = Script.from_package(_PKG, "revoke.lua")
REVOKE_ALL = Script.from_package(_PKG, "revoke_all.lua")
LIST = Script.from_package(_PKG, "list.lua")

#: The batching the store is benchmarked with (bench/sessions.py): the coalescer's default.
COALESCER = CoalescerConfig()


class RedisSessionBackend:
    """Runs the scripts on a Redis/RedisCluster client, through ``coalescer`` when given."""

    def __init__(self, client: Any, coalescer: Coalescer | None = None) -> None:
        self.client = client
        # Always coalesce: concurrent operations share a few connections and round trips
        # instead of opening one connection each (a login burst would otherwise open dozens).
        self._own_coalescer = coalescer is None
        self.coalescer = coalescer or COALESCER.build(client)

    async def run(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        return await self.coalescer.run(script, keys, args)

    async def aclose(self) -> None:
        if self._own_coalescer:
            await self.coalescer.aclose()
