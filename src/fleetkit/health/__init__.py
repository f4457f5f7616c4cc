"""Health checks (registry, endpoints, probe) — see issue #8. ``ComponentStatus`` is shared."""

from __future__ import annotations

from fleetkit.health.status import ComponentStatus, Status

__all__ = ["ComponentStatus", "Status"]
