"""A deliberately naive reference model of the three algorithms, for the property tests.

It keeps every admitted request and recomputes usage from that history; ``retry_after`` is
found by searching time (usage never grows while no request is admitted) instead of by formula,
and GCRA is modelled as the token bucket it is equivalent to, with exact fractions.
"""

from __future__ import annotations

from fractions import Fraction
from math import ceil, floor


class Reference:
    def __init__(self, algorithm: str, limits: list[tuple[int, int]]) -> None:
        self.algorithm = algorithm
        self.limits = limits  # (window_ms, amount)
        self.events: list[list[tuple[int, int]]] = [[] for _ in limits]  # (ms, cost)
        self.buckets: list[tuple[Fraction, int] | None] = [None for _ in limits]  # tokens, at

    # --- per-limit views at time t -------------------------------------------------------------

    def _window(self, i: int, t: int) -> tuple[int, int, int]:
        w, _ = self.limits[i]
        idx, e = divmod(t, w)
        curr = sum(c for at, c in self.events[i] if at // w == idx)
        prev = sum(c for at, c in self.events[i] if at // w == idx - 1)
        return curr, prev, e

    def _free(self, i: int, t_us: int) -> Fraction:
        """Quota still free at t (requests), possibly fractional or negative."""
        w, amount = self.limits[i]
        t = t_us // 1000
        if self.algorithm == "sliding_window":
            curr, prev, e = self._window(i, t)
            return amount - Fraction(prev * (w - e), w) - curr
        if self.algorithm == "sliding_log":
            return Fraction(amount - sum(c for at, c in self.events[i] if at > t - w))
        return self._tokens(i, t_us)

    def _inc(self, i: int) -> int:
        w, amount = self.limits[i]
        return max(1, w * 1000 // amount)

    def _tokens(self, i: int, t_us: int) -> Fraction:
        _, amount = self.limits[i]
        state = self.buckets[i]
        if state is None:
            return Fraction(amount)
        tokens, at = state
        return min(Fraction(amount), tokens + Fraction(t_us - at, self._inc(i)))

    def _ok(self, i: int, t_us: int, cost: int) -> bool:
        return self._free(i, t_us) >= cost

    def _reset_ms(self, i: int, t_us: int) -> int:
        w, amount = self.limits[i]
        t = t_us // 1000
        if self.algorithm == "sliding_window":
            curr, prev, e = self._window(i, t)
            return 2 * w - e if curr else (w - e if prev else 0)
        if self.algorithm == "sliding_log":
            live = [at for at, _ in self.events[i] if at > t - w]
            return max(live) + w - t if live else 0
        return ceil((amount - self._tokens(i, t_us)) * self._inc(i) / 1000)

    def _retry_ms(self, i: int, t_us: int, cost: int) -> int:
        w, amount = self.limits[i]
        if self.algorithm == "gcra":
            return ceil((cost - self._tokens(i, t_us)) * self._inc(i) / 1000)
        if cost > amount:  # never fits: the algorithms report the time to a full reset
            return self._reset_ms(i, t_us)
        lo, hi = 1, 2 * w  # smallest whole-ms wait after which the request fits
        while lo < hi:
            mid = (lo + hi) // 2
            if self._ok(i, t_us + mid * 1000, cost):
                hi = mid
            else:
                lo = mid + 1
        return lo

    # --- one request -------------------------------------------------------------------------

    def decide(self, t_us: int, cost: int, dry: bool) -> list[int]:
        oks = [self._ok(i, t_us, cost) for i in range(len(self.limits))]
        allowed = all(oks)
        if allowed and cost > 0 and not dry:
            for i in range(len(self.limits)):
                self.events[i].append((t_us // 1000, cost))
                tokens = self._tokens(i, t_us)
                self.buckets[i] = (tokens - cost, t_us)
        out = [int(allowed)]
        for i, ok in enumerate(oks):
            free = self._free(i, t_us)
            out += [max(0, floor(free)), self._reset_ms(i, t_us),
                    -1 if ok else self._retry_ms(i, t_us, cost)]
        return out
