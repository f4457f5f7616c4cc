"""Stale-if-error: recently validated sessions served from memory while Redis is down.

Bounded (``size`` sessions, least recently validated evicted), without the secret token, and
only within ``max_age`` of the last successful validation and the session's own idle and
absolute deadlines; a served copy is marked ``stale``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

from fleetkit.sessions.session import Session

__all__ = ["StaleCache"]


@dataclass(slots=True)
class _Cached:
    session: Session
    validated: float  # monotonic
    seen_wall: float


class StaleCache:
    def __init__(self, *, size: int, max_age: float, idle_ms: int, abs_ms: int,
                 gauge: Any) -> None:
        self.size = size
        self.max_age = max_age
        self._idle_s = idle_ms / 1000
        self._abs_s = abs_ms / 1000
        self._gauge = gauge
        self._cache: OrderedDict[str, _Cached] = OrderedDict()

    def __len__(self) -> int:
        return len(self._cache)

    def remember(self, session: Session, *, key: str | None = None) -> None:
        if self.size <= 0:
            return
        sid = key or session.id
        # A copy without the secret (the constructor: dataclasses.replace is several times
        # slower, and this runs on every read).
        s = session
        stored = Session("", s.id, s.user_id, dict(s.data), s.created, s.last_seen, s.ip,
                         s.user_agent, s.region)
        size = len(self._cache)
        self._cache[sid] = _Cached(stored, time.monotonic(), time.time())
        self._cache.move_to_end(sid)
        while len(self._cache) > self.size:
            self._cache.popitem(last=False)
        if len(self._cache) != size:
            self._gauge.set(len(self._cache))

    def forget(self, sid: str) -> None:
        if self._cache.pop(sid, None) is not None:
            self._gauge.set(len(self._cache))

    def forget_user(self, user_id: str) -> None:
        for sid in [k for k, c in self._cache.items() if c.session.user_id == user_id]:
            self.forget(sid)

    def stale(self, sid: str, token: str) -> Session | None:
        cached = self._cache.get(sid)
        if cached is None:
            return None
        now = time.time()
        s = cached.session
        fresh = time.monotonic() - cached.validated <= self.max_age
        alive = now < s.created + self._abs_s and now < cached.seen_wall + self._idle_s
        if not (fresh and alive):
            self.forget(sid)
            return None
        return replace(s, token=token, data=dict(s.data), stale=True)
