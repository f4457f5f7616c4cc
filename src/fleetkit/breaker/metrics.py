"""Prometheus metrics of the circuit breakers (label ``breaker`` = breaker name)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

__all__ = ["CALLS", "FLUSH_LAG", "LOCAL_ONLY", "REJECTED", "SLOW_CALLS", "STATE", "TRANSITIONS"]

CALLS = Counter("fleetkit_breaker_calls_total",
                "Calls that ran through a breaker, by outcome (success, failure, ignored).",
                ["breaker", "outcome"])
SLOW_CALLS = Counter("fleetkit_breaker_slow_calls_total",
                     "Calls slower than the breaker's slow_call_seconds.", ["breaker"])
REJECTED = Counter("fleetkit_breaker_rejected_calls_total",
                   "Calls rejected without running, by the state that rejected them.",
                   ["breaker", "state"])
TRANSITIONS = Counter("fleetkit_breaker_transitions_total",
                      "State changes seen by this instance.", ["breaker", "from_state", "to_state"])
STATE = Gauge("fleetkit_breaker_state", "1 for the breaker's current state, 0 for the others.",
              ["breaker", "state"])
FLUSH_LAG = Gauge("fleetkit_breaker_flush_lag_seconds",
                  "Seconds since outcomes were last flushed to the shared state.", ["breaker"])
LOCAL_ONLY = Gauge("fleetkit_breaker_local_only",
                   "1 while Redis is unreachable and the breaker decides on local state only.",
                   ["breaker"])
