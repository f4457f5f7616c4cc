"""Per-role Redis statistics, exported as Prometheus metrics.

redis-py has no command hook that Prometheus can use, so the clients fleetkit creates are thin
subclasses that time ``execute_command`` (single commands) and count connection errors; the
coalescer times whole pipelines. A role that fails with a connection error and later succeeds
counts one reconnect, which is what an operator wants to see after a Redis restart.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from fleetkit.errors import ConfigError

__all__ = ["COMMAND_SECONDS", "InstrumentedCluster", "InstrumentedRedis", "RoleStats", "role_stats"]

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                   0.5, 1.0, 2.5)

COMMAND_SECONDS = Histogram(
    "fleetkit_redis_command_seconds", "Redis command (or pipeline) latency by role.",
    ["role", "command"], buckets=LATENCY_BUCKETS,
)
ERRORS = Counter("fleetkit_redis_errors_total", "Redis errors by role and kind.", ["role", "kind"])
RECONNECTS = Counter(
    "fleetkit_redis_reconnects_total", "Successful commands after a connection failure.", ["role"]
)


@dataclass
class RoleStats:
    """Plain counters for one role (cheap to read for health and ``stats()``)."""

    commands: int = 0
    errors: int = 0
    reconnects: int = 0
    down: bool = False
    last_error: str | None = None

    def ok(self, role: str, command: str, seconds: float) -> None:
        self.commands += 1
        COMMAND_SECONDS.labels(role, command).observe(seconds)
        if self.down:
            self.down = False
            self.reconnects += 1
            RECONNECTS.labels(role).inc()

    def failed(self, role: str, exc: BaseException) -> None:
        self.errors += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        connection = isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError)
        if connection:
            self.down = True
        ERRORS.labels(role, "connection" if connection else "reply").inc()


_STATS: dict[str, RoleStats] = {}


def role_stats(role: str) -> RoleStats:
    """The process-wide stats object of ``role`` (created on first use)."""
    stats = _STATS.get(role)
    if stats is None:
        stats = _STATS[role] = RoleStats()
    return stats


def _command_name(args: tuple[Any, ...]) -> str:
    name = args[0] if args else "?"
    return (name.decode() if isinstance(name, bytes) else str(name)).upper().split(" ")[0]


class InstrumentedRedis(Redis):
    """``redis.asyncio.Redis`` that records latency and errors for its role."""

    fleetkit_role: str = "main"
    #: Clients closed together with this one (the Sentinel connections of a sentinel client).
    fleetkit_owned: tuple[Redis, ...] = ()

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        for owned in self.fleetkit_owned:
            await owned.aclose()

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        stats = role_stats(self.fleetkit_role)
        start = time.perf_counter()
        try:
            result = await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        except Exception as exc:
            stats.failed(self.fleetkit_role, exc)
            raise
        stats.ok(self.fleetkit_role, _command_name(args), time.perf_counter() - start)
        return result


class InstrumentedCluster(RedisCluster):
    """``redis.asyncio.RedisCluster`` that records latency and errors for its role."""

    fleetkit_role: str = "main"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().__init__(*args, **kwargs)
        except Exception as exc:  # the driver refuses its arguments (no nodes, bad options)
            raise ConfigError(f"Redis Cluster client: {exc}") from exc

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        stats = role_stats(self.fleetkit_role)
        start = time.perf_counter()
        try:
            result = await super().execute_command(*args, **kwargs)
        except Exception as exc:
            stats.failed(self.fleetkit_role, exc)
            raise
        stats.ok(self.fleetkit_role, _command_name(args), time.perf_counter() - start)
        return result


def pool_in_use(client: Redis | RedisCluster) -> int:
    """Connections currently checked out of the client's pool(s)."""
    if isinstance(client, RedisCluster):
        return sum(len(node._connections) - len(node._free) for node in client.get_nodes())
    pool = client.connection_pool
    return len(getattr(pool, "_in_use_connections", ()))


class _PoolCollector(Collector):
    """Reads pool usage of every live client at scrape time (no background task)."""

    def __init__(self) -> None:
        self.clients: weakref.WeakSet[Redis | RedisCluster] = weakref.WeakSet()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        in_use = GaugeMetricFamily(
            "fleetkit_redis_pool_in_use", "Connections checked out, by role.", labels=["role"]
        )
        up = GaugeMetricFamily(
            "fleetkit_redis_up", "1 unless the role's last command failed to connect.",
            labels=["role"],
        )
        totals: dict[str, int] = {}
        for client in list(self.clients):
            role = getattr(client, "fleetkit_role", "main")
            totals[role] = totals.get(role, 0) + pool_in_use(client)
        for role, value in sorted(totals.items()):
            in_use.add_metric([role], value)
            up.add_metric([role], 0.0 if role_stats(role).down else 1.0)
        yield in_use
        yield up


POOLS = _PoolCollector()
REGISTRY.register(POOLS)
