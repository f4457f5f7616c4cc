"""Prometheus metrics of the session monitor, set in the main process from worker messages."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = ["ACTIVE", "HEARTBEAT_AGE", "LEADER", "PASS_SECONDS", "PRUNED", "RATE", "RESTARTS",
           "UP", "USERS", "USERS_BY_SESSIONS"]

UP = Gauge("fleetkit_monitor_worker_up", "1 while the monitor worker process sends heartbeats.")
RESTARTS = Counter("fleetkit_monitor_worker_restarts_total",
                   "Monitor worker restarts by reason.", ["reason"])
HEARTBEAT_AGE = Gauge("fleetkit_monitor_heartbeat_age_seconds",
                      "Seconds since the last worker heartbeat.")
LEADER = Gauge("fleetkit_monitor_lease_held",
               "1 when this instance holds the fleet-wide cleanup lease.")
PASS_SECONDS = Histogram("fleetkit_monitor_cleanup_pass_seconds",
                         "Duration of one cleanup pass over every per-user index.",
                         buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
ACTIVE = Gauge("fleetkit_monitor_sessions_active",
               "Live sessions in the fleet (last pass of the lease holder).")
USERS = Gauge("fleetkit_monitor_users_active", "Users with at least one live session.")
USERS_BY_SESSIONS = Gauge("fleetkit_monitor_users_by_sessions",
                          "Users by number of live sessions (distribution).", ["sessions"])
RATE = Gauge("fleetkit_monitor_sessions_rate",
             "Sessions per second between the last two passes.", ["event"])
PRUNED = Counter("fleetkit_monitor_index_entries_pruned_total",
                 "Per-user index entries removed by the monitor.", ["reason"])
