"""Redis role clients (main, rate limit, sessions), URL forms, scripts and coalescing."""

from __future__ import annotations

from fleetkit.errors import BackendUnavailable, RedisCommandError
from fleetkit.redis.clients import ROLES, PingResult, RedisClients, Role
from fleetkit.redis.coalescer import Coalescer, CoalescerConfig
from fleetkit.redis.connect import AnyRedis, ClientOptions, create_client
from fleetkit.redis.scripts import Script, wrap_redis_error
from fleetkit.redis.stats import role_stats

__all__ = [
    "ROLES",
    "AnyRedis",
    "BackendUnavailable",
    "ClientOptions",
    "Coalescer",
    "CoalescerConfig",
    "PingResult",
    "RedisClients",
    "RedisCommandError",
    "Role",
    "Script",
    "create_client",
    "role_stats",
    "wrap_redis_error",
]
