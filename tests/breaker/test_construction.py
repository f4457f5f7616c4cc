"""Construction: from_settings, ConfigError for bad input, and the deprecated names."""

from __future__ import annotations

import importlib
import uuid
from typing import Any

import pytest
from redis.asyncio import Redis

import fleetkit.breaker as breaker_pkg
from fleetkit.breaker import (
    BreakerConfig,
    BreakerOutcome,
    BreakerRegistry,
    BreakerTransport,
    CircuitBreaker,
    MemoryBreakerBackend,
    RedisBreakerBackend,
)
from fleetkit.config import Settings
from fleetkit.errors import ConfigError, FleetkitError


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


async def test_registry_from_settings(redis: Redis) -> None:
    s = settings(breaker_failure_rate=0.25, breaker_minimum_calls=7, breaker_window_seconds=3,
                 breaker_wait_open_seconds=2, breaker_half_open_permits=4)
    registry = BreakerRegistry.from_settings(s, redis=redis, flush_interval=0.05)
    try:
        b = registry.get("db", minimum_calls=9)
        cfg = b.config
        assert (cfg.failure_rate_threshold, cfg.window_seconds, cfg.wait_open_seconds,
                cfg.half_open_permits, cfg.flush_interval) == (0.25, 3, 2, 4, 0.05)
        assert cfg.minimum_calls == 9  # a per-breaker override wins
        assert registry.get("other").config.minimum_calls == 7
        await registry.start()
        assert (await b.health()).details["mode"] == "redis"
    finally:
        await registry.aclose()
    embedded = BreakerRegistry.from_settings(s)
    try:
        assert (await embedded.get("x").health()).details["mode"] == "memory"
    finally:
        await embedded.aclose()


async def test_breaker_from_settings() -> None:
    b = CircuitBreaker.from_settings(settings(breaker_minimum_calls=3), "api",
                                     consecutive_failures=2)
    try:
        assert b.name == "api" and b.config.minimum_calls == 3
        assert b.config.consecutive_failures == 2
    finally:
        await b.aclose()


@pytest.mark.parametrize("build", [
    lambda: CircuitBreaker(""),
    lambda: CircuitBreaker(42),  # type: ignore[arg-type]
    lambda: CircuitBreaker("x", failure_rate_threshold=1.5),
    lambda: CircuitBreaker("x", minimum_calls="many"),
    lambda: CircuitBreaker("x", no_such_option=1),
    lambda: CircuitBreaker("x", config={"minimum_calls": 1}),  # type: ignore[arg-type]
    lambda: CircuitBreaker("x", fallback="none"),  # type: ignore[arg-type]
    lambda: CircuitBreaker("x", key_prefix=""),
    lambda: CircuitBreaker("x", redis=object(), backend=MemoryBreakerBackend(BreakerConfig())),
    lambda: CircuitBreaker("x", record_exceptions=(int,)),
    lambda: CircuitBreaker("x", ignore_exceptions=KeyError),
    lambda: CircuitBreaker("x", is_failure=True),
    lambda: BreakerConfig(window_buckets=0),
    lambda: BreakerRegistry(minimum_calls=0),
    lambda: BreakerRegistry(unknown=1),
    lambda: BreakerRegistry(config=3),  # type: ignore[arg-type]
    lambda: MemoryBreakerBackend(None),  # type: ignore[arg-type]
    lambda: BreakerTransport(42),  # type: ignore[arg-type]
    lambda: BreakerTransport(CircuitBreaker("t"), transport=object()),  # type: ignore[arg-type]
    lambda: BreakerConfig.from_settings(settings(), bogus=2),
])
def test_bad_input_is_a_config_error(build: Any) -> None:
    with pytest.raises(ConfigError) as info:
        build()
    assert isinstance(info.value, FleetkitError) and isinstance(info.value, ValueError)
    assert str(info.value)


def test_config_error_names_the_option() -> None:
    with pytest.raises(ConfigError, match="half_open_permits"):
        CircuitBreaker("x", half_open_permits=0)
    with pytest.raises(ConfigError, match="no_such_option"):
        CircuitBreaker("x", no_such_option=1)


def test_deprecated_names_warn_and_alias_the_new_ones() -> None:
    with pytest.warns(DeprecationWarning, match="MemoryBreakerBackend"):
        assert breaker_pkg.MemoryBackend is MemoryBreakerBackend  # type: ignore[attr-defined]
    with pytest.warns(DeprecationWarning, match="BreakerOutcome"):
        assert breaker_pkg.Outcome is BreakerOutcome  # type: ignore[attr-defined]
    memory = importlib.import_module("fleetkit.breaker.memory")
    with pytest.warns(DeprecationWarning, match="MemoryBreakerBackend"):
        assert memory.MemoryBackend is MemoryBreakerBackend
    shared = importlib.import_module("fleetkit.breaker.shared")
    with pytest.warns(DeprecationWarning, match="RedisBreakerBackend"):
        assert shared.RedisBackend is RedisBreakerBackend
    with pytest.raises(AttributeError):
        _ = breaker_pkg.NoSuchName  # type: ignore[attr-defined]


async def test_memory_keyword_is_a_deprecated_backend_alias() -> None:
    backend = MemoryBreakerBackend(BreakerConfig(minimum_calls=1))
    with pytest.warns(DeprecationWarning, match="backend="):
        b = CircuitBreaker("mem", memory=backend, minimum_calls=1)
    other = CircuitBreaker("mem", backend=backend, minimum_calls=1)
    try:
        await b.force_open()
        await other.flush()
        assert other.state == "forced_open"  # one shared state: the alias passed it through
    finally:
        await b.aclose()
        await other.aclose()


async def test_close_is_a_deprecated_alias_of_force_close(redis: Redis) -> None:
    b = CircuitBreaker(f"c-{uuid.uuid4().hex[:6]}", redis=redis, key_prefix="test:cb:close")
    try:
        assert await b.force_open() == "forced_open"
        gen = b.generation
        with pytest.warns(DeprecationWarning, match="force_close"):
            assert await b.close() == "closed"
        assert b.generation == gen + 1  # the fleet-wide action ran, not a shutdown
        async with b:  # still usable: close() never stopped anything
            pass
        assert await b.force_open() == "forced_open"
        assert await b.force_close() == "closed"
    finally:
        await b.aclose()
