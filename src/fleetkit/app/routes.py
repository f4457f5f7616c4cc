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
from pydantic import BaseModel, Field, field_validator
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from fleetkit.app.fields import DbId, DbOffset, EventIdText, SafeText
from fleetkit.app.login import REASONS, Verdict
from fleetkit.app.models import items, users
from fleetkit.app.passwords import hash_password, verify_password
from fleetkit.app.problems import Problem
from fleetkit.app.services import Services
from fleetkit.audit import AuditEvent
from fleetkit.errors import DatabaseError
from fleetkit.fastapi import bearer_scheme, cookie_scheme
from fleetkit.observability import get_request_id
from fleetkit.ratelimit import Decision, client_ip, problem_body, ratelimit_headers, record_decision
from fleetkit.sessions import Session, SessionContext

__all__ = ["router"]

router = APIRouter(prefix="/v1")
T = TypeVar("T")

# Read statements built once: constructing a SQLAlchemy statement per request costs about as
# much as running it (bench/http_load.py profile); bound parameters vary, the SQL does not.
_USER_BY_ID = sa.select(users.c.id, users.c.email, users.c.role, users.c.created_at).where(
    users.c.id == sa.bindparam("uid"))
_ROLE_OF = sa.select(users.c.role).where(users.c.id == sa.bindparam("uid"))
_USER_BY_EMAIL = sa.select(users).where(users.c.email == sa.bindparam("email"))
_ITEM_BY_ID = sa.select(items).where(items.c.id == sa.bindparam("item_id"))
_ITEMS_PAGE = (sa.select(items)
               .where(items.c.owner_id == sa.bindparam("uid"), items.c.id > sa.bindparam("after"))
               .order_by(items.c.id).limit(sa.bindparam("limit")))

_EMAIL = r"^[^@\s]{1,64}@[^@\s]{1,255}$"


# ------------------------------------------------------------------ request/response models

class Credentials(BaseModel):
    email: SafeText = Field(pattern=_EMAIL, max_length=320)
    password: SafeText = Field(min_length=8, max_length=256)

    @field_validator("email")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()


class UserOut(BaseModel):
    id: int
    email: str
    role: str
    created_at: datetime | None = None


class LoginOut(BaseModel):
    token: str
    session_id: str
    user: UserOut


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


@router.post("/auth/register", status_code=201, response_model=UserOut,
             responses={409: {"description": "email already registered"}})
async def register(body: Credentials, request: Request, svc: Svc) -> UserOut:
    password_hash = await hash_password(body.password)
    role = "user"  # the only way to an admin is `fleetkit admin create` or an admin's grant

    async def insert(conn: AsyncConnection) -> Any:
        result = await conn.execute(
            users.insert().values(email=body.email, password_hash=password_hash, role=role)
            .returning(users.c.id, users.c.email, users.c.role, users.c.created_at))
        return result.one()

    try:
        row = await _write(svc, None, insert)
    except DatabaseError as exc:
        if not isinstance(exc.__cause__, IntegrityError):
            raise
        await svc.audit_event(_event(request, "anonymous", "user.register", "user",
                                     "failure", "email already registered"))
        raise Problem(409, "this email is already registered", type_="email-taken") from None
    await svc.audit_event(_event(request, str(row.id), "user.register", f"user/{row.id}",
                                 "success", role=role))
    return _user_out(row._mapping)


def _quota_exceeded(request: Request, results: list[tuple[str, Decision]]) -> Response:
    """The same 429 as the rate-limit middleware's (problem type, fields), for a limit that a
    route checks itself. The middleware merges these limits into its own RateLimit fields, so
    the response carries one RateLimit/RateLimit-Policy pair and one Retry-After."""
    for name, decision in results:
        record_decision(request.scope, name, decision)
    headers = {k.decode(): v.decode() for k, v in ratelimit_headers(results)}
    return Response(problem_body(results, request.url.path), status_code=429, headers=headers,
                    media_type="application/problem+json")


@router.post("/auth/login", response_model=LoginOut,
             responses={401: {"description": "wrong email or password"},
                        429: {"description": "too many attempts"}})
