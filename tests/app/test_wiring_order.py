"""The reference service's middleware: the documented order, the benchmarked options (it is
built with fleetkit.fastapi.install, the same call a library user makes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fleetkit.app import create_app
from fleetkit.app.guard import ProtocolGuardMiddleware
from fleetkit.bodylimit import BodyLimitMiddleware
from fleetkit.config import load_settings
from fleetkit.health import HealthMiddleware
from fleetkit.health.shutdown import CloseWhileDraining
from fleetkit.observability import HTTPMetricsMiddleware, RequestIdMiddleware
from fleetkit.overload import OverloadMiddleware
from fleetkit.ratelimit import RateLimitMiddleware
from fleetkit.sessions import SessionMiddleware
from tests.app.conftest import embedded_env


def _stack(tmp_path: Path, **env: str) -> list[tuple[type, dict[str, Any]]]:
    app = create_app(load_settings(env=embedded_env(tmp_path, **env)),
                     install_signal_handlers=False)
    return [(m.cls, m.kwargs) for m in app.user_middleware]  # type: ignore[misc]


def test_middleware_order_outermost_first(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    assert [cls for cls, _ in stack] == [
        CloseWhileDraining, OverloadMiddleware, RequestIdMiddleware, HTTPMetricsMiddleware,
        ProtocolGuardMiddleware,
        HealthMiddleware, BodyLimitMiddleware, SessionMiddleware, RateLimitMiddleware]
    options = dict(stack)
    limits = options[RateLimitMiddleware]
    assert [p.name for p in limits["policies"]] == ["ip", "user", "login"]
    assert limits["policies"][2].path == "/v1/auth/login"
    assert limits["exempt"] == ("/metrics", "/docs", "/openapi.json")
    assert options[HealthMiddleware]["version"] == "0.1.0"
    assert options[HTTPMetricsMiddleware] == {"exclude": ("/metrics",)}
    without = [cls for cls, _ in _stack(tmp_path, OVERLOAD_ENABLED="false")]
    assert without[:2] == [CloseWhileDraining, RequestIdMiddleware]
