"""The Python twin of the Lua algorithms: same arguments, same integer arithmetic, same reply.

Each function mirrors its ``.lua`` file line for line over a :class:`Store` (the memory backend's
:class:`~fleetkit.ratelimit.memory.MemoryStore`), and the
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


def sliding_window(db: Store, keys: Sequence[str], args: Sequence[int], cost: int,
                   dry: bool, now_us: int) -> Reply:
    now = now_us // 1000
    allowed = 1
    st = []
    for i, key in enumerate(keys):
        w, amount = args[2 * i], args[2 * i + 1]
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
        ok = room >= cost * w
        if not ok:
            allowed = 0
        st.append((key, w, amount, idx, e, curr, prev, room, ok, same))
    out = [allowed]
    for key, w, amount, idx, e, curr, prev, room, ok, same in st:
        if allowed and cost > 0 and not dry:
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
        out += (remaining, reset, retry)
    return out


def sliding_log(db: Store, keys: Sequence[str], args: Sequence[int], cost: int,
                dry: bool, now_us: int) -> Reply:
    now = now_us // 1000
    allowed = 1
    st = []
    for i, key in enumerate(keys):
        w, amount = args[2 * i], args[2 * i + 1]
        log: list[int] = db.get(key, now_us) or []
        start = bisect.bisect_right(log, now - w)  # entries with t > now - w count
        count = len(log) - start
        ok = count + cost <= amount
        if not ok:
            allowed = 0
        st.append((key, w, amount, log, start, count, ok))
    out = [allowed]
    for key, w, amount, log, start, count, ok in st:
        wrote = bool(allowed and cost > 0 and not dry)
        if wrote:
            kept = log[start:]
            at = bisect.bisect_right(kept, now)  # local clocks may step back: keep it sorted
            kept[at:at] = [now] * cost
            db.set(key, kept, w, now_us)
            log, start = kept, 0
            count += cost
        reset = 0
        if count > 0:
            reset = w if wrote else log[-1] + w - now
        retry = -1
        if not ok:  # when the (count + cost - amount)-th oldest request leaves the window
            retry = reset if cost > amount else log[start + count + cost - amount - 1] + w - now
        out += (max(0, amount - count), reset, retry)
    return out


def gcra(db: Store, keys: Sequence[str], args: Sequence[int], cost: int, dry: bool,
         now_us: int) -> Reply:
    now = now_us
    allowed = 1
    st = []
    for i, key in enumerate(keys):
        amount = args[2 * i + 1]
        inc = max(1, args[2 * i] * 1000 // amount)
        burst = amount * inc
        tat = db.get(key, now_us)
        if tat is None or tat < now:
            tat = now
        new_tat = tat + cost * inc
        ok = new_tat - now <= burst
        if not ok:
            allowed = 0
        st.append((key, inc, burst, tat, new_tat, ok))
    out = [allowed]
    for key, inc, burst, tat, new_tat, ok in st:
        if allowed and cost > 0 and not dry:
            tat = new_tat
            db.set(key, tat, -(-(tat - now) // 1000), now_us)
        retry = -(-(new_tat - now - burst) // 1000) if not ok else -1
        out += ((burst - (tat - now)) // inc, -(-(tat - now) // 1000), retry)
    return out


ALGORITHMS: dict[str, Callable[[Store, Sequence[str], Sequence[int], int, bool, int],
                               Reply]] = {
    "sliding_window": sliding_window,
    "sliding_log": sliding_log,
    "gcra": gcra,
}
