"""Helpers of the security regression tests: admins, and the audit events an app recorded."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import sqlalchemy as sa
from fastapi import FastAPI

from fleetkit.app.models import users
from fleetkit.audit import AuditEvent
from fleetkit.audit.streams import stream_keys

__all__ = ["audit_events", "bearer", "login", "set_role", "wait_for_event"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def set_role(app: FastAPI, user_id: int, role: str) -> None:
    """Change a role behind the service's back (as an operator's SQL would)."""
    async with app.state.services.db.write() as conn:
        await conn.execute(users.update().where(users.c.id == user_id).values(role=role))


async def audit_events(app: FastAPI) -> list[AuditEvent]:
    """Every event the app recorded: its Redis streams (distributed) or its SQLite sink."""
    svc = app.state.services
    if svc.redis.embedded:
        async with svc.db.write() as conn:
            rows = (await conn.execute(sa.text(
                "SELECT event_id, actor, action, resource, outcome, reason, client_ip, "
                "user_agent, request_id, metadata FROM audit_events ORDER BY event_id"))).all()
        out = []
        for row in rows:
            meta = row.metadata
            if isinstance(meta, str):
                meta = orjson.loads(meta)
            out.append(AuditEvent(actor=row.actor, action=row.action, resource=row.resource,
                                  outcome=row.outcome, reason=row.reason,
                                  client_ip=row.client_ip, user_agent=row.user_agent,
                                  request_id=row.request_id, metadata=meta,
                                  event_id=str(row.event_id)))
        return out
    events: list[AuditEvent] = []
    for key in stream_keys("fleetkit:audit", svc.settings.audit_stream_shards):
        for _, fields in await svc.redis.main.xrange(key):
            for line in fields[b"e"].split(b"\n"):
                if line:
                    events.append(AuditEvent.decode(line))
    return sorted(events, key=lambda e: e.event_id)  # UUIDv7: time order across shards


async def wait_for_event(app: FastAPI, action: str, **match: Any) -> AuditEvent:
    """The first recorded event of ``action`` whose fields equal ``match`` (bounded polling:
    the embedded sink writes in the background)."""
    found: list[AuditEvent] = []
    for _ in range(100):
        found = [e for e in await audit_events(app) if e.action == action
                 and all(getattr(e, k) == v for k, v in match.items())]
        if found:
            return found[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {action} event matching {match}; recorded: "
                         f"{[(e.action, e.outcome, e.reason) for e in await audit_events(app)]}")


async def login(client: httpx.AsyncClient, email: str, password: str,
                **headers: str) -> httpx.Response:
    client.cookies.clear()
    r = await client.post("/v1/auth/login", json={"email": email, "password": password},
                          headers=headers)
    client.cookies.clear()
    return r
