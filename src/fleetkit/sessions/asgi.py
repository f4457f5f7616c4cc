"""Pure ASGI session middleware.

The token comes from ``Authorization: Bearer <token>`` or the session cookie (by default
``__Host-session``: ``Secure; HttpOnly; SameSite=Lax; Path=/``, no ``Domain``). Requests without a
token never touch Redis; malformed, unknown or expired tokens make the request anonymous (never a
500), and an unknown cookie is cleared. The session is on ``scope["state"]["session"]``
(``request.state.session`` in Starlette/FastAPI; ``None`` when anonymous), its user on
``scope["state"]["user_id"]`` (what :func:`fleetkit.ratelimit.user_key` reads), and a
:class:`SessionContext` on ``scope["state"]["sessions"]`` offers ``login``/``logout``/``rotate``.

Changes to ``session.data`` are saved as a per-field ``update`` just before the response starts,
only when something changed.

``cookie_secure=False`` is for plain-HTTP development only: browsers drop ``__Host-`` cookies that
are not ``Secure``, so the ``__Host-`` prefix is removed from the cookie name as well.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import orjson

from fleetkit.sessions.metrics import WRITE_FAILURES
from fleetkit.sessions.store import Session, SessionStore
from fleetkit.sessions.tokens import MAX_TOKEN_LEN, parse_token
from fleetkit.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["LAYERS_KEY", "SessionContext", "SessionMiddleware"]

#: Scope key where fleetkit middleware note themselves on the lifespan scope, so that an inner
#: middleware can check at start-up that what it needs runs before it (see RateLimitMiddleware).
LAYERS_KEY = "fleetkit.layers"

log = logging.getLogger("fleetkit.sessions")

_HOST_PREFIX = "__Host-"


def _snapshot(data: dict[str, Any]) -> dict[str, bytes]:
    out = {}
    for key, value in data.items():
        try:
            out[key] = orjson.dumps(value)
        except TypeError:
            out[key] = repr(value).encode()
    return out


def _publish(scope: Scope, session: Session | None) -> None:
    # ``user_id`` is what fleetkit.ratelimit.user_key (and other key functions) read.
    state = scope.setdefault("state", {})
    state["session"] = session
    state["user_id"] = session.user_id if session is not None else None


class SessionContext:
    """Per-request session handle (lives in ``scope["state"]["sessions"]``)."""

    def __init__(self, store: SessionStore, scope: Scope, session: Session | None,
                 source: str | None, *, clear_cookie: bool) -> None:
        self.store = store
        self.scope = scope
        self.session = session
        self.source = source
        self._snapshot = _snapshot(session.data) if session is not None else {}
        self._loaded_token = session.token if session is not None else None
        self.set_cookie: str | None = None
        self.clear_cookie = clear_cookie

    def _publish(self) -> None:
        _publish(self.scope, self.session)

    async def login(self, user_id: str, *, data: dict[str, Any] | None = None,
                    cookie: bool = True, ip: str | None = None) -> Session:
        """Create a session for ``user_id`` (the previous one of this request is revoked).

        ``ip``: the client address to record (e.g. resolved through trusted proxies); by
        default the peer address of the connection."""
        if self.session is not None:
            await self.store.revoke(self.session.token)
        if ip is None:
            client = self.scope.get("client")
            ip = client[0] if client else ""
        ua = ""
        for name, value in self.scope.get("headers", ()):
            if name == b"user-agent":
                ua = value.decode("latin-1")
        self.session = await self.store.create(user_id, data=data, ip=ip, user_agent=ua)
        self._snapshot = _snapshot(self.session.data)
        self._loaded_token = self.session.token
        self.set_cookie = self.session.token if cookie else None
        self.clear_cookie = False
        self._publish()
        return self.session

    async def rotate(self, *, data: dict[str, Any] | None = None) -> Session | None:
        """New token for the current session (privilege change); the cookie follows."""
        if self.session is None:
            return None
        await self.save()
        rotated = await self.store.rotate(self.session.token, data=data)
        self.session = rotated
        if rotated is not None:
            self._snapshot = _snapshot(rotated.data)
            self._loaded_token = rotated.token
            if self.source != "bearer":
                self.set_cookie = rotated.token
        self._publish()
        return rotated

    async def logout(self) -> None:
        """Revoke the current session and clear the cookie."""
        if self.session is not None:
            await self.store.revoke(self.session.token)
        self.session = None
        self._loaded_token = None
        self.set_cookie = None
        self.clear_cookie = self.source == "cookie"
        self._publish()

    async def save(self) -> None:
        """Write changed data fields (only the difference; nothing when unchanged)."""
        current = self.session
        if current is None or current.token != self._loaded_token or current.stale:
            return
        now = _snapshot(current.data)
        changed = {k: current.data[k] for k, v in now.items() if self._snapshot.get(k) != v}
        removed = [k for k in self._snapshot if k not in now]
        if not changed and not removed:
            return
        await self.store.update(current.token, changed, delete=removed)
        self._snapshot = now


class SessionMiddleware:
    """Loads the session of the request's token and saves its changes; see module docstring."""

    def __init__(self, app: ASGIApp, *, store: SessionStore,
                 cookie_name: str = "__Host-session", cookie_secure: bool = True,
                 cookie_samesite: Literal["lax", "strict", "none"] = "lax",
                 bearer: bool = True, cookie_max_age: int | None = None) -> None:
        self.app = app
        self.store = store
        if not cookie_secure and cookie_name.startswith(_HOST_PREFIX):
            cookie_name = cookie_name[len(_HOST_PREFIX):]
        self.cookie_name = cookie_name
        self._cookie_key = cookie_name.encode("latin-1")
        self.bearer = bearer
        attrs = ["Path=/", "HttpOnly", f"SameSite={cookie_samesite.capitalize()}"]
        if cookie_secure:
            attrs.append("Secure")
        self._attrs = "; ".join(attrs)
        self.cookie_max_age = cookie_max_age if cookie_max_age is not None else store.abs_ms // 1000

    def _token(self, scope: Scope) -> tuple[str | None, str | None]:
        cookie_value: str | None = None
        for name, value in scope.get("headers", ()):
            if name == b"authorization" and self.bearer:
                scheme, _, cred = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    return cred.strip().decode("latin-1"), "bearer"
            elif name == b"cookie" and cookie_value is None:
                for part in value.split(b";"):
                    key, eq, val = part.strip().partition(b"=")
                    if eq and key == self._cookie_key:
                        cookie_value = val.strip().strip(b'"').decode("latin-1")
                        break
        return (cookie_value, "cookie") if cookie_value is not None else (None, None)

    def _cookie_header(self, token: str | None) -> tuple[bytes, bytes]:
        if token is None:
            value = f"{self.cookie_name}=; {self._attrs}; Max-Age=0"
        else:
            value = f"{self.cookie_name}={token}; {self._attrs}; Max-Age={self.cookie_max_age}"
        return b"set-cookie", value.encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                scope.setdefault(LAYERS_KEY, []).append("sessions")
            await self.app(scope, receive, send)
            return
        token, source = self._token(scope)
        session: Session | None = None
        unknown = False
        if token is not None:
            if len(token) > MAX_TOKEN_LEN or parse_token(token) is None:
                unknown = True  # malformed: no Redis call at all
            else:
                try:
                    session = await self.store.get(token)
                except Exception as exc:  # outage without a cached copy: anonymous, not 500
                    log.warning("session lookup failed, request is anonymous: %s", exc)
                else:
                    unknown = session is None
        ctx = SessionContext(self.store, scope, session, source,
                             clear_cookie=unknown and source == "cookie")
        _publish(scope, session)
        state = scope["state"]
        state["sessions"] = ctx

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                try:
                    await ctx.save()
                except Exception as exc:  # the response still goes out; the loss is counted
                    WRITE_FAILURES.inc()
                    log.warning("session changes not saved: %s", exc)
                cookie = None
                if ctx.set_cookie is not None:
                    cookie = self._cookie_header(ctx.set_cookie)
                elif ctx.clear_cookie:
                    cookie = self._cookie_header(None)
                if cookie is not None:
                    message = {**message, "headers": [*message.get("headers", ()), cookie]}
            await send(message)

        await self.app(scope, receive, send_wrapper)
