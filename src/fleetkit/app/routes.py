"""The reference service's API: accounts, sessions, items, audit trail and admin.

Every request has already passed the request id, metrics, session and rate-limit middleware
(see :mod:`fleetkit.app.main`). Database calls go through the ``database`` circuit breaker;
reads go to a replica that has replayed the caller's last write (read-your-writes: the session
keeps the primary's WAL position of the user's last write).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncConnection

from fleetkit.app.fields import DbId, DbOffset, EventIdText, SafeText
from fleetkit.app.models import items, users
from fleetkit.app.problems import Problem
from fleetkit.app.services import Services
from fleetkit.audit import AuditEvent
from fleetkit.fastapi import bearer_scheme, cookie_scheme
from fleetkit.observability import get_request_id
from fleetkit.ratelimit import client_ip
from fleetkit.sessions import Session, SessionContext

__all__ = ["router"]

router = APIRouter(prefix="/v1")
T = TypeVar("T")

# Read statements built once: constructing a SQLAlchemy statement per request costs about as
# much as running it (bench/http_load.py profile); bound parameters vary, the SQL does not.
_USER_BY_ID = sa.select(users.c.id, users.c.email, users.c.role, users.c.created_at).where(
    users.c.id == sa.bindparam("uid"))
_ROLE_OF = sa.select(users.c.role).where(users.c.id == sa.bindparam("uid"))
_ITEM_BY_ID = sa.select(items).where(items.c.id == sa.bindparam("item_id"))
_ITEMS_PAGE = (sa.select(items)
               .where(items.c.owner_id == sa.bindparam("uid"), items.c.id > sa.bindparam("after"))
               .order_by(items.c.id).limit(sa.bindparam("limit")))


# ------------------------------------------------------------------ request/response models

class UserOut(BaseModel):
    id: int
    email: str
    role: str
    created_at: datetime | None = None


class SessionOut(BaseModel):
    id: str
    created: float
    last_seen: float
    ip: str
    user_agent: str
    current: bool


class ItemIn(BaseModel):
    title: SafeText = Field(min_length=1, max_length=200)
    body: SafeText = Field("", max_length=10_000)


class ItemPatch(BaseModel):
    title: SafeText | None = Field(None, min_length=1, max_length=200)
    body: SafeText | None = Field(None, max_length=10_000)


class ItemOut(BaseModel):
    id: int
    owner_id: int
    title: str
    body: str
    version: int


class AuditOut(BaseModel):
    event_id: str
    time: str
    actor: str
    action: str
    resource: str
    outcome: str
    reason: str | None
    client_ip: str | None
    request_id: str | None


class Page(BaseModel):
    items: list[Any]
    next: str | None = None


# ------------------------------------------------------------------ dependencies

# Dependencies are ``async def`` on purpose: FastAPI runs plain ``def`` ones in a thread pool,
# which costs a thread hop per dependency per request.
async def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


async def session_ctx(request: Request) -> SessionContext:
    ctx: SessionContext = request.scope["state"]["sessions"]
    return ctx


async def current_session(request: Request, _b: Annotated[None, Depends(bearer_scheme)],
                          _c: Annotated[None, Depends(cookie_scheme)]) -> Session:
    # The scheme dependencies only document bearer/cookie in OpenAPI (they do no work).
    session: Session | None = request.scope.get("state", {}).get("session")
    if session is None:
        raise Problem(401, "authentication required", type_="unauthenticated",
                      headers={"WWW-Authenticate": "Bearer"})
    return session


Svc = Annotated[Services, Depends(services)]
Auth = Annotated[Session, Depends(current_session)]
Ctx = Annotated[SessionContext, Depends(session_ctx)]


def _event(request: Request, actor: str, action: str, resource: str,
           outcome: Literal["success", "failure", "denied"], reason: str | None = None,
           **metadata: Any) -> AuditEvent:
    svc: Services = request.app.state.services
    return AuditEvent(
        actor=actor, action=action, resource=resource, outcome=outcome, reason=reason,
        # The same client address the rate limiter uses (trusted proxies honoured), and the
        # request id after RequestIdMiddleware validated or minted it.
        client_ip=client_ip(request.scope, svc.trusted_proxies),
        user_agent=request.headers.get("user-agent", "")[:512] or None,
        request_id=get_request_id(), metadata=metadata or None,
    )


async def _read(svc: Services, session: Session | None,
                fn: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """A replica read through the breaker, honouring the session's read-your-writes token."""
    lsn = session.data.get("lsn") if session is not None else None
    async with svc.db_breaker:
        return await svc.db.run_read(fn, lsn=lsn if isinstance(lsn, str) else None)


