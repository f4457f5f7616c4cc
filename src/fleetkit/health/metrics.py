"""Prometheus metrics of the health registry.

Gauges use the ``live*`` multiprocess modes so that, with several worker processes, a scrape shows
the worst live worker (``livemin`` of a check's status, ``livemax`` of loop lag) and dead workers'
files are ignored.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = ["CHECK_RUNS", "CHECK_SECONDS", "CHECK_STATUS", "LOOP_LAG", "READY", "STALE_RESPONSES"]

#: 1 pass, 0.5 warn, 0 fail — the damped status the endpoints report.
CHECK_STATUS = Gauge(
    "fleetkit_health_check_status", "Damped check status: 1 pass, 0.5 warn, 0 fail.",
    ["check", "critical"], multiprocess_mode="livemin",
)
CHECK_SECONDS = Histogram(
    "fleetkit_health_check_duration_seconds", "Duration of one health check run.", ["check"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
CHECK_RUNS = Counter(
    "fleetkit_health_check_runs_total", "Health check runs by raw result.", ["check", "result"]
)
READY = Gauge(
    "fleetkit_health_ready",
    "1 when /health/ready answers 200 (critical checks pass, not shutting down).",
    multiprocess_mode="livemin",
)
LOOP_LAG = Gauge(
    "fleetkit_health_event_loop_lag_seconds", "Event loop lag measured by the liveness ticker.",
    multiprocess_mode="livemax",
)
STALE_RESPONSES = Counter(
    "fleetkit_health_stale_responses_total",
    "Health responses that served a cached result whose refresh missed the deadline.", ["endpoint"],
)

STATUS_VALUE = {"pass": 1.0, "warn": 0.5, "fail": 0.0}
