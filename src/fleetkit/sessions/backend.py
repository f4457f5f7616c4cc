"""The session backend contract: what :class:`~fleetkit.sessions.SessionStore` needs.

Every store operation is one script (``create.lua``, ``get.lua``, ...): the store builds its keys
and arguments and a backend runs it. Two implementations:
:class:`~fleetkit.sessions.redis.RedisSessionBackend` (the scripts on Redis, through a coalescer)
and :class:`~fleetkit.sessions.memory.MemorySessionBackend` (a Python port of each script over a
process-local keyspace, same replies: embedded mode). The store's tests run one body over both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from fleetkit.redis import Script

__all__ = ["SessionBackend"]


class SessionBackend(Protocol):
    async def run(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run ``script`` atomically; raise BackendUnavailable when the datastore is down."""
        ...

    async def aclose(self) -> None:
        """Release what the backend made (its coalescer)."""
        ...
