"""Prometheus metrics of the session store (labels are bounded: op, outcome, store name)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

__all__ = ["BACKEND_ERRORS", "CACHE_ENTRIES", "DEGRADED", "EVICTED", "FOREIGN", "OPERATIONS",
           "PRUNED", "STALE_SERVED", "WRITE_FAILURES"]

OPERATIONS = Counter(
    "fleetkit_sessions_operations_total", "Session operations by outcome.", ["op", "outcome"]
)
BACKEND_ERRORS = Counter(
    "fleetkit_sessions_backend_errors_total", "Session operations that could not reach Redis.",
    ["op"],
)
STALE_SERVED = Counter(
    "fleetkit_sessions_stale_served_total",
    "Sessions served from the local cache during a Redis outage (stale-if-error).",
)
DEGRADED = Gauge(
    "fleetkit_sessions_degraded", "1 while the store's Redis is unreachable.", ["store"]
)
CACHE_ENTRIES = Gauge(
    "fleetkit_sessions_cache_entries", "Recently validated sessions kept for outages.", ["store"]
)
EVICTED = Counter(
    "fleetkit_sessions_evicted_total", "Oldest sessions evicted by the per-user cap."
)
PRUNED = Counter(
    "fleetkit_sessions_index_pruned_total", "Per-user index entries of expired sessions removed.",
    ["by"],
)
FOREIGN = Counter(
    "fleetkit_sessions_foreign_tokens_total", "Tokens homed in another region.", ["outcome"]
)
WRITE_FAILURES = Counter(
    "fleetkit_sessions_middleware_write_failures_total",
    "Session changes the middleware could not save (the response still went out).",
)