async def login(body: Credentials, request: Request, response: Response, svc: Svc,
                ctx: Ctx) -> LoginOut | Response:
    # Per account+address, per account (known devices and addresses exempt) and per device,
    # on top of the middleware's per-address policy: fleetkit.app.login, docs/security.md.
    guard = svc.login
    ip = client_ip(request.scope, svc.trusted_proxies) or "unknown"
    account = guard.account_hash(body.email)
    device = guard.device_of(request.cookies.get(guard.cookie_name), account)
    verdict = await guard.check(account, ip, device)
    if verdict.denied is not None and not verdict.locked_for_unknown_clients:
        return await _login_denied(request, svc, verdict)

    async def find(conn: AsyncConnection) -> Any:
        result = await conn.execute(_USER_BY_EMAIL, {"email": body.email})
        return result.one_or_none()

    # The primary, not a replica: a user who just registered must be able to log in.
    async with svc.db_breaker, svc.db.write() as conn:
        row = await find(conn)
    if verdict.locked_for_unknown_clients and (row is None or ip not in {
            s.ip for s in await svc.sessions.list_sessions(str(row.id))}):
        return await _login_denied(request, svc, verdict)
    if not await verify_password(row.password_hash if row else None, body.password):
        await svc.audit_event(_event(request, str(row.id) if row else "anonymous",
                                     "auth.login", "session", "failure", "bad credentials",
                                     account=account))
        raise Problem(401, "wrong email or password", type_="bad-credentials")
    # The WAL position now covers the registration: the new session's replica reads see it.
    data: dict[str, Any] = {"role": row.role}
    lsn = await svc.db.current_lsn()
    if lsn is not None:
        data["lsn"] = lsn
    # login() revokes the request's previous session: a fresh token on every login.
    replaced = ctx.session
    session = await ctx.login(str(row.id), data=data, ip=ip)
    if replaced is not None:
        await svc.audit_event(_event(request, replaced.user_id, "session.revoke",
                                     f"session/{replaced.id}", "success",
                                     "replaced by a new login", new_session=session.id))
    if session.evicted:
        await svc.audit_event(_event(request, str(row.id), "session.evict", f"user/{row.id}",
                                     "success", "per-user session cap",
                                     evicted=session.evicted, cap=svc.sessions.max_per_user))
    await svc.audit_event(_event(request, str(row.id), "session.create",
                                 f"session/{session.id}", "success",
                                 known_device=device is not None))
    response.headers["Cache-Control"] = "no-store"
    response.headers.append("Set-Cookie", guard.device_cookie(account, device))
    return LoginOut(token=session.token, session_id=session.id, user=_user_out(row._mapping))


async def _login_denied(request: Request, svc: Services, verdict: Verdict) -> Response:
    policy = verdict.denied or "login-account"
    await svc.audit_event(_event(request, "anonymous", "auth.login", "session", "denied",
                                 REASONS[policy], account=verdict.account, policy=policy))
    return _quota_exceeded(request, verdict.results)


@router.post("/auth/logout", status_code=204)
async def logout(request: Request, session: Auth, svc: Svc, ctx: Ctx) -> Response:
    await ctx.logout()
    await svc.audit_event(_event(request, session.user_id, "session.revoke",
                                 f"session/{session.id}", "success", reason="logout"))
    return Response(status_code=204)


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


async def _owned_item(svc: Services, session: Session, item_id: DbId) -> Any:
    rows = await _rows(svc, session, _ITEM_BY_ID, {"item_id": item_id})
    if not rows or str(rows[0]["owner_id"]) != session.user_id:
        raise Problem(404, "no such item", type_="not-found")
    return rows[0]


@router.get("/items/{item_id}", response_model=ItemOut)
async def get_item(item_id: DbId, session: Auth, svc: Svc) -> ItemOut:
    return _item_out(await _owned_item(svc, session, item_id))


@router.patch("/items/{item_id}", response_model=ItemOut)
async def update_item(item_id: DbId, body: ItemPatch, session: Auth, svc: Svc) -> ItemOut:
    changes = body.model_dump(exclude_none=True)

    async def update(conn: AsyncConnection) -> Any:
        result = await conn.execute(
            items.update().where(items.c.id == item_id,
                                 items.c.owner_id == int(session.user_id))
            .values(**changes, version=items.c.version + 1, updated_at=sa.func.now())
            .returning(*items.c))
        return result.one_or_none()

    row = await _write(svc, session, update)
    if row is None:
        raise Problem(404, "no such item", type_="not-found")
    return _item_out(row._mapping)


@router.delete("/items/{item_id}", status_code=204)
async def delete_item(item_id: DbId, session: Auth, svc: Svc) -> Response:
    async def delete(conn: AsyncConnection) -> int:
        result = await conn.execute(
            items.delete().where(items.c.id == item_id,
                                 items.c.owner_id == int(session.user_id)))
        return int(result.rowcount or 0)

    if not await _write(svc, session, delete):
        raise Problem(404, "no such item", type_="not-found")
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
