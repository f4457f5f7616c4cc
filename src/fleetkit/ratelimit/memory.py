"""In-memory twin of the Lua algorithms: same arguments, same integer arithmetic, same reply.

Used for embedded mode (``redis=None``) and as the local fallback when Redis is down. State is a
bounded LRU (``max_keys``) with the same TTLs the scripts set, so memory stays flat under key
churn. Each function below mirrors its ``.lua`` file line for line; the property tests hold them
(and a separate reference model) to identical replies.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["ALGORITHMS", "MemoryBackend"]

Reply = list[int]


class MemoryBackend:
    """Per-key state with expiry, least recently used keys evicted beyond ``max_keys``."""

    def __init__(self, *, max_keys: int = 100_000) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be >= 1")
        self.max_keys = max_keys
        self._data: OrderedDict[str, tuple[Any, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str, now_us: int) -> Any:
        item = self._data.get(key)
        if item is None:
            return None
        if item[1] <= now_us:
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return item[0]

    def set(self, key: str, value: Any, ttl_ms: int | None, now_us: int) -> None:
        """Store with a TTL, or keep the current expiry when ``ttl_ms`` is None (KEEPTTL)."""
        if ttl_ms is None:
            self._data[key] = (value, self._data[key][1])
        else:
            self._data[key] = (value, now_us + ttl_ms * 1000)
        self._data.move_to_end(key)
        while len(self._data) > self.max_keys:
            self._data.popitem(last=False)

    def delete(self, *keys: str) -> int:
        return sum(self._data.pop(k, None) is not None for k in keys)

    def clear(self) -> None:
        self._data.clear()

    def evaluate(self, algorithm: str, keys: Sequence[str], args: Sequence[int],
                 cost: int, dry: bool, now_us: int) -> Reply:
        """Run ``algorithm`` like its script: ``args`` is ``window_ms, amount`` per key."""
        return ALGORITHMS[algorithm](self, keys, args, cost, dry, now_us)


def sliding_window(db: MemoryBackend, keys: Sequence[str], args: Sequence[int], cost: int,
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


def sliding_log(db: MemoryBackend, keys: Sequence[str], args: Sequence[int], cost: int,
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


def gcra(db: MemoryBackend, keys: Sequence[str], args: Sequence[int], cost: int, dry: bool,
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


ALGORITHMS: dict[str, Callable[[MemoryBackend, Sequence[str], Sequence[int], int, bool, int],
                               Reply]] = {
    "sliding_window": sliding_window,
    "sliding_log": sliding_log,
    "gcra": gcra,
}
