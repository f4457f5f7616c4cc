"""The reference service: ``create_app(settings)`` wires every component into one ASGI app."""

from __future__ import annotations

from fleetkit.app.main import app_from_env, create_app

__all__ = ["app_from_env", "create_app"]
