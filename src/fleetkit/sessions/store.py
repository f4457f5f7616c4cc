"""SessionStore: sessions in Redis (standalone, Sentinel or Cluster) or in memory.

Layout (:mod:`fleetkit.keys`; ``{route}`` is the hash tag from the token, so one user's keys
share one Cluster slot): ``<prefix>{<route>}s<sid>`` the session hash (``u`` user, ``c`` created
ms, ``i`` ip, ``a`` user agent, ``.<name>`` per data item; TTL = idle, capped at the absolute
deadline; last seen = now - idle + TTL, not stored: every byte is paid per session),
``u<user>`` the per-user index zset (capped at max), ``r<sid>`` the new sid of a rotated
session (grace period), ``t<sid>`` the tombstone of a revoked or evicted sid.

Every operation is one script (one round trip, atomic) run by a
:class:`~fleetkit.sessions.backend.SessionBackend`: Redis, or the in-memory port of the same
scripts. During a Redis outage ``get`` serves recently validated sessions from a small bounded
local cache (:mod:`.stale`) and the store reports ``warn`` in :meth:`SessionStore.health`.
"""

from __future__ import annotations

import builtins
import logging
import re
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from fleetkit.errors import BackendUnavailable, ConfigError, InvalidArgument, SessionLimitExceeded
from fleetkit.health import ComponentStatus
from fleetkit.keys import SESSION as _S
from fleetkit.keys import SESSION_INDEX as _U
from fleetkit.keys import SESSION_ROTATED as _R
from fleetkit.keys import SESSION_TOMBSTONE as _T
from fleetkit.keys import SESSIONS_PREFIX, session_base
from fleetkit.observability.metrics import LabelCache
from fleetkit.redis import Coalescer, CoalescerConfig, Script
from fleetkit.sessions import metrics as m
from fleetkit.sessions import redis as lua
from fleetkit.sessions.backend import SessionBackend
from fleetkit.sessions.memory import MemorySessionBackend
from fleetkit.sessions.regions import ForeignPolicy, RegionRouter, connect_regions
from fleetkit.sessions.session import Session, SessionInfo
from fleetkit.sessions.session import decode_data as _data
from fleetkit.sessions.session import encode_data as _encode
from fleetkit.sessions.session import text as _s
from fleetkit.sessions.stale import StaleCache
from fleetkit.sessions.tokens import ParsedToken, make_route, new_token, parse_token

if TYPE_CHECKING:
    from fleetkit.config import Settings
    from fleetkit.redis import RedisClients

__all__ = ["OnLimit", "Session", "SessionInfo", "SessionStore"]

log = logging.getLogger("fleetkit.sessions")

OnLimit = Literal["evict_oldest", "refuse"]

_MAX_UA = 256
_MAX_IP = 64


_SID = re.compile(r"[A-Za-z0-9_-]{8,64}")