async def _rows(svc: Services, session: Session | None, statement: Any,
                params: dict[str, Any]) -> list[Any]:
    """Rows (mappings) of a Core statement built at import, on a replica, through the breaker.

    ``Database.fetch_all`` runs it on the driver directly: half the CPU of ``_read``.
    """
    lsn = session.data.get("lsn") if session is not None else None
    async with svc.db_breaker:
        return await svc.db.fetch_all(statement, params,
                                      lsn=lsn if isinstance(lsn, str) else None)


async def _write(svc: Services, session: Session | None,
                 fn: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """A primary transaction through the breaker; remembers its LSN in the session."""
    async with svc.db_breaker:
        async with svc.db.write() as conn:
            result = await fn(conn)
        lsn = await svc.db.current_lsn()
    if session is not None and lsn is not None:
        session.data["lsn"] = lsn  # saved by the session middleware with the response
    return result


async def current_role(svc: Services, session: Session) -> str | None:
    """The user's role on the primary now, not the one the session cached at login.

    Only privileged routes pay this read (a demotion must bite at once, whatever changed the
    row); it bypasses the ``database`` breaker so that an admin can still close a breaker
    forced open. A primary outage fails closed (503). A cached role that is no longer true is
    corrected in the session, so the next privileged request is refused without a read.
    """
    async with svc.db.write() as conn:
        role = (await conn.execute(_ROLE_OF, {"uid": int(session.user_id)})).scalar_one_or_none()
    if role != session.data.get("role"):
        session.data["role"] = role or "none"
    return str(role) if role is not None else None


def _user_out(row: Any) -> UserOut:
    """From a mapping: a ``fetch_all`` row or a SQLAlchemy ``row._mapping``."""
    created = row["created_at"]
    return UserOut(id=row["id"], email=row["email"], role=row["role"],
                   created_at=created if isinstance(created, datetime) else None)


# ------------------------------------------------------------------ accounts and sessions

@router.get("/ping")
async def ping() -> dict[str, bool]:
    """No session, no database: the floor of the stack (request id, metrics, IP rate limit)."""
    return {"pong": True}


@router.get("/me", response_model=UserOut)
async def me(session: Auth, svc: Svc) -> UserOut:
    rows = await _rows(svc, session, _USER_BY_ID, {"uid": int(session.user_id)})
    if not rows:
        raise Problem(404, "user not found", type_="not-found")
    return _user_out(rows[0])


@router.get("/sessions", response_model=list[SessionOut])
async def list_sessions(session: Auth, svc: Svc) -> list[SessionOut]:
    infos = await svc.sessions.list_sessions(session.user_id)
    return [SessionOut(id=i.id, created=i.created, last_seen=i.last_seen, ip=i.ip,
                       user_agent=i.user_agent, current=i.id == session.id) for i in infos]


@router.delete("/sessions/{session_id}", status_code=204,
               responses={404: {"description": "no such session"}})
async def revoke_session(session_id: Annotated[SafeText, Path(max_length=128)],
                         request: Request, session: Auth, svc: Svc, ctx: Ctx) -> Response:
    if session_id == session.id:
        await ctx.logout()
    elif not await svc.sessions.revoke_id(session.user_id, session_id):
        # Another user's session id (or a guess) is an attempt worth recording.
        await svc.audit_event(_event(request, session.user_id, "session.revoke",
                                     f"session/{session_id}", "denied",
                                     "no such session of this user"))
        raise Problem(404, "no such session", type_="not-found")
    await svc.audit_event(_event(request, session.user_id, "session.revoke",
                                 f"session/{session_id}", "success"))
    return Response(status_code=204)


@router.delete("/sessions", status_code=200)
async def revoke_other_sessions(request: Request, session: Auth, svc: Svc) -> dict[str, int]:
    revoked = 0
    for info in await svc.sessions.list_sessions(session.user_id):
        if info.id != session.id and await svc.sessions.revoke_id(session.user_id, info.id):
            revoked += 1
    await svc.audit_event(_event(request, session.user_id, "session.revoke_others",
                                 f"user/{session.user_id}", "success", revoked=revoked))
    return {"revoked": revoked}


# ------------------------------------------------------------------ items (read/write routing)

def _item_out(row: Any) -> ItemOut:
    """From a mapping: a ``fetch_all`` row or a SQLAlchemy ``row._mapping``."""
    return ItemOut(id=row["id"], owner_id=row["owner_id"], title=row["title"],
                   body=row["body"], version=row["version"])


@router.post("/items", status_code=201, response_model=ItemOut)
async def create_item(body: ItemIn, session: Auth, svc: Svc) -> ItemOut:
    async def insert(conn: AsyncConnection) -> Any:
        result = await conn.execute(
            items.insert().values(owner_id=int(session.user_id), title=body.title,
                                  body=body.body).returning(*items.c))
        return result.one()

    return _item_out((await _write(svc, session, insert))._mapping)


@router.get("/items", response_model=Page)
async def list_items(session: Auth, svc: Svc, limit: Annotated[int, Query(ge=1, le=100)] = 20,
                     after: Annotated[DbOffset, Query()] = 0) -> Page:
    rows = await _rows(svc, session, _ITEMS_PAGE,
                       {"uid": int(session.user_id), "after": after, "limit": limit})
    out = [_item_out(r) for r in rows]
    return Page(items=out, next=str(out[-1].id) if len(out) == limit else None)


async def _no_such_item(request: Request, svc: Services, session: Session, item_id: int,
                        action: str) -> Problem:
    """The 404 for an item the caller does not own, audited: another user's id or a guess
    (not told apart: a replica that has not replayed the owner's write sees neither)."""
    await svc.audit_event(_event(request, session.user_id, action, f"item/{item_id}", "denied",
                                 "no such item of this user"))
    return Problem(404, "no such item", type_="not-found")


async def _owned_item(request: Request, svc: Services, session: Session, item_id: DbId,
                      action: str = "item.read") -> Any:
    rows = await _rows(svc, session, _ITEM_BY_ID, {"item_id": item_id})
    if not rows or str(rows[0]["owner_id"]) != session.user_id:
        raise await _no_such_item(request, svc, session, item_id, action)
    return rows[0]


@router.get("/items/{item_id}", response_model=ItemOut)
async def get_item(item_id: DbId, request: Request, session: Auth, svc: Svc) -> ItemOut:
    return _item_out(await _owned_item(request, svc, session, item_id))


@router.patch("/items/{item_id}", response_model=ItemOut)
async def update_item(item_id: DbId, body: ItemPatch, request: Request, session: Auth,
                      svc: Svc) -> ItemOut:
    changes = body.model_dump(exclude_none=True)
    if not changes:  # nothing to change: no write, no new version
        return _item_out(await _owned_item(request, svc, session, item_id, "item.update"))

    async def update(conn: AsyncConnection) -> Any:
        result = await conn.execute(
            items.update().where(items.c.id == item_id,
                                 items.c.owner_id == int(session.user_id))
            .values(**changes, version=items.c.version + 1, updated_at=sa.func.now())
            .returning(*items.c))
        return result.one_or_none()

    row = await _write(svc, session, update)
    if row is None:
        raise await _no_such_item(request, svc, session, item_id, "item.update")
    return _item_out(row._mapping)


@router.delete("/items/{item_id}", status_code=204)
async def delete_item(item_id: DbId, request: Request, session: Auth, svc: Svc) -> Response:
    async def delete(conn: AsyncConnection) -> int:
        result = await conn.execute(
            items.delete().where(items.c.id == item_id,
                                 items.c.owner_id == int(session.user_id)))
        return int(result.rowcount or 0)

    if not await _write(svc, session, delete):
        raise await _no_such_item(request, svc, session, item_id, "item.delete")
    return Response(status_code=204)


# ------------------------------------------------------------------ audit trail

@router.get("/audit", response_model=Page)
async def audit_trail(session: Auth, svc: Svc, request: Request,
                      actor: Annotated[SafeText | None, Query(max_length=256)] = None,
                      limit: Annotated[int, Query(ge=1, le=100)] = 50,
                      before: Annotated[EventIdText | None, Query()] = None,
                      ) -> Page:
    """The caller's own audit events, newest first (admins may ask for any ``actor``)."""
    if actor is not None and actor != session.user_id and (
            session.data.get("role") != "admin" or await current_role(svc, session) != "admin"):
        await svc.audit_event(_event(request, session.user_id, "audit.read", f"actor/{actor}",
                                     "denied", "not an admin"))
        raise Problem(403, "only admins may read other users' audit trails", type_="forbidden")
    who = actor or session.user_id
    pg = not svc.db.embedded
    where = "actor = :actor"
    if before:
        where += " AND event_id < CAST(:before AS uuid)" if pg else " AND event_id < :before"
    cols = "CAST(event_id AS text) AS event_id, CAST(time AS text) AS time" if pg else \
        "event_id, time"
    query = sa.text(f"SELECT {cols}, actor, action, resource, outcome, reason, "
                    f"client_ip, request_id FROM audit_events WHERE {where} "
                    "ORDER BY event_id DESC LIMIT :limit")
    params: dict[str, Any] = {"actor": who, "limit": limit}
    if before:
        params["before"] = before

    async def fetch(conn: AsyncConnection) -> list[Any]:
        return list((await conn.execute(query, params)).all())

    rows = await _read(svc, session, fetch)
    out = [AuditOut(**row._mapping) for row in rows]
    return Page(items=out, next=out[-1].event_id if len(out) == limit else None)
