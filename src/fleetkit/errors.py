"""The fleetkit error hierarchy.

Every error fleetkit raises derives from :class:`FleetkitError`. Driver errors (redis-py, asyncpg,
SQLAlchemy) are wrapped with ``raise XError(...) from exc`` so callers catch one family and still
see the cause.
"""

from __future__ import annotations

__all__ = [
    "AuditError",
    "BackendUnavailable",
    "CircuitOpenError",
    "ConfigError",
    "DatabaseError",
    "DatabaseUnavailable",
    "FleetkitError",
    "InvalidAuditEvent",
    "MiddlewareOrderError",
    "NoHealthyDatabase",
    "RateLimitExceeded",
    "RedisCommandError",
    "SessionError",
    "SessionLimitExceeded",
]


class FleetkitError(Exception):
    """Base class of every fleetkit error."""


class ConfigError(FleetkitError, ValueError):
    """A setting is missing or invalid; the message names the setting."""


class MiddlewareOrderError(ConfigError):
    """A component is wired wrongly (missing or out-of-order middleware); raised at start-up
    (or on the first request when the server runs no lifespan), the message says what to do."""


class BackendUnavailable(FleetkitError):
    """A datastore (Redis, PostgreSQL) could not be reached or timed out."""


class RedisCommandError(FleetkitError):
    """Redis answered a command with an error reply (not a connectivity problem)."""


class RateLimitExceeded(FleetkitError):
    """A request was denied by the rate limiter."""

    def __init__(self, message: str = "rate limit exceeded", *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class CircuitOpenError(FleetkitError):
    """A call was rejected because the circuit breaker is open."""

    def __init__(self, name: str, state: str, retry_after: float | None = None) -> None:
        super().__init__(f"circuit {name!r} is {state}")
        self.name = name
        self.state = state
        self.retry_after = retry_after


class SessionError(FleetkitError):
    """A session operation failed."""


class SessionLimitExceeded(SessionError):
    """The user already has ``max_per_user`` sessions and the policy is to refuse."""


class AuditError(FleetkitError):
    """The audit pipeline failed."""


class InvalidAuditEvent(AuditError, ValueError):
    """An audit event failed validation at ``log()``."""


class DatabaseError(FleetkitError):
    """A database operation failed."""


class DatabaseUnavailable(DatabaseError, BackendUnavailable):
    """A database server could not be reached, dropped the connection or timed out."""


class NoHealthyDatabase(DatabaseError, BackendUnavailable):
    """No database (not even the primary) can serve the request."""
