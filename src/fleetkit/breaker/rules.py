"""Breaker configuration: trip rules, timing and outcome classification."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from fleetkit.errors import ConfigError

__all__ = ["BreakerConfig", "BreakerOutcome", "classify_error"]

#: How one call counted (``ignored``: not at all). Was ``Outcome``, a name audit uses too.
BreakerOutcome = Literal["success", "failure", "ignored"]


@dataclass(frozen=True, kw_only=True, slots=True)
class BreakerConfig:
    """How one breaker decides; validated once, shared by both backends.

    Trip rules (closed state, evaluated fleet-wide on every flush):

    * failure rate: ``failures / calls >= failure_rate_threshold`` once the sliding window of
      ``window_seconds`` holds at least ``minimum_calls`` calls;
    * slow-call rate (when ``slow_call_seconds`` is set): calls lasting at least that long, over
      the same window and minimum, ``>= slow_call_rate_threshold``;
    * consecutive failures (when ``consecutive_failures`` is set): that many failures without a
      success in between, across the fleet (ordering between instances is per flush interval).

    Open lasts ``wait_open_seconds``, multiplied by ``backoff_multiplier`` for every re-open
    from half_open, capped at ``max_wait_open_seconds``. Half-open admits ``half_open_permits``
    trial calls fleet-wide; all must succeed to close, any failure re-opens.
    """

    failure_rate_threshold: float = 0.5
    minimum_calls: int = 20
    window_seconds: float = 10.0
    wait_open_seconds: float = 5.0
    half_open_permits: int = 3
    slow_call_seconds: float | None = None
    slow_call_rate_threshold: float = 1.0
    consecutive_failures: int | None = None
    backoff_multiplier: float = 1.0
    max_wait_open_seconds: float = 300.0
    window_buckets: int = 10
    lease_seconds: float = 30.0
    flush_interval: float = 0.25
    poll_interval: float = 1.0
    record_exceptions: tuple[type[BaseException], ...] = (Exception,)
    ignore_exceptions: tuple[type[BaseException], ...] = ()
    is_failure: Callable[[BaseException], bool] | None = None
    result_is_failure: Callable[[Any], bool] | None = None

    def __post_init__(self) -> None:
        try:
            bad = self._invalid()
        except TypeError as exc:  # a comparison with a value of the wrong type
            raise ConfigError(f"invalid circuit breaker option type: {exc}") from exc
        if bad:
            raise ConfigError(f"invalid circuit breaker option(s): {', '.join(bad)}")
        for name in ("record_exceptions", "ignore_exceptions"):
            value = getattr(self, name)
            if not (isinstance(value, tuple) and all(
                    isinstance(t, type) and issubclass(t, BaseException) for t in value)):
                raise ConfigError(f"circuit breaker option {name} must be a tuple of "
                                  "exception classes")
        for name in ("is_failure", "result_is_failure"):
            if getattr(self, name) is not None and not callable(getattr(self, name)):
                raise ConfigError(f"circuit breaker option {name} must be callable")

    def _invalid(self) -> list[str]:
        checks = {
            "failure_rate_threshold": 0 < self.failure_rate_threshold <= 1,
            "slow_call_rate_threshold": 0 < self.slow_call_rate_threshold <= 1,
            "minimum_calls": self.minimum_calls >= 1,
            "window_seconds": self.window_seconds > 0,
            "wait_open_seconds": self.wait_open_seconds > 0,
            "half_open_permits": self.half_open_permits >= 1,
            "slow_call_seconds": self.slow_call_seconds is None or self.slow_call_seconds > 0,
            "consecutive_failures": self.consecutive_failures is None
            or self.consecutive_failures >= 1,
            "backoff_multiplier": self.backoff_multiplier >= 1,
            "max_wait_open_seconds": self.max_wait_open_seconds >= self.wait_open_seconds,
            "window_buckets": 1 <= self.window_buckets <= 1000,
            "lease_seconds": self.lease_seconds > 0,
            "flush_interval": self.flush_interval > 0,
            "poll_interval": self.poll_interval > 0,
        }
        return [name for name, ok in checks.items() if not ok]

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> BreakerConfig:
        """From the ``BREAKER_*`` settings of :class:`fleetkit.config.Settings` (typed ``Any``
        to keep imports one-way), plus ``overrides``."""
        options: dict[str, Any] = {
            "failure_rate_threshold": settings.breaker_failure_rate,
            "minimum_calls": settings.breaker_minimum_calls,
            "window_seconds": settings.breaker_window_seconds,
            "wait_open_seconds": settings.breaker_wait_open_seconds,
            "half_open_permits": settings.breaker_half_open_permits,
        }
        try:
            return cls(**{**options, **overrides})
        except TypeError as exc:  # an unknown option
            raise ConfigError(f"circuit breaker: {exc}") from exc

    @property
    def bucket_ms(self) -> int:
        return max(1, int(self.window_seconds * 1000 / self.window_buckets))

    def script_args(self) -> list[str | int | float]:
        """ARGV[4..14] of ``breaker.lua`` (computed once per breaker)."""
        slow_rate = self.slow_call_rate_threshold if self.slow_call_seconds is not None else 0
        return [
            self.failure_rate_threshold, slow_rate, self.minimum_calls,
            self.consecutive_failures or 0, int(self.window_seconds * 1000), self.bucket_ms,
            int(self.wait_open_seconds * 1000), self.backoff_multiplier,
            int(self.max_wait_open_seconds * 1000), self.half_open_permits,
            int(self.lease_seconds * 1000),
        ]


def classify_error(config: BreakerConfig, exc: BaseException) -> BreakerOutcome:
    """Failure, or ignored; an exception that is not recorded counts as a success.

    Cancellation (and anything that is not an ``Exception``: KeyboardInterrupt, SystemExit) is
    never a failure: the call did not get an answer from the protected service.
    """
    if isinstance(exc, asyncio.CancelledError) or not isinstance(exc, Exception):
        return "ignored"
    if config.ignore_exceptions and isinstance(exc, config.ignore_exceptions):
        return "ignored"
    if config.is_failure is not None:
        return "failure" if config.is_failure(exc) else "success"
    return "failure" if isinstance(exc, config.record_exceptions) else "success"
