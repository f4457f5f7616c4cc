"""Deprecated module: the Redis backend is :mod:`fleetkit.breaker.redis` now."""

from __future__ import annotations

import warnings
from typing import Any

from fleetkit.breaker.redis import RedisBreakerBackend

__all__: list[str] = []


def __getattr__(name: str) -> Any:
    if name == "RedisBackend":
        warnings.warn("fleetkit.breaker.shared.RedisBackend is deprecated: use "
                      "fleetkit.breaker.RedisBreakerBackend", DeprecationWarning, stacklevel=2)
        return RedisBreakerBackend
    raise AttributeError(f"module 'fleetkit.breaker.shared' has no attribute {name!r}")
