"""Distributed rate limiting: sliding window, sliding log and GCRA in Redis Lua (one round trip
for all limits of a request), an in-memory twin, a local fallback, and ASGI/FastAPI integration.

    from fleetkit.ratelimit import RateLimiter, Limit
    limiter = RateLimiter(redis=client, algorithm="sliding_window")
    d = await limiter.hit("user:42", Limit.parse("100/minute"), cost=1)

Layout (as every stateful fleetkit package): ``backend.py`` the contract, ``redis.py`` and
``memory.py`` its implementations, ``limiter.py`` the component, ``asgi.py`` the middleware.
"""

from __future__ import annotations

from fleetkit.deprecation import renamed
from fleetkit.errors import RateLimitExceeded
from fleetkit.ratelimit.asgi import (
    PROBLEM_TYPE,
    Policy,
    RateLimitMiddleware,
    problem_body,
    ratelimit_headers,
    record_decision,
)
from fleetkit.ratelimit.backend import RateLimitBackend
from fleetkit.ratelimit.decision import Decision, LimitState
from fleetkit.ratelimit.keys import api_key_key, client_ip, ip_key, route_key, user_key
from fleetkit.ratelimit.limiter import RateLimiter
from fleetkit.ratelimit.limits import Limit, parse_limits
from fleetkit.ratelimit.memory import MemoryRateLimitBackend, MemoryStore
from fleetkit.ratelimit.redis import RedisRateLimitBackend

__all__ = [
    "PROBLEM_TYPE",
    "Decision",
    "Limit",
    "LimitState",
    "MemoryRateLimitBackend",
    "MemoryStore",
    "Policy",
    "RateLimitBackend",
    "RateLimitExceeded",
    "RateLimitMiddleware",
    "RateLimiter",
    "RedisRateLimitBackend",
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

# Deprecated: the name was also the breaker's and the sessions'.
__getattr__ = renamed(__name__, MemoryBackend=(MemoryStore, "MemoryStore (the backend is "
                                                            "MemoryRateLimitBackend)"))
