"""Audit log pipeline: producer (packed Redis stream entries, disk spool), consumer, sinks.

    log = AuditLog(redis=client)                 # redis=None: embedded mode (SQLite)
    await log.log(AuditEvent(actor="u1", action="session.create", resource="session/9",
                             outcome="success"))
    await log.flush(); await log.aclose()

The consumer runs as ``fleetkit worker audit`` (:class:`AuditConsumer`); ``fleetkit audit
verify`` checks the hash chain and ``fleetkit audit prune --older-than 400d`` drops old partitions.

Producing events needs Redis (or nothing, embedded) but no PostgreSQL driver: ``AuditConsumer``
and ``PostgresSink`` (which need asyncpg) are imported on first use, not by ``import
fleetkit.audit`` (tests/audit/test_imports.py runs a producer with asyncpg and SQLAlchemy
blocked).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fleetkit.audit.events import AuditEvent, Outcome, uuid7
from fleetkit.audit.producer import AuditLog
from fleetkit.audit.schema import install, prune
from fleetkit.audit.sink import SqliteSink, WriteResult
from fleetkit.audit.verify import VerifyResult, verify_postgres, verify_sqlite
from fleetkit.errors import AuditError, InvalidAuditEvent

if TYPE_CHECKING:
    from fleetkit.audit.consumer import AuditConsumer
    from fleetkit.audit.pgsink import PostgresSink

__all__ = [
    "AuditConsumer",
    "AuditError",
    "AuditEvent",
    "AuditLog",
    "InvalidAuditEvent",
    "Outcome",
    "PostgresSink",
    "SqliteSink",
    "VerifyResult",
    "WriteResult",
    "install",
    "prune",
    "uuid7",
    "verify_postgres",
    "verify_sqlite",
]

_LAZY = {"AuditConsumer": "fleetkit.audit.consumer", "PostgresSink": "fleetkit.audit.pgsink"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once imported, a plain attribute
    return value
