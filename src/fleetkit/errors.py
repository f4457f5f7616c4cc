"""The fleetkit error hierarchy.

Every error fleetkit raises derives from :class:`FleetkitError`. Driver errors (redis-py, asyncpg,
SQLAlchemy) are wrapped with ``raise XError(...) from exc`` so callers catch one family and still
see the cause. Where callers used to catch a builtin (``ValueError`` for bad arguments), the error
keeps it as a second base. Each package re-exports its own
(``fleetkit.ratelimit.RateLimitExceeded``)::

    FleetkitError
    ├── ConfigError (ValueError)          a setting or constructor argument is invalid
    │   └── MiddlewareOrderError          components wired in the wrong order (start-up)
    ├── InvalidArgument (ValueError)      a call's argument is invalid (a limit text, an empty key)
    ├── UsageError (TypeError)            called the wrong way (wrong type, misplaced decorator)
    ├── ASGIError (RuntimeError)          a scope type an app does not serve, a failed lifespan
    ├── BackendUnavailable                Redis or PostgreSQL unreachable or timed out
    │   ├── DatabaseUnavailable (also DatabaseError)
    │   └── NoHealthyDatabase (also DatabaseError)
    ├── RedisCommandError                 Redis answered a command with an error
    ├── RateLimitExceeded                 RateLimiter.acquire() was denied
    ├── CircuitOpenError                  a circuit breaker refused the call
    ├── SessionError
    │   └── SessionLimitExceeded          the per-user cap with on_limit="refuse"
    ├── AuditError
    │   └── InvalidAuditEvent (ValueError)
    └── DatabaseError
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ASGIError",
    "AuditError",
    "BackendUnavailable",
    "CircuitOpenError",
    "ConfigError",
    "DatabaseError",
    "DatabaseUnavailable",
    "FleetkitError",
    "InvalidArgument",
    "InvalidAuditEvent",
    "MiddlewareOrderError",
    "NoHealthyDatabase",
    "RateLimitExceeded",
    "RedisCommandError",
    "SessionError",
    "SessionLimitExceeded",
    "UsageError",
]


class FleetkitError(Exception):
    """Base class of every fleetkit error."""


class ConfigError(FleetkitError, ValueError):
    """A setting is missing or invalid; the message names the setting."""


class MiddlewareOrderError(ConfigError):
    """A component is wired wrongly (missing or out-of-order middleware); raised at start-up
    (or on the first request when the server runs no lifespan), the message says what to do."""


class InvalidArgument(FleetkitError, ValueError):
    """A call's argument is invalid (not a construction-time setting: see ConfigError)."""


class UsageError(FleetkitError, TypeError):
    """fleetkit was called the wrong way: an argument of the wrong type, a misplaced decorator."""


class ASGIError(FleetkitError, RuntimeError):
    """An ASGI app was given a scope type it does not serve, or its lifespan failed."""


class BackendUnavailable(FleetkitError):
    """A datastore (Redis, PostgreSQL) could not be reached or timed out."""


class RedisCommandError(FleetkitError):
    """Redis answered a command with an error reply (not a connectivity problem)."""


class RateLimitExceeded(FleetkitError):
    """A request was denied by the rate limiter (raised by :meth:`RateLimiter.acquire`)."""

    def __init__(self, message: str = "rate limit exceeded", *, retry_after: float | None = None,
                 decision: Any = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        #: The :class:`~fleetkit.ratelimit.Decision` that denied it.
        self.decision = decision


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
