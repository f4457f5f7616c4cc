"""Admin API: breakers, rate-limit keys, roles, any user's sessions. Admin role required (403,
audited).

The session caches the role at login, which only saves non-admins a database read: every
privileged request checks the user's current role on the primary (:func:`current_role`), and a
role change through this API revokes every session of that user fleet-wide. The first admin
comes from ``fleetkit admin create EMAIL``, never from a default password or a registration.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection

from fleetkit.app.fields import SafeText
from fleetkit.app.models import users
from fleetkit.app.problems import Problem
from fleetkit.app.routes import Auth, Svc, _event, _write, current_role
from fleetkit.ratelimit import Limit, parse_limits
from fleetkit.sessions import Session

__all__ = ["router"]


async def require_admin(request: Request, session: Auth, svc: Svc) -> Session:
    cached = session.data.get("role")
    if cached != "admin" or await current_role(svc, session) != "admin":
        reason = "not an admin" if cached != "admin" else "admin role revoked since login"
        await svc.audit_event(_event(request, session.user_id, "admin.access",
                                     request.url.path, "denied", reason))
        raise Problem(403, "admin role required", type_="forbidden")
    return session


Admin = Annotated[Session, Depends(require_admin)]
router = APIRouter(prefix="/v1/admin", tags=["admin"])


class BreakerOut(BaseModel):
    name: str
    state: str
    local_only: bool


class RoleIn(BaseModel):
    role: Literal["user", "admin"]


class RoleOut(BaseModel):
    id: int
    role: str
    revoked: int


class LimitOut(BaseModel):
    limit: str
    remaining: int
    reset_after: float


class KeyOut(BaseModel):
    policy: str
    key: str
    allowed: bool
    limits: list[LimitOut]


def _policy_limits(svc: Svc, policy: str) -> tuple[Limit, ...]:
    table = {"ip": svc.settings.rate_limit_ip, "user": svc.settings.rate_limit_user,
             "login": svc.settings.rate_limit_login,
             # keys: the account's keyed hash (in its audit events), + ":<ip>" for account-ip
             "login-account": svc.settings.rate_limit_login_account,
             "login-account-ip": svc.settings.rate_limit_login_account_ip,
             "login-device": svc.settings.rate_limit_login_device}
    if policy not in table:
        raise Problem(404, f"unknown policy {policy!r}; one of {sorted(table)}",
                      type_="not-found")
    return parse_limits(table[policy])


@router.get("/breakers", response_model=list[BreakerOut])
async def breakers(_: Admin, svc: Svc) -> list[BreakerOut]:
    return [BreakerOut(name=b.name, state=b.state, local_only=b.local_only)
            for b in svc.breakers]


@router.post("/breakers/{name}/{action}", response_model=BreakerOut)
async def breaker_action(name: Annotated[SafeText, Path(max_length=64)],
                         action: Literal["force-open", "force-close", "close", "reset",
                                         "disable"],
                         request: Request, admin: Admin, svc: Svc) -> BreakerOut:
    if name not in svc.breakers:
        raise Problem(404, f"no breaker named {name!r}", type_="not-found")
    breaker = svc.breakers.get(name)
    # "close" is the older spelling of "force-close": the fleet's breaker, not a shutdown.
    run = {"force-open": breaker.force_open, "force-close": breaker.force_close,
           "close": breaker.force_close, "reset": breaker.reset,
           "disable": breaker.disable}[action]
    await run()
    await svc.audit_event(_event(request, admin.user_id, f"breaker.{action}",
                                 f"breaker/{name}", "success"))
    return BreakerOut(name=name, state=breaker.state, local_only=breaker.local_only)


@router.get("/ratelimit/{policy}/{key}", response_model=KeyOut)
async def inspect_key(policy: Annotated[SafeText, Path(max_length=32)],
                      key: Annotated[SafeText, Path(max_length=200)], _: Admin,
                      svc: Svc) -> KeyOut:
    limits = _policy_limits(svc, policy)
    decision = await svc.limiter.peek(f"{policy}:{key}", limits)
    return KeyOut(policy=policy, key=key, allowed=decision.allowed, limits=[
        LimitOut(limit=str(d.limit), remaining=d.remaining, reset_after=d.reset_after)
        for d in decision.details])


@router.delete("/ratelimit/{policy}/{key}", status_code=204)
async def reset_key(policy: Annotated[SafeText, Path(max_length=32)],
                    key: Annotated[SafeText, Path(max_length=200)], request: Request,
                    admin: Admin, svc: Svc) -> None:
    await svc.limiter.reset(f"{policy}:{key}", _policy_limits(svc, policy))
    await svc.audit_event(_event(request, admin.user_id, "ratelimit.reset",
                                 f"ratelimit/{policy}/{key}", "success"))


@router.delete("/users/{user_id}/sessions")
async def revoke_user_sessions(user_id: Annotated[str, Path(pattern=r"^\d{1,19}$")],
                               request: Request, admin: Admin, svc: Svc) -> dict[str, int]:
    revoked = await svc.sessions.revoke_all(user_id)
    await svc.audit_event(_event(request, admin.user_id, "session.revoke_all",
                                 f"user/{user_id}", "success", revoked=revoked))
    return {"revoked": revoked}


_MAX_ID = 2**63 - 1


@router.put("/users/{user_id}/role", response_model=RoleOut,
            responses={404: {"description": "no such user"}})
async def set_role(user_id: Annotated[str, Path(pattern=r"^\d{1,19}$")], body: RoleIn,
                   request: Request, admin: Admin, svc: Svc) -> RoleOut:
    """Grant or withdraw the admin role; a change revokes the user's sessions fleet-wide, so
    no token keeps the old rights (the per-request role check covers changes made elsewhere)."""
    uid = int(user_id)

    async def change(conn: AsyncConnection) -> Any:
        if uid > _MAX_ID:
            return None
        old = (await conn.execute(sa.select(users.c.role).where(users.c.id == uid))
               ).scalar_one_or_none()
        if old is not None and old != body.role:
            await conn.execute(users.update().where(users.c.id == uid).values(role=body.role))
        return old

    old = await _write(svc, admin, change)
    if old is None:
        await svc.audit_event(_event(request, admin.user_id, "user.role_change",
                                     f"user/{user_id}", "failure", "no such user"))
        raise Problem(404, "no such user", type_="not-found")
    revoked = await svc.sessions.revoke_all(user_id) if old != body.role else 0
    await svc.audit_event(_event(request, admin.user_id, "user.role_change", f"user/{user_id}",
                                 "success", old_role=old, new_role=body.role, revoked=revoked))
    return RoleOut(id=uid, role=body.role, revoked=revoked)
