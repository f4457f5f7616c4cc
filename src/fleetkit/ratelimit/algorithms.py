"""The Python twin of the Lua algorithms: same arguments, same integer arithmetic, same reply.

Each algorithm mirrors its ``.lua`` file's ``decide()`` over a :class:`Store` (the memory
backend's :class:`~fleetkit.ratelimit.memory.MemoryStore`): a check of every limit, then a commit
of each (:func:`_all_or_nothing` is the loop both share), and the
property tests hold them (and a separate reference model) to identical replies. ``args`` is
``window_ms, amount`` per key; the reply is allowed, then remaining, reset_ms, retry_ms per key.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from typing import Any, Protocol

__all__ = ["ALGORITHMS", "Reply", "Store", "gcra", "sliding_log", "sliding_window"]

Reply = list[int]


class Store(Protocol):
    """Per-key values with millisecond TTLs, on the caller's clock (``now_us``)."""

    def get(self, key: str, now_us: int) -> Any: ...

    def set(self, key: str, value: Any, ttl_ms: int | None, now_us: int) -> None:
        """``ttl_ms`` None keeps the current expiry (KEEPTTL)."""
        ...


Check = Callable[[Store, str, int, int, int, int], tuple[Any, bool]]
Commit = Callable[[Store, str, Any, bool, bool, int, int], tuple[int, int, int]]


def _all_or_nothing(check: Check, commit: Commit, db: Store, keys: Sequence[str],
                    args: Sequence[int], cost: int, dry: bool, now_us: int) -> Reply:
    """What each script's ``decide()`` does around its algorithm: ``check`` every limit (no
    write), then ``commit`` each one (writing only when every limit allowed the request)."""
    checked = [check(db, key, args[2 * i], args[2 * i + 1], cost, now_us)
               for i, key in enumerate(keys)]
    allowed = int(all(ok for _, ok in checked))
    write = bool(allowed and cost > 0 and not dry)
    out = [allowed]
    for key, (state, ok) in zip(keys, checked, strict=True):
        out += commit(db, key, state, ok, write, cost, now_us)
    return out


def _window_check(db: Store, key: str, w: int, amount: int, cost: int,
                  now_us: int) -> tuple[Any, bool]:
    now = now_us // 1000
    idx = now // w
    e = now - idx * w
    s = db.get(key, now_us)
    curr = prev = 0
    same = False
    if s is not None:
        if s[0] == idx:
            curr, prev, same = s[1], s[2], True
        elif s[0] == idx - 1:
            prev = s[1]
    room = amount * w - prev * (w - e) - curr * w
    return (w, amount, idx, e, curr, prev, room, same), room >= cost * w


def _window_commit(db: Store, key: str, state: Any, ok: bool, write: bool, cost: int,
                   now_us: int) -> tuple[int, int, int]:
    w, amount, idx, e, curr, prev, room, same = state
    if write:
        curr += cost
        room -= cost * w
        db.set(key, (idx, curr, prev), None if same else 2 * w, now_us)
    remaining = room // w if room > 0 else 0
    reset = 2 * w - e if curr > 0 else (w - e if prev > 0 else 0)
    retry = -1
    if not ok:
        k = amount - cost - curr
        if k >= 0:
            retry = (w - e) - k * w // prev
        elif amount - cost >= 0:
            retry = (w - e) + w - (amount - cost) * w // curr
        else:
            retry = reset
    return remaining, reset, retry


def sliding_window(db: Store, keys: Sequence[str], args: Sequence[int], cost: int,
                   dry: bool, now_us: int) -> Reply:
    return _all_or_nothing(_window_check, _window_commit, db, keys, args, cost, dry, now_us)


def _log_check(db: Store, key: str, w: int, amount: int, cost: int,
               now_us: int) -> tuple[Any, bool]:
    now = now_us // 1000
    log: list[int] = db.get(key, now_us) or []
    start = bisect.bisect_right(log, now - w)  # entries with t > now - w count
    count = len(log) - start
    return (w, amount, log, start, count), count + cost <= amount


def _log_commit(db: Store, key: str, state: Any, ok: bool, write: bool, cost: int,
                now_us: int) -> tuple[int, int, int]:
    w, amount, log, start, count = state
    now = now_us // 1000
    if write:
        kept = log[start:]
        at = bisect.bisect_right(kept, now)  # local clocks may step back: keep it sorted
        kept[at:at] = [now] * cost
        db.set(key, kept, w, now_us)
        log, start = kept, 0
        count += cost
    reset = 0
    if count > 0:
        reset = w if write else log[-1] + w - now
    retry = -1
    if not ok:  # when the (count + cost - amount)-th oldest request leaves the window
        retry = reset if cost > amount else log[start + count + cost - amount - 1] + w - now
    return max(0, amount - count), reset, retry


def sliding_log(db: Store, keys: Sequence[str], args: Sequence[int], cost: int,
                dry: bool, now_us: int) -> Reply:
    return _all_or_nothing(_log_check, _log_commit, db, keys, args, cost, dry, now_us)


def _gcra_check(db: Store, key: str, w: int, amount: int, cost: int,
                now_us: int) -> tuple[Any, bool]:
    now = now_us
    inc = max(1, w * 1000 // amount)
    burst = amount * inc
    tat = db.get(key, now_us)
    if tat is None or tat < now:
        tat = now
    new_tat = tat + cost * inc
    return (inc, burst, tat, new_tat), new_tat - now <= burst


def _gcra_commit(db: Store, key: str, state: Any, ok: bool, write: bool, cost: int,
                 now_us: int) -> tuple[int, int, int]:
    inc, burst, tat, new_tat = state
    now = now_us
    if write:
        tat = new_tat
        db.set(key, tat, -(-(tat - now) // 1000), now_us)
    retry = -(-(new_tat - now - burst) // 1000) if not ok else -1
    return (burst - (tat - now)) // inc, -(-(tat - now) // 1000), retry


def gcra(db: Store, keys: Sequence[str], args: Sequence[int], cost: int, dry: bool,
         now_us: int) -> Reply:
    return _all_or_nothing(_gcra_check, _gcra_commit, db, keys, args, cost, dry, now_us)


ALGORITHMS: dict[str, Callable[[Store, Sequence[str], Sequence[int], int, bool, int],
                               Reply]] = {
    "sliding_window": sliding_window,
    "sliding_log": sliding_log,
    "gcra": gcra,
}
