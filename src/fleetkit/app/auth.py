"""Accounts: register, login, logout (the login protection is :mod:`fleetkit.app.login`).

* **Emails** are normalised before any check (NFKC, trimmed, lower-case), and control or
  formatting characters (``U+202E``), spaces and markup characters are a 422 naming the field.
* **Passwords** on registration: 8 to 256 characters and not among the 10,000 most common ones of
  8 characters or more (``data/common-passwords.txt.gz``, from zxcvbn's MIT-licensed frequency
  list; compared case-insensitively).
* **Register does not enumerate accounts**: a new and an already registered address get the same
  202 and body, after the same password hashing; the account is usable by logging in. The
  duplicate is audited (``user.register`` failure with the account's keyed hash).
"""

from __future__ import annotations

import functools
import gzip
import unicodedata
from importlib import resources
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, BeforeValidator, Field, field_validator
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from fleetkit.app.fields import SafeText
from fleetkit.app.login import REASONS, Verdict
from fleetkit.app.models import users
from fleetkit.app.passwords import hash_password, verify_password
from fleetkit.app.problems import Problem
from fleetkit.app.routes import Auth, Ctx, Svc, UserOut, _event, _user_out, _write
from fleetkit.app.services import Services
from fleetkit.errors import DatabaseError, InvalidArgument
from fleetkit.ratelimit import Decision, client_ip, problem_body, ratelimit_headers, record_decision

__all__ = ["Credentials", "Registration", "is_common_password", "normalise_email", "router"]

router = APIRouter(prefix="/v1")

_USER_BY_EMAIL = sa.select(users).where(users.c.email == sa.bindparam("email"))
# Not in an address we accept: whitespace, quotes, markup and the specials of RFC 5322 that only
# a quoted local part could hold (nobody types those; they are how injection payloads look).
_FORBIDDEN = frozenset(' \t"\'`<>()[]\\,;:')
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"})


def normalise_email(value: Any) -> Any:
    """NFKC, trimmed, lower-case; ValueError for what is not a plain address."""
    if not isinstance(value, str):
        return value  # the str type check answers
    email = unicodedata.normalize("NFKC", value).strip()
    if any(unicodedata.category(c) in _HIDDEN_CATEGORIES for c in email):
        raise InvalidArgument("an email must not contain control, formatting (e.g. U+202E) or "
                              "space characters")
    if _FORBIDDEN.intersection(email):
        raise InvalidArgument("an email must not contain spaces, quotes, brackets or < > , ; :")
    local, at, domain = email.rpartition("@")
    if (not at or not local or "@" in local or len(local) > 64 or not domain
            or len(domain) > 255 or "." not in domain.strip(".")):
        raise InvalidArgument("not an email address (name@domain.example)")
    return f"{local}@{domain}".lower()


Email = Annotated[str, BeforeValidator(normalise_email), Field(max_length=320)]


@functools.cache
def _common_passwords() -> frozenset[str]:
    data = resources.files("fleetkit.app").joinpath("data/common-passwords.txt.gz").read_bytes()
    return frozenset(gzip.decompress(data).decode("utf-8").split())


def is_common_password(password: str) -> bool:
    return password.lower() in _common_passwords()


class Credentials(BaseModel):
    email: Email
    password: SafeText = Field(min_length=8, max_length=256)


class Registration(Credentials):
    @field_validator("password")
    @classmethod
    def _not_common(cls, value: str) -> str:
        if is_common_password(value):
            raise InvalidArgument("this password is one of the most common ones; choose another")
        return value


class LoginOut(BaseModel):
    token: str
    session_id: str
    user: UserOut


class Accepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    detail: str = "if this address can be registered, its account is ready: log in with it"


@router.post("/auth/register", status_code=202, response_model=Accepted,
             responses={422: {"description": "invalid email or weak password"}})
async def register(body: Registration, request: Request, svc: Svc) -> Accepted:
    password_hash = await hash_password(body.password)
    role = "user"  # the only way to an admin is `fleetkit admin create` or an admin's grant

    async def insert(conn: AsyncConnection) -> Any:
        result = await conn.execute(
            users.insert().values(email=body.email, password_hash=password_hash, role=role)
            .returning(users.c.id))
        return result.one()

    try:
        row = await _write(svc, None, insert)
    except DatabaseError as exc:
        if not isinstance(exc.__cause__, IntegrityError):
            raise
        await svc.audit_event(_event(request, "anonymous", "user.register", "user", "failure",
                                     "email already registered",
                                     account=svc.login.account_hash(body.email)))
        return Accepted()
    await svc.audit_event(_event(request, str(row.id), "user.register", f"user/{row.id}",
                                 "success", role=role))
    return Accepted()


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

