"""Database URL normalisation: one driver per backend (asyncpg, aiosqlite)."""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from fleetkit.config import redact_url
from fleetkit.errors import ConfigError

__all__ = ["is_sqlite", "normalize_url", "server_name"]

_PG = {"postgresql", "postgres", "postgresql+asyncpg"}
_SQLITE = {"sqlite", "sqlite+aiosqlite"}


def normalize_url(url: str | URL) -> URL:
    """``postgresql://``/``postgres://`` → ``postgresql+asyncpg://``; ``sqlite://`` → aiosqlite.

    Any other driver is refused: the router relies on asyncpg's error codes and LSN functions.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"invalid database URL {redact_url(str(url))!r}") from exc
    name = parsed.drivername.lower()
    if name in _PG:
        return parsed.set(drivername="postgresql+asyncpg")
    if name in _SQLITE:
        return parsed.set(drivername="sqlite+aiosqlite")
    raise ConfigError(
        f"unsupported database URL scheme {parsed.drivername!r}: use postgresql://, "
        "postgresql+asyncpg://, sqlite:// or sqlite+aiosqlite://"
    )


def is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def server_name(url: URL) -> str:
    """``host:port`` for labels and logs (never the password)."""
    if is_sqlite(url):
        return f"sqlite:{url.database or ':memory:'}"
    return f"{url.host or 'localhost'}:{url.port or 5432}"
