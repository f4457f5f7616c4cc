"""The reference service wires admission control outermost, on by default, off by setting."""

from __future__ import annotations

from pathlib import Path

import httpx

from fleetkit.app import create_app
from fleetkit.config import load_settings
from fleetkit.observability import RequestIdMiddleware
from fleetkit.overload import OverloadMiddleware


def env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/app.db",
            "AUDIT_SPOOL_DIR": str(tmp_path / "spool"), "HEALTH_SHOW_DETAILS": "true", **extra}


async def test_on_by_default_outermost_with_a_health_check(tmp_path: Path) -> None:
    app = create_app(load_settings(env(tmp_path)), install_signal_handlers=False)
    # add_middleware puts the last added first: admission control runs before anything else.
    # (CloseWhileDraining, outside it, only adds Connection: close while draining.)
    assert [m.cls for m in app.user_middleware[1:3]] == [OverloadMiddleware, RequestIdMiddleware]
    async with app.router.lifespan_context(app):
        assert app.state.services.overload_sampler.running
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/v1/ping")).status_code == 200
            await app.state.services.health.run_all()
            checks = (await client.get("/health")).json()["checks"]
    assert checks["overload:limit"][0]["status"] == "pass"
    assert not app.state.services.overload_sampler.running


async def test_overload_enabled_false_removes_it(tmp_path: Path) -> None:
    app = create_app(load_settings(env(tmp_path, OVERLOAD_ENABLED="false")),
                     install_signal_handlers=False)
    assert OverloadMiddleware not in [m.cls for m in app.user_middleware]
    async with app.router.lifespan_context(app):
        assert not app.state.services.overload_sampler.running
        assert "overload" not in app.state.services.health.names
