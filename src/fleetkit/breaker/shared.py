"""Redis backend: one Lua script decides every transition; pub/sub pushes the changes."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from fleetkit.breaker.rules import BreakerConfig
from fleetkit.breaker.state import Batch, Snapshot
from fleetkit.redis import Script

__all__ = ["SCRIPT", "RedisBackend"]

SCRIPT = Script.from_package("fleetkit.breaker", "breaker.lua")
log = logging.getLogger("fleetkit.breaker")


class RedisBackend:
    """Fleet-wide state of one breaker in Redis (standalone, Sentinel or Cluster).

    The three keys share the hash tag ``{<prefix>:<name>}``; the channel is not a key (plain
    PUBLISH reaches every node of a Cluster).
    """

    shared = True

    def __init__(self, client: Any, name: str, config: BreakerConfig, *,
                 key_prefix: str = "fleetkit:breaker") -> None:
        self.client = client
        tag = f"{{{key_prefix}:{name}}}"
        self.keys = [f"{tag}:state", f"{tag}:buckets", f"{tag}:leases"]
        self.channel = f"{key_prefix}:events:{name}"
        self._config_args = config.script_args()

    async def _run(self, op: str, *extra: str | int | float) -> Snapshot:
        args = [op, uuid.uuid4().hex, self.channel, *self._config_args, *extra]
        return Snapshot.parse(await SCRIPT(self.client, self.keys, args))

    async def flush(self, batch: Batch) -> Snapshot:
        return await self._run("flush", *batch.args())

    async def acquire(self, lease_id: str) -> Snapshot:
        return await self._run("acquire", lease_id)

    async def release(self, lease_id: str, gen: int, outcome: str) -> Snapshot:
        return await self._run("release", lease_id, gen, outcome)

    async def admin(self, action: str) -> Snapshot:
        return await self._run("admin", action)

    async def read(self) -> Snapshot:
        return await self.flush(Batch(gen=-1))

    async def listen(self, callback: Callable[[Snapshot], None], *,
                     on_subscribed: Callable[[], None], retry: float) -> None:
        """Deliver pushed snapshots until cancelled; resubscribe after connection losses.

        ``on_subscribed`` runs after every (re)subscription so the caller can poll once for
        changes published while it was not listening.
        """
        while True:
            pubsub = self.client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                on_subscribed()
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=retry)
                    if msg is None or msg.get("type") != "message":
                        continue
                    try:
                        callback(Snapshot.parse_message(msg["data"]))
                    except ValueError:
                        log.warning("breaker: ignored malformed message on %s", self.channel)
            except (RedisError, OSError) as exc:
                log.debug("breaker: subscription to %s lost: %s", self.channel, exc)
            finally:
                await pubsub.aclose()
            await asyncio.sleep(retry)

    async def aclose(self) -> None:
        """The client belongs to the caller; nothing to close here."""
