"""Health checks: registry, ASGI endpoints, ready-made checks and the standalone probe.

``ComponentStatus`` (status.py) is the result type every component's ``health()`` returns.
Everything else is imported lazily so that ``python -m fleetkit.health.probe`` (the Docker
``HEALTHCHECK``) loads nothing but the standard library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fleetkit.health.status import ComponentStatus, Status

if TYPE_CHECKING:
    from fleetkit.health.asgi import HealthEndpoint, HealthMiddleware, health_routes
    from fleetkit.health.checks import (
        HasHealth,
        add_redis_checks,
        component_check,
        redis_role_check,
        sqlalchemy_check,
    )
    from fleetkit.health.registry import CheckResult, HealthRegistry, HealthReport
    from fleetkit.health.shutdown import CloseWhileDraining, drain_on_signal

__all__ = [
    "CheckResult",
    "CloseWhileDraining",
    "ComponentStatus",
    "HasHealth",
    "HealthEndpoint",
    "HealthMiddleware",
    "HealthRegistry",
    "HealthReport",
    "Status",
    "add_redis_checks",
    "component_check",
    "drain_on_signal",
    "health_routes",
    "redis_role_check",
    "sqlalchemy_check",
]

_LAZY = {
    "CheckResult": "registry", "HealthRegistry": "registry", "HealthReport": "registry",
    "HealthEndpoint": "asgi", "HealthMiddleware": "asgi", "health_routes": "asgi",
    "HasHealth": "checks", "add_redis_checks": "checks", "component_check": "checks",
    "redis_role_check": "checks", "sqlalchemy_check": "checks", "drain_on_signal": "shutdown",
    "CloseWhileDraining": "shutdown",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fleetkit.health' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"fleetkit.health.{module}"), name)
