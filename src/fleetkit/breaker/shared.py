"""Deprecated module: the Redis backend is :mod:`fleetkit.breaker.redis` now."""

from __future__ import annotations

from fleetkit.breaker.redis import RedisBreakerBackend
from fleetkit.deprecation import renamed

__all__: list[str] = []

__getattr__ = renamed(__name__, RedisBackend=(RedisBreakerBackend,
                                              "fleetkit.breaker.RedisBreakerBackend"))
