"""BreakerRegistry: one breaker per name, shared options, one place to close them all."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from typing import Any

from fleetkit.breaker.breaker import CircuitBreaker, Listener
from fleetkit.breaker.redis import DEFAULT_KEY_PREFIX
from fleetkit.breaker.rules import BreakerConfig
from fleetkit.errors import ConfigError
from fleetkit.health import ComponentStatus

__all__ = ["BreakerRegistry"]


class BreakerRegistry:
    """Creates breakers on first :meth:`get` with the registry's defaults (plus overrides).

    Listeners added here are attached to every breaker, present and future.
    """

    def __init__(self, *, redis: Any = None, config: BreakerConfig | None = None,
                 key_prefix: str = DEFAULT_KEY_PREFIX, **defaults: Any) -> None:
        if config is not None and not isinstance(config, BreakerConfig):
            raise ConfigError(f"config must be a BreakerConfig, not {type(config).__name__}")
        if not isinstance(key_prefix, str) or not key_prefix:
            raise ConfigError("key_prefix must be a non-empty string")
        # Bad defaults fail here, at start-up, not at the first get() of some request.
        try:
            dataclasses.replace(config or BreakerConfig(), **{
                k: v for k, v in defaults.items() if k != "fallback"})
        except TypeError as exc:
            raise ConfigError(f"breaker registry: {exc}") from exc
        self._redis = redis
        self._config = config
        self._key_prefix = key_prefix
        self._defaults = defaults
        self._breakers: dict[str, CircuitBreaker] = {}
        self._listeners: list[Listener] = []

    @classmethod
    def from_settings(cls, settings: Any, *, redis: Any = None,
                      **defaults: Any) -> BreakerRegistry:
        """From the ``BREAKER_*`` settings (:class:`fleetkit.config.Settings`, typed ``Any`` to
        keep imports one-way); ``redis`` is the main role's client, ``None`` in embedded mode
        (``RedisClients.from_settings(settings).main``)."""
        return cls(redis=redis, config=BreakerConfig.from_settings(settings), **defaults)

    def get(self, name: str, **overrides: Any) -> CircuitBreaker:
        """The breaker called ``name``; ``overrides`` apply only when it is created here."""
        breaker = self._breakers.get(name)
        if breaker is None:
            breaker = CircuitBreaker(name, redis=self._redis, config=self._config,
                                     key_prefix=self._key_prefix,
                                     **{**self._defaults, **overrides})
            for listener in self._listeners:
                breaker.add_listener(listener)
            self._breakers[name] = breaker
        return breaker

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)
        for breaker in self._breakers.values():
            breaker.add_listener(listener)

    def __iter__(self) -> Iterator[CircuitBreaker]:
        return iter(list(self._breakers.values()))

    def __contains__(self, name: object) -> bool:
        return name in self._breakers

    def states(self) -> dict[str, str]:
        return {name: b.state for name, b in self._breakers.items()}

    async def health(self) -> ComponentStatus:
        """``warn`` when any breaker is in local-only mode; details list every state."""
        local = sorted(name for name, b in self._breakers.items() if b.local_only)
        return ComponentStatus(
            "warn" if local else "pass", component_type="circuit-breaker",
            observed_value=len(self._breakers), observed_unit="breakers",
            output=f"local-only (Redis unavailable): {', '.join(local)}" if local else None,
            details={"states": self.states(), "local_only": local},
        )

    async def start(self) -> None:
        """Start every breaker made so far on this event loop (learning their states)."""
        await asyncio.gather(*(b.start() for b in self._breakers.values()))

    async def aclose(self) -> None:
        await asyncio.gather(*(b.aclose() for b in self._breakers.values()))
