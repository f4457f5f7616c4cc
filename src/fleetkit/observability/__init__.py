"""Observability: Prometheus ``/metrics`` (multiprocess-aware), HTTP metrics, JSON logs."""

from __future__ import annotations

from fleetkit.observability.http import UNMATCHED, HTTPMetricsMiddleware
from fleetkit.observability.logging import (
    JsonFormatter,
    RequestIdFilter,
    RequestIdMiddleware,
    configure_logging,
    get_request_id,
)
from fleetkit.observability.metrics import (
    MetricsApp,
    mark_process_dead,
    prepare_multiproc_dir,
    render_metrics,
)

__all__ = [
    "UNMATCHED",
    "HTTPMetricsMiddleware",
    "JsonFormatter",
    "MetricsApp",
    "RequestIdFilter",
    "RequestIdMiddleware",
    "configure_logging",
    "get_request_id",
    "mark_process_dead",
    "prepare_multiproc_dir",
    "render_metrics",
]
