"""Prometheus metrics of the database router (``fleetkit_db_*``).

Counters are updated on the routing path; pool usage, replica lag and health are read from every
live :class:`~fleetkit.db.Database` at scrape time, so nothing runs in the background for them.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

if TYPE_CHECKING:
    from fleetkit.db.engines import PoolStats
    from fleetkit.db.replicas import Node

__all__ = ["ACQUIRE_TIMEOUTS", "FAILOVERS", "PRIMARY_READ_ONLY", "READS", "PoolSource", "track"]


class PoolSource(Protocol):
    """What the scrape-time collector reads (``fleetkit.db.Database`` is one)."""

    name: str
    replicas: list[Node]

    def pools(self) -> list[PoolStats]:
        """Size and connections in use of every pool."""

READS = Counter(
    "fleetkit_db_reads_total",
    "Reads routed, by target (replica/primary) and reason.",
    ["db", "target", "reason"],
)
FAILOVERS = Counter(
    "fleetkit_db_failovers_total",
    "Replicas taken out of rotation because a connection to them failed during a read.",
    ["db", "replica"],
)
PRIMARY_READ_ONLY = Counter(
    "fleetkit_db_primary_read_only_total",
    "Times the primary was found read-only (demoted) and its connections drained.",
    ["db"],
)
ACQUIRE_TIMEOUTS = Counter(
    "fleetkit_db_acquire_timeouts_total", "Pool checkouts that timed out, by pool.", ["db", "pool"]
)


class _DatabaseCollector(Collector):
    def __init__(self) -> None:
        self.databases: weakref.WeakSet[PoolSource] = weakref.WeakSet()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        in_use = GaugeMetricFamily(
            "fleetkit_db_pool_in_use", "Connections checked out, by pool.", labels=["db", "pool"]
        )
        size = GaugeMetricFamily(
            "fleetkit_db_pool_size", "Configured pool size, by pool.", labels=["db", "pool"]
        )
        lag = GaugeMetricFamily(
            "fleetkit_db_replica_lag_seconds", "Replay lag at the last check (-1 unknown).",
            labels=["db", "replica"],
        )
        healthy = GaugeMetricFamily(
            "fleetkit_db_replica_healthy", "1 while the replica is in the read rotation.",
            labels=["db", "replica"],
        )
        for db in list(self.databases):
            for pool in db.pools():
                in_use.add_metric([db.name, pool.name], pool.in_use)
                size.add_metric([db.name, pool.name], pool.size)
            for replica in db.replicas:
                lag.add_metric([db.name, replica.name],
                               -1.0 if replica.lag_seconds is None else replica.lag_seconds)
                healthy.add_metric([db.name, replica.name], 1.0 if replica.healthy else 0.0)
        yield in_use
        yield size
        yield lag
        yield healthy


_COLLECTOR = _DatabaseCollector()
REGISTRY.register(_COLLECTOR)


def track(db: PoolSource) -> None:
    _COLLECTOR.databases.add(db)
