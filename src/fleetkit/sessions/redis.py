"""The Redis session backend: the ``.lua`` scripts next to this file, through a coalescer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fleetkit.redis import Coalescer, CoalescerConfig, Script

__all__ = ["COALESCER", "CREATE", "GET", "LIST", "REVOKE", "REVOKE_ALL", "ROTATE", "UPDATE",
           "RedisSessionBackend"]

_PKG = "fleetkit.sessions"


def _script(filename: str) -> Script:
    """A session script behind the shared ``prelude.lua`` (its clock and HSET helper)."""
    return Script.from_package(_PKG, filename, prelude=["prelude.lua"])


CREATE = _script("create.lua")
GET = _script("get.lua")
UPDATE = _script("update.lua")
ROTATE = _script("rotate.lua")
REVOKE = _script("revoke.lua")
REVOKE_ALL = _script("revoke_all.lua")
LIST = _script("list.lua")

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
