"""States, the shared-state snapshot and the batch of outcomes an instance flushes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fleetkit.errors import ConfigError

__all__ = ["STATES", "Batch", "Snapshot", "State"]

State = Literal["closed", "open", "half_open", "forced_open", "disabled"]
STATES: tuple[State, ...] = ("closed", "open", "half_open", "forced_open", "disabled")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The fleet-wide state as the backend last decided it.

    ``version`` grows with every change (older updates are discarded); ``gen`` grows when the
    breaker enters closed or half_open (results of an older generation are ignored);
    ``epoch`` changes only when the shared state was lost (a wiped Redis), which resets both.
    """

    state: State
    version: int
    gen: int
    remaining: float
    epoch: str
    flag: bool = False

    @classmethod
    def parse(cls, reply: list[object]) -> Snapshot:
        """From ``breaker.lua``'s reply (bytes or str, depending on the client)."""
        text = [v.decode() if isinstance(v, bytes) else str(v) for v in reply]
        state = text[0]
        if state not in STATES:
            raise ConfigError(f"unknown breaker state {state!r}")
        return cls(state, int(text[1]), int(text[2]), int(text[3]) / 1000,
                   text[4], text[5] == "1")

    @classmethod
    def parse_message(cls, data: bytes | str) -> Snapshot:
        """From a pub/sub message ``version|state|gen|remaining_ms|epoch``."""
        version, state, gen, remaining, epoch = (
            data.decode() if isinstance(data, bytes) else data).split("|", 4)
        return cls.parse([state, version, gen, remaining, epoch, "0"])


@dataclass(slots=True)
class Batch:
    """Outcomes aggregated locally since the last flush, all admitted under ``gen``."""

    gen: int
    calls: int = 0
    failures: int = 0
    slow: int = 0
    had_success: bool = False
    trailing: int = 0  # failures after the last success of this batch

    def args(self) -> list[int]:
        return [self.gen, self.calls, self.failures, self.slow, int(self.had_success),
                self.trailing]
