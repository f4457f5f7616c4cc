"""Embedded mode: AuditLog(redis=None) → in-process queue → SQLite, same API and hash chain."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from fleetkit.audit import AuditEvent, AuditLog, verify_sqlite
from fleetkit.errors import InvalidAuditEvent


async def test_embedded_contract_chain_and_tamper_evidence(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    log = AuditLog(redis=None, sqlite_path=db, instance="i-1")
    await log.log(AuditEvent(actor="u1", action="session.create", resource="session/9",
                             outcome="success"))
    await asyncio.gather(*(log.log(AuditEvent(actor=f"u{i}", action="login",
                                              resource="account", outcome="failure"))
                           for i in range(300)))
    with pytest.raises(InvalidAuditEvent):
        await log.log(AuditEvent(actor="u1", action="x", resource="r", outcome="nope"))  # type: ignore[arg-type]
    await log.flush()
    assert (await log.health()).status == "pass"
    sink = log.sink
    assert sink is not None
    result = verify_sqlite(sink)
    assert result.ok, result
    assert result.rows == 301
    assert result.batches >= 2
    await log.aclose()

    raw = sqlite3.connect(db)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        raw.execute("UPDATE audit_events SET actor = 'mallory'")
    # An attacker with file access drops the trigger: the chain still names the batch.
    victim, batch = raw.execute(
        "SELECT event_id, batch_id FROM audit_events WHERE actor = 'u7'").fetchone()
    raw.execute("DROP TRIGGER audit_events_no_update")
    raw.execute("UPDATE audit_events SET outcome = 'success' WHERE event_id = ?", (victim,))
    raw.commit()
    raw.close()
    from fleetkit.audit import SqliteSink

    reopened = SqliteSink(db)
    bad = verify_sqlite(reopened)
    await reopened.aclose()
    assert not bad.ok
    assert bad.first_bad_batch == batch
    assert "altered" in bad.detail
