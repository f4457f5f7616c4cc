"""Rate limit values: ``Limit.parse("100/minute")``, ``"10 per 1 second"``, policy lists."""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

from fleetkit.errors import ConfigError

__all__ = ["Limit", "parse_limits"]

HEADER = struct.Struct("<ibq")
HIT_HEADER = HEADER.pack(1, 0, -1)  # cost 1, no dry run, Redis TIME
_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "s": 1, "m": 60, "h": 3600,
          "d": 86400}
_RE = re.compile(
    r"^\s*(\d+)\s*(?:/|per)\s*(\d+)?\s*(second|minute|hour|day|s|m|h|d)s?\s*$", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class Limit:
    """``amount`` requests per ``window`` seconds (``name`` labels it in headers and metrics)."""

    amount: int
    window: float
    name: str = ""
    # Precomputed once: the per-limit Redis key suffix and script arguments (hot path).
    window_ms: int = field(init=False, repr=False, compare=False)
    suffix: str = field(init=False, repr=False, compare=False)
    packed: bytes = field(init=False, repr=False, compare=False)
    hit_arg: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.amount < 1:
            raise ConfigError(f"a limit's amount must be >= 1, got {self.amount}")
        window_ms = round(self.window * 1000)
        if window_ms < 1:
            raise ConfigError(f"a limit's window must be >= 1 ms, got {self.window}")
        object.__setattr__(self, "window_ms", window_ms)
        object.__setattr__(self, "suffix", f":{window_ms}:{self.amount}")
        # The scripts' binary argument (see prologue.lua): int64 window_ms, int64 amount, after a
        # header of int32 cost, int8 dry, int64 now_us (-1: Redis TIME).
        object.__setattr__(self, "packed", struct.pack("<qq", window_ms, self.amount))
        object.__setattr__(self, "hit_arg", HIT_HEADER + self.packed)
        if not self.name:
            object.__setattr__(self, "name", f"{self.amount}-per-{_fmt(self.window)}s")

    @classmethod
    def parse(cls, text: str, *, name: str = "") -> Limit:
        """``"100/minute"``, ``"10 per 1 second"``, ``"5/10s"``, ``"1000 per hour"``."""
        match = _RE.match(text)
        if match is None:
            raise ConfigError(f"{text!r} is not a rate limit such as '100/minute'")
        amount, count, unit = match.groups()
        return cls(int(amount), int(count or 1) * _UNITS[unit.lower()], name)

    def __str__(self) -> str:
        return f"{self.amount}/{_fmt(self.window)}s"


def _fmt(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


def parse_limits(spec: str | Limit | list[Limit] | tuple[Limit, ...]) -> tuple[Limit, ...]:
    """``"20/second;1000/hour"`` (``;`` or ``,`` separated), one Limit or a sequence of them."""
    if isinstance(spec, Limit):
        return (spec,)
    if isinstance(spec, str):
        items = [p for p in re.split(r"[;,]", spec) if p.strip()]
        if not items:
            raise ConfigError("empty rate limit policy")
        return tuple(Limit.parse(p) for p in items)
    limits = tuple(spec)
    if not limits or not all(isinstance(x, Limit) for x in limits):
        raise ConfigError("expected one or more Limit objects")
    return limits
