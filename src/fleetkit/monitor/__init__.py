"""The session monitor: a supervised worker process that cleans per-user session indexes
(cluster-aware SCAN, one fleet-wide lease) and reports session metrics to Prometheus."""

from __future__ import annotations

from fleetkit.monitor.supervisor import SessionMonitor
from fleetkit.monitor.worker import WorkerConfig

__all__ = ["SessionMonitor", "WorkerConfig"]
