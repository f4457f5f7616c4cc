"""Audit log pipeline: producer (packed Redis stream entries, disk spool), consumer, sinks.

    log = AuditLog(redis=client)                 # redis=None: embedded mode (SQLite)
    await log.log(AuditEvent(actor="u1", action="session.create", resource="session/9",
                             outcome="success"))
    await log.flush(); await log.aclose()

The consumer runs as ``fleetkit worker audit`` (:class:`AuditConsumer`); ``fleetkit audit
verify`` checks the hash chain and ``fleetkit audit prune --older-than 400d`` drops old partitions.
"""

from __future__ import annotations

from fleetkit.audit.consumer import AuditConsumer
from fleetkit.audit.events import AuditEvent, Outcome, uuid7
from fleetkit.audit.producer import AuditLog
from fleetkit.audit.schema import install, prune
from fleetkit.audit.sink import PostgresSink, SqliteSink, WriteResult
from fleetkit.audit.verify import VerifyResult, verify_postgres, verify_sqlite

__all__ = [
    "AuditConsumer",
    "AuditEvent",
    "AuditLog",
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
