"""Distributed rate limiting: sliding window, sliding log and GCRA in Redis Lua (one round trip
for all limits of a request), an in-memory twin, a local fallback, and ASGI/FastAPI integration.

    from fleetkit.ratelimit import RateLimiter, Limit
    limiter = RateLimiter(redis=client, algorithm="sliding_window")
    d = await limiter.hit("user:42", Limit.parse("100/minute"), cost=1)
"""

from __future__ import annotations

from fleetkit.ratelimit.asgi import (
    PROBLEM_TYPE,
    Policy,
    RateLimitMiddleware,
    problem_body,
    ratelimit_headers,
    record_decision,
)
from fleetkit.ratelimit.keys import api_key_key, client_ip, ip_key, route_key, user_key
from fleetkit.ratelimit.limiter import Decision, LimitState, RateLimiter
from fleetkit.ratelimit.limits import Limit, parse_limits
from fleetkit.ratelimit.memory import MemoryBackend

__all__ = [
    "PROBLEM_TYPE",
    "Decision",
    "Limit",
    "LimitState",
    "MemoryBackend",
    "Policy",
    "RateLimitMiddleware",
    "RateLimiter",
    "api_key_key",
    "client_ip",
    "ip_key",
    "parse_limits",
    "problem_body",
    "ratelimit_headers",
    "record_decision",
    "route_key",
    "user_key",
]
