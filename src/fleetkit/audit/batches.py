"""What both audit sinks share: the stored columns, the hash chain, the write result.

Imported by the SQLite sink (:mod:`fleetkit.audit.sink`) and the PostgreSQL one
(:mod:`fleetkit.audit.pgsink`) alike; it needs no database driver.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from fleetkit.errors import AuditError, ConfigError

__all__ = ["COLUMNS", "GENESIS", "SinkDataError", "WriteResult", "chain_hash", "to_asyncpg_url"]

#: The previous hash of the first batch.
GENESIS = bytes(32)
#: The stored columns, in order (both sinks).
COLUMNS = ("event_id", "time", "actor", "action", "resource", "outcome", "reason", "client_ip",
           "user_agent", "request_id", "instance", "metadata")


class SinkDataError(AuditError):
    """The batch holds data the database refuses (a poison entry): retrying will not help."""


@dataclass(frozen=True, slots=True)
class WriteResult:
    events: int
    inserted: int
    batch_id: int | None

    @property
    def duplicates(self) -> int:
        return self.events - self.inserted


def chain_hash(prev: bytes, batch_id: int, digest: bytes) -> bytes:
    """hash = sha256(prev_hash || int8 big-endian batch_id || rows_digest) (as in SQL)."""
    return hashlib.sha256(prev + batch_id.to_bytes(8, "big", signed=True) + digest).digest()


def to_asyncpg_url(url: str) -> str:
    """Accept SQLAlchemy-style ``postgresql+asyncpg://`` URLs too (asyncpg wants the plain form)."""
    scheme, sep, rest = url.partition("://")
    if scheme.split("+")[0] not in ("postgresql", "postgres"):
        raise ConfigError("the audit sink needs a postgresql:// URL")
    return f"postgresql{sep}{rest}"
