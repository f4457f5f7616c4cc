"""What a component reports to the health registry (shared by every component)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["ComponentStatus", "Status"]

Status = Literal["pass", "warn", "fail"]


@dataclass(frozen=True, slots=True)
class ComponentStatus:
    """One check result in the shape of draft-inadarei-api-health-check (health+json).

    ``warn`` means degraded but serving (a fallback is in use); ``fail`` means not serving.
    """

    status: Status
    component_type: str = "component"
    observed_value: float | int | str | None = None
    observed_unit: str | None = None
    output: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
