"""Redis backend: one Lua script decides every transition; pub/sub pushes the changes."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from fleetkit.breaker.backend import AdminAction, TrialVerdict
from fleetkit.breaker.rules import BreakerConfig
from fleetkit.breaker.state import Batch, Snapshot
from fleetkit.keys import BREAKER_PREFIX, breaker_keys
from fleetkit.redis import Script

__all__ = ["DEFAULT_KEY_PREFIX", "SCRIPT", "RedisBreakerBackend", "breaker_keys"]

SCRIPT = Script.from_package("fleetkit.breaker", "breaker.lua")
DEFAULT_KEY_PREFIX = BREAKER_PREFIX
log = logging.getLogger("fleetkit.breaker")


class RedisBreakerBackend:
    """Fleet-wide state of one breaker in Redis (standalone, Sentinel or Cluster).

    The client belongs to the caller: this backend opens nothing of its own except the pub/sub
    connection of :meth:`watch`, which ends with it.
    """

    kind = "redis"

    def __init__(self, client: Any, name: str, config: BreakerConfig, *,
                 key_prefix: str = DEFAULT_KEY_PREFIX) -> None:
        self.client = client
        self.keys, self.channel = breaker_keys(key_prefix, name)
        self._config_args = config.script_args()

    async def _run(self, op: str, *extra: str | int | float) -> Snapshot:
        args = [op, uuid.uuid4().hex, self.channel, *self._config_args, *extra]
        return Snapshot.parse(await SCRIPT(self.client, self.keys, args))

    async def flush(self, batch: Batch) -> Snapshot:
        return await self._run("flush", *batch.args())

    async def acquire(self, lease_id: str) -> Snapshot:
        return await self._run("acquire", lease_id)

    async def release(self, lease_id: str, gen: int, verdict: TrialVerdict) -> Snapshot:
        return await self._run("release", lease_id, gen, verdict)

    async def admin(self, action: AdminAction) -> Snapshot:
        return await self._run("admin", action)

    async def watch(self, callback: Callable[[Snapshot], None], *,
                    on_subscribed: Callable[[], None], retry: float) -> None:
        """Deliver pushed snapshots until cancelled; resubscribe after connection losses."""
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
