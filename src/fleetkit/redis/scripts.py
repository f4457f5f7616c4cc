"""Lua script registry: load once, EVALSHA, transparent NOSCRIPT reload, Cluster-safe.

Scripts live in ``.lua`` files next to the component that uses them::

    HIT = Script.from_package("fleetkit.ratelimit", "sliding_window.lua")
    result = await HIT(client, keys=[...], args=[...])          # one EVALSHA
    result = await coalescer.run(HIT, keys=[...], args=[...])   # coalesced into a pipeline

After ``SCRIPT FLUSH``, a restart or a Cluster failover the node answers NOSCRIPT; the script is
loaded on that node (``SCRIPT LOAD`` through a keyed ``EVAL`` so Cluster routes it to the right
slot) and the call is retried once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from importlib import resources
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from fleetkit.errors import BackendUnavailable, RedisCommandError

__all__ = ["Script", "wrap_redis_error"]

EncodedArg = str | bytes | int | float

_REGISTRY: dict[str, Script] = {}


def wrap_redis_error(exc: BaseException) -> BaseException:
    """Translate a redis-py error into the fleetkit family (others are returned unchanged)."""
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError):
        wrapped: BaseException = BackendUnavailable(f"Redis unavailable: {exc}")
    elif isinstance(exc, ResponseError):
        wrapped = RedisCommandError(str(exc))
    else:
        return exc
    wrapped.__cause__ = exc
    return wrapped


class Script:
    """A Lua script known by its SHA1; call it on any client (standalone or Cluster)."""

    __slots__ = ("name", "sha", "source")

    def __init__(self, source: str, *, name: str = "script") -> None:
        self.source = source
        self.name = name
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
        _REGISTRY[self.sha] = self

    @classmethod
    def from_package(cls, package: str, filename: str, *,
                     prelude: Sequence[str] = ()) -> Script:
        """Load ``filename`` shipped inside ``package`` (works from wheels and zips).

        ``prelude``: files of the same package put in front of it, in order: the helpers
        several scripts share (Redis scripts cannot include one another).
        """
        files = resources.files(package)
        source = "".join(files.joinpath(name).read_text(encoding="utf-8")
                         for name in (*prelude, filename))
        return cls(source, name=filename.removesuffix(".lua"))

    @staticmethod
    def registered() -> list[Script]:
        """Every script created in this process (loaded eagerly by ``RedisClients.preload``)."""
        return list(_REGISTRY.values())

    def evalsha_args(
        self, keys: Sequence[EncodedArg], args: Sequence[EncodedArg]
    ) -> tuple[Any, ...]:
        """The EVALSHA command as a tuple of arguments, for pipelines."""
        return ("EVALSHA", self.sha, len(keys), *keys, *args)

    async def load(self, client: Any) -> None:
        """SCRIPT LOAD on every primary (Cluster) or the server (standalone)."""
        await client.script_load(self.source)

    async def __call__(self, client: Any, keys: Sequence[EncodedArg] = (),
                      args: Sequence[EncodedArg] = ()) -> Any:
        """Run the script with one EVALSHA; on NOSCRIPT load it and retry once."""
        try:
            try:
                return await client.evalsha(self.sha, len(keys), *keys, *args)
            except NoScriptError:
                # EVAL both runs and caches the script on the node that owns the keys' slot.
                return await client.eval(self.source, len(keys), *keys, *args)
        except Exception as exc:
            wrapped = wrap_redis_error(exc)
            if wrapped is exc:
                raise
            raise wrapped from exc
