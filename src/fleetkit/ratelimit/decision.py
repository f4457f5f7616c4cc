"""A rate limit decision and the binary reply format every backend answers in.

The scripts (``prologue.lua``) and the memory backend reply with the same bytes: int8 allowed,
then int64 remaining, reset_ms and retry_ms (-1: none) per limit. Unpacking it is on the hot
path, so the common sizes have precompiled structs.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import NamedTuple

from fleetkit.ratelimit.limits import Limit

__all__ = ["Decision", "LimitState", "from_reply", "pack_reply", "reply_size", "unpack_reply"]


class LimitState(NamedTuple):
    """One limit's share of a decision (what the RateLimit header fields report)."""

    limit: Limit
    remaining: int
    reset_after: float
    retry_after: float | None


class Decision:
    """Outcome of one request: ``allowed``, ``remaining``, ``reset_after``, ``retry_after``.

    ``remaining``/``reset_after`` are those of the most constrained limit, ``retry_after`` (only
    when denied) is when every limit would admit the same request again; ``details`` has them per
    limit. ``backend`` says who decided: redis, memory, local, open, closed or cache.
    """

    __slots__ = ("_reply", "allowed", "backend", "limits", "remaining", "reset_after",
                 "retry_after")

    def __init__(self, allowed: bool, remaining: int, reset_after: float,
                 retry_after: float | None, backend: str, limits: tuple[Limit, ...],
                 reply: Sequence[int] | None = None) -> None:
        self.allowed = allowed
        self.remaining = remaining
        self.reset_after = reset_after
        self.retry_after = retry_after
        self.backend = backend
        self.limits = limits
        self._reply = reply

    @property
    def details(self) -> tuple[LimitState, ...]:
        """Per-limit remaining / reset / retry, in the order the limits were given."""
        r = self._reply
        if r is None:
            return tuple(LimitState(lim, self.remaining, self.reset_after, self.retry_after)
                         for lim in self.limits)
        return tuple(
            LimitState(lim, r[3 * i + 1], r[3 * i + 2] / 1000,
                       None if r[3 * i + 3] < 0 else r[3 * i + 3] / 1000)
            for i, lim in enumerate(self.limits)
        )

    def __repr__(self) -> str:
        return (f"Decision(allowed={self.allowed}, remaining={self.remaining}, "
                f"reset_after={self.reset_after}, retry_after={self.retry_after}, "
                f"backend={self.backend!r})")


_REPLY = [struct.Struct("<b" + "qqq" * n) for n in range(1, 9)]


def reply_size(n_limits: int) -> int:
    return 1 + 24 * n_limits


def pack_reply(reply: Sequence[int]) -> bytes:
    return struct.pack("<b" + "qqq" * ((len(reply) - 1) // 3), *reply)


def unpack_reply(reply: bytes, n: int) -> tuple[int, ...]:
    if n <= len(_REPLY):
        return _REPLY[n - 1].unpack(reply)
    return struct.unpack("<b" + "qqq" * n, reply)


def from_reply(reply: Sequence[int], limits: tuple[Limit, ...], backend: str) -> Decision:
    allowed = reply[0] == 1
    if len(limits) == 1:  # the common case, kept cheap
        return Decision(allowed, reply[1], reply[2] / 1000,
                        None if allowed else reply[3] / 1000, backend, limits, reply)
    remaining = reply[1]
    reset = reply[2]
    retry = reply[3]
    for i in range(4, len(reply), 3):
        if reply[i] < remaining or (reply[i] == remaining and reply[i + 1] > reset):
            remaining, reset = reply[i], reply[i + 1]
        retry = max(retry, reply[i + 2])
    return Decision(allowed, remaining, reset / 1000, None if allowed else retry / 1000, backend,
                    limits, reply)
