"""Distributed sessions: Redis store (one atomic script per operation), ASGI middleware,
multi-region token routing. See :mod:`fleetkit.sessions.store` for the key layout."""

from __future__ import annotations

from fleetkit.errors import SessionError, SessionLimitExceeded
from fleetkit.sessions.asgi import SessionContext, SessionMiddleware
from fleetkit.sessions.regions import ForeignPolicy, RegionRouter, parse_region_urls
from fleetkit.sessions.store import OnLimit, Session, SessionInfo, SessionStore
from fleetkit.sessions.tokens import parse_token

__all__ = [
    "ForeignPolicy",
    "OnLimit",
    "RegionRouter",
    "Session",
    "SessionContext",
    "SessionError",
    "SessionInfo",
    "SessionLimitExceeded",
    "SessionMiddleware",
    "SessionStore",
    "parse_region_urls",
    "parse_token",
]
