"""Application factory of the reference service."""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from fleetkit.config import Settings, load_settings

__all__ = ["app_from_env", "create_app"]

log = logging.getLogger("fleetkit.app")


async def live(request: Request) -> JSONResponse:
    return JSONResponse({"status": "pass"}, media_type="application/health+json")


def create_app(settings: Settings) -> Starlette:
    """Build the ASGI app for ``settings`` (no environment reads here)."""
    mode = "embedded" if settings.embedded else "distributed"
    log.info("fleetkit starting in %s mode", mode)
    return Starlette(routes=[Route("/health/live", live)])


def app_from_env() -> Starlette:
    """Uvicorn factory: settings from the environment (used by ``fleetkit serve`` workers)."""
    return create_app(load_settings())
