"""Ready-made checks: Redis role clients, SQLAlchemy engines and any ``health()`` component."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Protocol

from fleetkit.health.registry import CheckFunc, HealthRegistry
from fleetkit.health.status import ComponentStatus

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from fleetkit.redis import RedisClients, Role

__all__ = ["HasHealth", "add_redis_checks", "component_check", "redis_role_check",
           "sqlalchemy_check"]


class HasHealth(Protocol):
    """Any fleetkit component: a cheap, non-raising ``health()``."""

    async def health(self) -> ComponentStatus: ...


def component_check(component: HasHealth) -> CheckFunc:
    """Adapt ``component.health()`` to a registry check."""

    async def check() -> ComponentStatus:
        return await component.health()

    return check


def redis_role_check(clients: RedisClients, role: Role, *, timeout: float = 0.5) -> CheckFunc:
    """PING one role client; an embedded (in-memory) role always passes."""

    async def check() -> ComponentStatus:
        if clients.get(role) is None:
            return ComponentStatus("pass", "datastore", output="embedded: in-memory backend")
        ping = await clients.ping(role, timeout=timeout)
        return ComponentStatus("pass" if ping.ok else "fail", "datastore",
                               observed_value=round(ping.latency * 1000, 3), observed_unit="ms",
                               output=ping.error)

    return check


def add_redis_checks(registry: HealthRegistry, clients: RedisClients, *, critical: bool,
                     timeout: float = 0.5, roles: tuple[Role, ...] | None = None) -> list[str]:
    """Register ``redis-<role>:responseTime`` for each role; returns the check names.

    Choose ``critical`` deliberately: every instance shares Redis, so a critical Redis check
    takes the whole fleet out of the load balancer during an outage. Components with a local
    fallback report ``warn`` through their own ``health()`` instead.
    """
    from fleetkit.redis import ROLES

    names = []
    for role in roles or ROLES:
        name = f"redis-{role}"
        registry.add(name, redis_role_check(clients, role, timeout=timeout), critical=critical,
                     timeout=timeout + 0.5, component_type="datastore",
                     measurement="responseTime")
        names.append(name)
    return names


def sqlalchemy_check(engine: AsyncEngine, *, timeout: float = 1.0) -> CheckFunc:
    """``SELECT 1`` through an SQLAlchemy async engine (its pool), time-boxed."""
    from sqlalchemy import text

    async def check() -> ComponentStatus:
        start = time.perf_counter()
        try:
            async with asyncio.timeout(timeout), engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:  # health reports, it does not raise
            kind = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
            return ComponentStatus("fail", "datastore",
                                   observed_value=round((time.perf_counter() - start) * 1000, 3),
                                   observed_unit="ms", output=f"{kind}: {str(exc)[:200]}")
        return ComponentStatus("pass", "datastore",
                               observed_value=round((time.perf_counter() - start) * 1000, 3),
                               observed_unit="ms")

    return check
