"""Prometheus metrics of the rate limiter (names ``fleetkit_ratelimit_*``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = ["BACKEND", "DECISIONS", "LIVE_INSTANCES", "REDIS_SECONDS", "SHADOW_DENIALS",
           "TRANSITIONS"]

DECISIONS = Counter(
    "fleetkit_ratelimit_decisions_total", "Rate limit decisions by policy, result and backend.",
    ["policy", "result", "backend"],
)
SHADOW_DENIALS = Counter(
    "fleetkit_ratelimit_shadow_denials_total",
    "Requests over a limit that shadow mode let through.", ["policy"],
)
BACKEND = Gauge(
    "fleetkit_ratelimit_backend", "1 for the backend a limiter decides with right now.",
    ["limiter", "backend"],
)
TRANSITIONS = Counter(
    "fleetkit_ratelimit_fallback_transitions_total",
    "Switches between Redis and the fallback, by target state.", ["limiter", "to"],
)
LIVE_INSTANCES = Gauge(
    "fleetkit_ratelimit_live_instances", "Instances seen by the last heartbeat.", ["limiter"]
)
REDIS_SECONDS = Histogram(
    "fleetkit_ratelimit_redis_seconds", "Latency of rate limit decisions made by Redis (sampled).",
    ["limiter"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
