"""The limiter's local deny cache: a key denied by Redis stays denied here until its retry time.

A client hammering an exhausted limit would otherwise cost one round trip per request; the
cache answers those locally (``Decision.backend == "cache"``). It only ever denies: an entry is
dropped once its retry time has passed, and a request smaller than the denied one still goes to
Redis (it may fit).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from fleetkit.ratelimit.decision import Decision
from fleetkit.ratelimit.limits import Limit

__all__ = ["DenyCache"]


class DenyCache:
    """Bounded (``max_keys``): expired entries go first, then the oldest."""

    def __init__(self, *, max_keys: int = 10_000) -> None:
        self.max_keys = max_keys
        #: key -> (monotonic time it may be allowed again, cost that was denied). The hot path
        #: tests this dict's truthiness directly, so it is never replaced, only mutated.
        self.entries: dict[str, tuple[float, int]] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def remember(self, keys: Sequence[str], reply: Sequence[int], cost: int, now: float) -> None:
        denied = self.entries
        if len(denied) >= self.max_keys:
            for k in [k for k, v in denied.items() if v[0] <= now]:
                del denied[k]
            while len(denied) >= self.max_keys:
                del denied[next(iter(denied))]
        for i, k in enumerate(keys):
            retry = reply[3 * i + 3]
            if retry > 0:
                denied[k] = (now + retry / 1000, cost)

    def lookup(self, keys: Sequence[str], limits: tuple[Limit, ...],
               cost: int) -> Decision | None:
        """The cached denial of this request, or None if it has to be decided."""
        now = time.monotonic()
        until = 0.0
        for k in keys:
            entry = self.entries.get(k)
            if entry is None:
                continue
            if entry[0] <= now:
                del self.entries[k]
            elif entry[1] <= cost:  # a smaller request than the denied one may still fit
                until = max(until, entry[0])
        if until == 0.0:
            return None
        wait = until - now
        return Decision(False, 0, wait, wait, "cache", limits)

    def forget(self, keys: Sequence[str]) -> None:
        for k in keys:
            self.entries.pop(k, None)

    def clear(self) -> None:
        self.entries.clear()
