"""In-memory twin of the session scripts (embedded mode, ``redis=None``).

A tiny keyspace (hashes, sorted sets, strings; millisecond TTLs on the wall clock, as Redis
``TIME``) and a Python port of each ``.lua`` file taking the same keys and arguments and giving
the same reply, so :class:`~fleetkit.sessions.SessionStore` runs one code path on both backends.
Expired keys are dropped lazily on access and by an amortised sweep, so memory stays bounded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from fleetkit.deprecation import renamed
from fleetkit.redis import Script

__all__ = ["MemorySessionBackend"]

Reply = Any


class _Keyspace:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.expires: dict[str, int] = {}
        self._writes = 0

    @staticmethod
    def now() -> int:
        return int(time.time() * 1000)

    def _live(self, key: str) -> bool:
        deadline = self.expires.get(key)
        if deadline is not None and deadline <= self.now():
            self.data.pop(key, None)
            self.expires.pop(key, None)
        return key in self.data

    def get(self, key: str) -> Any:
        return self.data[key] if self._live(key) else None

    def exists(self, key: str) -> bool:
        return self._live(key)

    def delete(self, key: str) -> int:
        self.expires.pop(key, None)
        return 1 if self.data.pop(key, None) is not None else 0

    def put(self, key: str, value: Any, ttl_ms: int | None = None) -> None:
        self._written()
        self.data[key] = value
        if ttl_ms is None:
            self.expires.pop(key, None)
        else:
            self.expires[key] = self.now() + ttl_ms

    def hash(self, key: str) -> dict[str, str]:
        found = self.get(key)
        if found is None:
            found = {}
            self.put(key, found)
        assert isinstance(found, dict)
        return found

    def pexpire(self, key: str, ttl_ms: int) -> None:
        if self._live(key):
            self.expires[key] = self.now() + ttl_ms

    def pttl(self, key: str) -> int:
        if not self._live(key):
            return -2
        deadline = self.expires.get(key)
        return -1 if deadline is None else deadline - self.now()

    def zrange(self, key: str) -> list[str]:
        z: dict[str, int] | None = self.get(key)
        return [m for m, _ in sorted((z or {}).items(), key=lambda kv: (kv[1], kv[0]))]

    def zrem(self, key: str, member: str) -> None:
        z = self.get(key)
        if z is not None:
            z.pop(member, None)
            if not z:
                self.delete(key)

    def _written(self) -> None:
        # Amortised O(1): a full sweep after as many writes as there are keys.
        self._writes += 1
        if self._writes > max(1024, len(self.data)):
            self._writes = 0
            now = self.now()
            for key in [k for k, d in self.expires.items() if d <= now]:
                self.delete(key)


def _str(value: Any) -> str:
    # Redis stores bytes; the twin stores the same text (data values arrive JSON-encoded).
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _split(h: dict[str, str]) -> list[str]:
    return [x for kv in h.items() for x in kv]


class MemorySessionBackend:
    """Runs the session scripts against a process-local keyspace (same replies as Redis)."""

    def __init__(self) -> None:
        self.ks = _Keyspace()
        self._ops: dict[str, Callable[[Sequence[str], Sequence[str]], Reply]] = {
            "create": self._create, "get": self._get, "update": self._update,
            "rotate": self._rotate, "revoke": self._revoke, "revoke_all": self._revoke_all,
            "list": self._list,
        }

    async def run(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Reply:
        return self._ops[script.name]([_str(k) for k in keys], [_str(a) for a in args])

    async def aclose(self) -> None:
        """Nothing to release: the keyspace lives as long as the store."""

    def _create(self, keys: Sequence[str], argv: Sequence[str]) -> Reply:
        ks, now = self.ks, self.ks.now()
        base, idle, abs_, max_ = argv[0], int(argv[3]), int(argv[4]), int(argv[5])
        pruned = 0
        members = ks.zrange(keys[1])
        for m in members:
            if not ks.exists(base + "s" + m):
                ks.zrem(keys[1], m)
                pruned += 1
        count = len(members) - pruned
        evicted = 0
        if count >= max_:
            if argv[6] == "refuse":
                return [0, now, 0, pruned]
            for m in ks.zrange(keys[1])[: count - max_ + 1]:
                ks.delete(base + "s" + m)
                ks.put(base + "t" + m, "e", int(argv[7]))
                ks.zrem(keys[1], m)
                evicted += 1
        h = {"u": argv[2], "c": str(now), "i": argv[8], "a": argv[9]}
        h.update(zip(argv[10::2], argv[11::2], strict=True))
        ks.put(keys[0], h, min(idle, abs_))
        index: dict[str, int] | None = ks.get(keys[1])
        if index is None:
            index = {}
            ks.put(keys[1], index, abs_)
        # Same as create.lua: strictly after the newest entry, so eviction is oldest-first.
        index[argv[1]] = max([now, *(score + 1 for score in index.values())])
        if ks.pttl(keys[1]) < abs_:
            ks.pexpire(keys[1], abs_)
        return [1, now, evicted, pruned]

    def _get(self, keys: Sequence[str], argv: Sequence[str]) -> Reply:
        ks, now = self.ks, self.ks.now()
        base, sid, key, status = argv[0], argv[1], keys[0], 1
        idle, abs_, touch = int(argv[2]), int(argv[3]), int(argv[4])
        h = ks.get(key)
        if h is None:
            target = ks.get(keys[1])
            if target is None:
                return [0, sid, now, 0]
            sid, key, status = target, base + "s" + target, 2
            h = ks.get(key)
            if h is None:
                return [0, sid, now, 0]
        created = int(h["c"])
        if now >= created + abs_:
            ks.delete(key)
            ks.zrem(base + "u" + h["u"], sid)
            return [-1, sid, now, 0]
        ttl = ks.pttl(key)
        want = min(idle, created + abs_ - now)
        if want - ttl >= touch:
            ks.pexpire(key, want)
            ttl = want
        return [status, sid, now, ttl, *_split(h)]

    def _update(self, keys: Sequence[str], argv: Sequence[str]) -> Reply:
        ks, now = self.ks, self.ks.now()
        base, key, tomb = argv[0], keys[0], keys[2]
        if not ks.exists(key):
            target = ks.get(keys[1])
            if target is not None:
                key, tomb = base + "s" + target, base + "t" + target
        h = ks.get(key)
        if h is None:
            return -1 if ks.exists(tomb) else 0
        if now >= int(h["c"]) + int(argv[1]):
            return 0
        n = int(argv[2])
        pairs = argv[3: 3 + 2 * n]
        h.update(zip(pairs[::2], pairs[1::2], strict=True))
        for field in argv[3 + 2 * n:]:
            h.pop(field, None)
        return 1

    def _rotate(self, keys: Sequence[str], argv: Sequence[str]) -> Reply:
        ks, now = self.ks, self.ks.now()
        base, old, new = argv[0], argv[1], argv[2]
        idle, abs_ = int(argv[3]), int(argv[4])
        h = ks.get(keys[0])
        if h is None:
            return [-1 if ks.exists(base + "t" + old) else 0, now]
        created = int(h["c"])
        index = base + "u" + h["u"]
        if now >= created + abs_:
            ks.delete(keys[0])
            ks.zrem(index, old)
            return [0, now]
        ks.delete(keys[0])
        n = int(argv[6])
        pairs = argv[7: 7 + 2 * n]
        h.update(zip(pairs[::2], pairs[1::2], strict=True))
        ttl = min(idle, created + abs_ - now)
        ks.put(keys[2], h, ttl)
        ks.zrem(index, old)
        z: dict[str, int] | None = ks.get(index)
        if z is None:
            z = {}
            ks.put(index, z, abs_)
        z[new] = created
        ks.put(keys[1], new, int(argv[5]))
        return [1, now, ttl, *_split(h)]

    def _revoke(self, keys: Sequence[str], argv: Sequence[str]) -> Reply:
        ks = self.ks
        base, sid, key, tomb_ms = argv[0], argv[1], keys[0], int(argv[2])
        target = ks.get(keys[1])
        if target is not None:
            ks.delete(keys[1])
            ks.put(base + "t" + sid, "r", tomb_ms)
            if not ks.exists(key):
                sid, key = target, base + "s" + target
        h = ks.get(key)
        ks.put(base + "t" + sid, "r", tomb_ms)
        if h is None:
            return 0
        ks.delete(key)
        ks.zrem(base + "u" + h["u"], sid)
        return 1

    def _revoke_all(self, keys: Sequence[str], argv: Sequence[str]) -> Reply:
        ks, base, n = self.ks, argv[0], 0
        for m in ks.zrange(keys[0]):
            n += ks.delete(base + "s" + m) if ks.exists(base + "s" + m) else 0
            ks.put(base + "t" + m, "r", int(argv[1]))
        ks.delete(keys[0])
        return n

    def _list(self, keys: Sequence[str], argv: Sequence[str]) -> Reply:
        ks, base, pruned = self.ks, argv[0], 0
        reply: list[Any] = [0, ks.now()]
        for m in ks.zrange(keys[0]):
            h = ks.get(base + "s" + m)
            if h is None:
                ks.zrem(keys[0], m)
                pruned += 1
            else:
                reply += [m, h["c"], ks.pttl(base + "s" + m), h.get("i", ""), h.get("a", "")]
        reply[0] = pruned
        return reply


# Deprecated: the name was also the rate limiter's and the breaker's.
__getattr__ = renamed(__name__, MemoryBackend=(MemorySessionBackend, "MemorySessionBackend"))
