"""Distributed sessions: Redis store (one atomic script per operation), ASGI middleware,
multi-region token routing. See :mod:`fleetkit.sessions.store` for the key layout.

Layout (as every stateful fleetkit package): ``backend.py`` the contract, ``redis.py`` (with the
``.lua`` scripts next to it) and ``memory.py`` its implementations, ``store.py`` the component,
``asgi.py`` the middleware."""

from __future__ import annotations

from fleetkit.errors import SessionError, SessionLimitExceeded
from fleetkit.sessions.asgi import SessionContext, SessionMiddleware
from fleetkit.sessions.backend import SessionBackend
from fleetkit.sessions.memory import MemorySessionBackend
from fleetkit.sessions.redis import RedisSessionBackend
from fleetkit.sessions.regions import ForeignPolicy, RegionRouter, parse_region_urls
from fleetkit.sessions.store import OnLimit, Session, SessionInfo, SessionStore
from fleetkit.sessions.tokens import parse_token

__all__ = [
    "ForeignPolicy",
    "MemorySessionBackend",
    "OnLimit",
    "RedisSessionBackend",
    "RegionRouter",
    "Session",
    "SessionBackend",
    "SessionContext",
    "SessionError",
    "SessionInfo",
    "SessionLimitExceeded",
    "SessionMiddleware",
    "SessionStore",
    "parse_region_urls",
    "parse_token",
]