class SessionStore:
    """Distributed sessions with per-user caps, sliding + absolute expiry, rotation, revocation.

    ``redis=None`` selects the in-memory backend (embedded mode). ``regions`` maps other regions'
    names to their session Redis clients (see :mod:`fleetkit.sessions.regions`).
    :meth:`from_settings` builds it as the reference service runs it.
    """

    #: The coalescer batching the store is benchmarked with (bench/sessions.py): the default.
    COALESCER: ClassVar[CoalescerConfig] = lua.COALESCER

    def __init__(
        self, *, redis: Any = None, idle_ttl: float = 1800, absolute_ttl: float = 86_400,
        max_per_user: int = 5, on_limit: OnLimit = "evict_oldest", rotation_grace: float = 30.0,
        tombstone_ttl: float = 300.0, touch_interval: float | None = None,
        prefix: str = SESSIONS_PREFIX,
        region: str = "local", regions: Mapping[str, Any] | None = None,
        foreign_tokens: ForeignPolicy = "route", routing_key: bytes | None = None,
        coalescer: Coalescer | None = None, stale_cache_size: int = 10_000,
        stale_max_age: float = 300.0, name: str = "sessions",
    ) -> None:
        if idle_ttl <= 0 or absolute_ttl < idle_ttl:
            raise ConfigError("need 0 < idle_ttl <= absolute_ttl")
        if max_per_user < 1:
            raise ConfigError("max_per_user must be >= 1")
        if on_limit not in ("evict_oldest", "refuse"):
            raise ConfigError("on_limit must be 'evict_oldest' or 'refuse'")
        if "{" in prefix or "}" in prefix:
            raise ConfigError("prefix must not contain hash-tag braces")
        self.idle_ms = int(idle_ttl * 1000)
        self.abs_ms = int(absolute_ttl * 1000)
        self.max_per_user = max_per_user
        self.on_limit = on_limit
        self.grace_ms = max(1, int(rotation_grace * 1000))
        self.tomb_ms = max(1, int(tombstone_ttl * 1000))
        # Sliding the TTL at most once per touch interval keeps most gets free of writes.
        touch = min(60.0, idle_ttl / 10) if touch_interval is None else touch_interval
        self.touch_ms = max(0, int(touch * 1000))
        self.prefix = prefix
        self.region = region
        self.name = name
        self.embedded = redis is None
        local: SessionBackend = (MemorySessionBackend() if redis is None
                                 else lua.RedisSessionBackend(redis, coalescer))
        foreign: dict[str, SessionBackend] = {r: lua.RedisSessionBackend(c)
                                               for r, c in (regions or {}).items()}
        self.router: RegionRouter[SessionBackend] = RegionRouter(region, local, foreign,
                                                                 foreign=foreign_tokens)
        self._routing_key = routing_key
        self._cache = StaleCache(size=stale_cache_size, max_age=stale_max_age,
                                 idle_ms=self.idle_ms, abs_ms=self.abs_ms,
                                 gauge=m.CACHE_ENTRIES.labels(self.name))
        self._ops = LabelCache(m.OPERATIONS)
        self._down_since: float | None = None
        self._last_error: str | None = None
        self._owned_clients: builtins.list[Any] = []

    @classmethod
    def from_settings(cls, settings: Settings, *, redis_clients: RedisClients,
                      **overrides: Any) -> SessionStore:
        """From ``SESSION_*`` settings on the ``sessions`` role client (``None``: memory),
        through its shared coalescer with :attr:`COALESCER` batching. Other regions' clients
        (``SESSION_REGIONS``) are created here and closed by :meth:`aclose`, unless ``regions``
        is given; ``overrides`` are constructor keywords."""
        owned: builtins.list[Any] = []
        if "regions" not in overrides:
            overrides["regions"] = connect_regions(settings.session_regions,
                                                   options=redis_clients.options)
            owned = builtins.list(overrides["regions"].values())
        options: dict[str, Any] = dict(
            redis=redis_clients.sessions,
            coalescer=redis_clients.coalescer("sessions", cls.COALESCER),
            idle_ttl=settings.session_idle_ttl, absolute_ttl=settings.session_absolute_ttl,
            max_per_user=settings.session_max_per_user, on_limit=settings.session_on_limit,
            region=settings.region, foreign_tokens=settings.session_foreign_tokens,
        )
        options.update(overrides)
        store = cls(**options)
        store._owned_clients = owned
        return store

    async def aclose(self) -> None:
        """Close the coalescers the store made and the region clients :meth:`from_settings`
        created (the clients passed in stay open: their owner closes them)."""
        for backend in [self.router.local, *self.router.regions.values()]:
            await backend.aclose()
        for client in self._owned_clients:
            await client.aclose()
        self._owned_clients = []

    async def __aenter__(self) -> SessionStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _base(self, route: str) -> str:
        return session_base(self.prefix, route)

    def index_key(self, user_id: str) -> str:
        return f"{self._base(make_route(user_id, self._routing_key))}u{user_id}"

    # --- backend calls with outage accounting ---------------------------------------------------
    async def _run(self, op: str, backend: SessionBackend, script: Script, keys: Sequence[Any],
                   args: Sequence[Any]) -> Any:
        try:
            reply = await backend.run(script, keys, args)
        except BackendUnavailable as exc:
            m.BACKEND_ERRORS.labels(op).inc()
            if backend is self.router.local and self._down_since is None:
                self._down_since = time.monotonic()
                m.DEGRADED.labels(self.name).set(1)
                log.warning("session store %s: Redis unreachable, serving cached sessions: %s",
                            self.name, exc)
            self._last_error = str(exc)
            raise
        if backend is self.router.local and self._down_since is not None:
            log.info("session store %s: Redis reachable again", self.name)
            self._down_since = None
            m.DEGRADED.labels(self.name).set(0)
        return reply

    def _resolve(self, token: str) -> tuple[ParsedToken, SessionBackend] | None:
        parsed = parse_token(token)
        if parsed is None:
            return None
        backend = self.router.backend_for(parsed.region)
        return None if backend is None else (parsed, backend)

    # --- operations ----------------------------------------------------------------------------
    async def create(self, user_id: str, *, data: Mapping[str, Any] | None = None, ip: str = "",
                     user_agent: str = "") -> Session:
        """Start a session; at ``max_per_user`` evict the oldest or raise SessionLimitExceeded."""
        if not user_id:
            raise InvalidArgument("user_id must not be empty")
        route = make_route(user_id, self._routing_key)
        tok = new_token(self.region, route)
        sid, base = tok.sid, self._base(route)
        policy = "refuse" if self.on_limit == "refuse" else "evict"
        values = dict(data or {})
        reply = await self._run(
            "create", self.router.local, lua.CREATE, [base + _S + sid, base + _U + user_id],
            [base, sid, user_id, self.idle_ms, self.abs_ms, self.max_per_user, policy,
             self.tomb_ms, ip[:_MAX_IP], user_agent[:_MAX_UA], *_encode(values)],
        )
        status, now, evicted, pruned = (int(x) for x in reply)
        if pruned:
            m.PRUNED.labels("script").inc(pruned)
        if status == 0:
            m.OPERATIONS.labels("create", "refused").inc()
            raise SessionLimitExceeded(
                f"user already has {self.max_per_user} sessions (policy: refuse)")
        if evicted:
            m.EVICTED.inc(evicted)
        m.OPERATIONS.labels("create", "ok").inc()
        session = Session(tok.token, sid, user_id, values, now / 1000, now / 1000, ip[:_MAX_IP],
                          user_agent[:_MAX_UA], self.region, evicted=evicted)
        self._cache.remember(session)
        return session

    async def get(self, token: str) -> Session | None:
        """The live session of ``token`` (sliding its idle TTL), or ``None``; never raises for a
        malformed token. Raises BackendUnavailable only when Redis is down and the session is
        not in the stale-if-error cache."""
        found = self._resolve(token)
        if found is None:
            m.OPERATIONS.labels("get", "malformed").inc()
            return None
        parsed, backend = found
        base, sid = self._base(parsed.route), parsed.sid
        try:
            reply = await self._run("get", backend, lua.GET, [base + _S + sid, base + _R + sid],
                                    [base, sid, self.idle_ms, self.abs_ms, self.touch_ms])
        except BackendUnavailable:
            stale = self._cache.stale(sid, token)
            if stale is None:
                raise
            m.STALE_SERVED.inc()
            m.OPERATIONS.labels("get", "stale").inc()
            return stale
        status = int(reply[0])
        if status <= 0:
            self._cache.forget(sid)
            m.OPERATIONS.labels("get", "expired" if status < 0 else "miss").inc()
            return None
        fields = [_s(x) for x in reply[4:]]
        h = dict(zip(fields[::2], fields[1::2], strict=True))
        created = int(h.get("c", 0))
        session = Session(
            token, _s(reply[1]), h.get("u", ""), _data(h), created / 1000,
            self._last_seen(created, int(reply[2]), int(reply[3])), h.get("i", ""),
            h.get("a", ""), parsed.region, grace=status == 2,
        )
        self._ops("get", "grace" if status == 2 else "hit").inc()
        self._cache.remember(session, key=sid)
        return session

    async def update(self, token: str, values: Mapping[str, Any] | None = None, *,
                     delete: Iterable[str] = ()) -> bool:
        """Set and delete individual data fields (not a whole-blob write). False when the
        session is gone (expired, unknown or revoked: it is never recreated)."""
        found = self._resolve(token)
        if found is None:
            return False
        parsed, backend = found
        base, sid = self._base(parsed.route), parsed.sid
        pairs = _encode(dict(values or {}))
        removed = ["." + d for d in delete if d]
        if not pairs and not removed:
            return True
        reply = int(await self._run(
            "update", backend, lua.UPDATE, [base + _S + sid, base + _R + sid, base + _T + sid],
            [base, self.abs_ms, len(pairs) // 2, *pairs, *removed],
        ))
        outcome = {1: "ok", 0: "miss", -1: "revoked"}[reply]
        m.OPERATIONS.labels("update", outcome).inc()
        if reply != 1:
            self._cache.forget(sid)
        return reply == 1

    async def rotate(self, token: str, *, data: Mapping[str, Any] | None = None
                     ) -> Session | None:
        """Give the session a new token (login, privilege change). The old token keeps working
        for ``rotation_grace`` seconds so in-flight requests finish. ``None`` if gone."""
        found = self._resolve(token)
        if found is None:
            return None
        parsed, backend = found
        base, old = self._base(parsed.route), parsed.sid
        tok = new_token(parsed.region, parsed.route)
        pairs = _encode(dict(data or {}))
        reply = await self._run(
            "rotate", backend, lua.ROTATE, [base + _S + old, base + _R + old, base + _S + tok.sid],
            [base, old, tok.sid, self.idle_ms, self.abs_ms, self.grace_ms, len(pairs) // 2,
             *pairs],
        )
        self._cache.forget(old)
        if int(reply[0]) != 1:
            m.OPERATIONS.labels("rotate", "miss").inc()
            return None
        h = {_s(reply[i]): _s(reply[i + 1]) for i in range(3, len(reply), 2)}
        m.OPERATIONS.labels("rotate", "ok").inc()
        session = Session(
            tok.token, tok.sid, h["u"], _data(h), int(h["c"]) / 1000, int(reply[1]) / 1000,
            h.get("i", ""), h.get("a", ""), parsed.region,
        )
        self._cache.remember(session)
        return session

    async def revoke(self, token: str) -> bool:
        """End the session and leave a tombstone; True if a live session was revoked."""
        found = self._resolve(token)
        if found is None:
            return False
        parsed, backend = found
        base, sid = self._base(parsed.route), parsed.sid
        self._cache.forget(sid)
        reply = int(await self._run("revoke", backend, lua.REVOKE,
                                    [base + _S + sid, base + _R + sid],
                                    [base, sid, self.tomb_ms]))
        m.OPERATIONS.labels("revoke", "ok" if reply else "miss").inc()
        return reply == 1

    async def revoke_id(self, user_id: str, session_id: str) -> bool:
        """Revoke one of ``user_id``'s sessions by the ``id`` that :meth:`list_sessions` shows.

        The keys are derived from ``user_id`` (its Cluster slot), so only that user's sessions
        can be reached; ids are unguessable hashes that only their owner is shown.
        """
        if not _SID.fullmatch(session_id):
            return False
        base = self._base(make_route(user_id, self._routing_key))
        self._cache.forget(session_id)
        reply = int(await self._run("revoke", self.router.local, lua.REVOKE,
                                    [base + _S + session_id, base + _R + session_id],
                                    [base, session_id, self.tomb_ms]))
        m.OPERATIONS.labels("revoke", "ok" if reply else "miss").inc()
        return reply == 1

    async def revoke_all(self, user_id: str) -> int:
        """Revoke every session of ``user_id`` in this region; returns how many were live."""
        base = self._base(make_route(user_id, self._routing_key))
        self._cache.forget_user(user_id)
        n = int(await self._run("revoke_all", self.router.local, lua.REVOKE_ALL,
                                [base + _U + user_id], [base, self.tomb_ms]))
        m.OPERATIONS.labels("revoke_all", "ok").inc()
        return n

    async def list_sessions(self, user_id: str) -> builtins.list[SessionInfo]:
        """The user's live sessions, oldest first, with created/last seen/ip/user agent."""
        base = self._base(make_route(user_id, self._routing_key))
        reply = await self._run("list", self.router.local, lua.LIST, [base + _U + user_id], [base])
        if int(reply[0]):
            m.PRUNED.labels("script").inc(int(reply[0]))
        now = int(reply[1])
        out: builtins.list[SessionInfo] = []
        for i in range(2, len(reply), 5):
            sid, created, ttl, ip, ua = (_s(x) for x in reply[i: i + 5])
            out.append(SessionInfo(sid, int(created) / 1000,
                                   self._last_seen(int(created), now, int(ttl)), ip, ua))
        m.OPERATIONS.labels("list", "ok").inc()
        return out

    async def list(self, user_id: str) -> builtins.list[SessionInfo]:
        """Deprecated alias of :meth:`list_sessions` (it shadowed the builtin)."""
        warnings.warn("SessionStore.list() is deprecated; use list_sessions()",
                      DeprecationWarning, stacklevel=2)
        return await self.list_sessions(user_id)

    def _last_seen(self, created_ms: int, now_ms: int, ttl_ms: int) -> float:
        """Last touch = now - idle + remaining TTL (the TTL restarts at each touch); near the
        absolute deadline the TTL is capped, so this is a lower bound, never before creation."""
        return max(created_ms, min(now_ms, now_ms - self.idle_ms + ttl_ms)) / 1000

    # --- health ---------------------------------------------------------------------------------
    @property
    def degraded(self) -> bool:
        return self._down_since is not None

    async def health(self) -> ComponentStatus:
        """Cheap and non-raising: ``warn`` while Redis is unreachable (stale-if-error)."""
        details: dict[str, Any] = {
            "backend": "memory" if self.embedded else "redis", "region": self.region,
            "cache_entries": len(self._cache),
            "foreign_regions": sorted(self.router.regions), "foreign_tokens": self.router.foreign,
        }
        if self._down_since is not None:
            down = time.monotonic() - self._down_since
            details["last_error"] = self._last_error
            return ComponentStatus(
                "warn", "datastore", round(down, 3), "s",
                f"session Redis unreachable for {down:.1f}s; serving up to "
                f"{len(self._cache)} recently validated sessions from the local cache", details,
            )
        return ComponentStatus("pass", "datastore", len(self._cache), "cached sessions",
                               None, details)
