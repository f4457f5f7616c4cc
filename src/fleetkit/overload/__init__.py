"""Adaptive admission control: refuse the excess early, cheaply and by priority.

    from fleetkit.overload import AdmissionController, OverloadMiddleware
    app.add_middleware(OverloadMiddleware, controller=AdmissionController())  # add it last

See docs/overload.md for how it decides and what operators see.
"""

from __future__ import annotations

from fleetkit.overload.admission import (
    ADMITTED,
    QUEUE,
    REFUSED,
    AdmissionController,
    Priority,
    Waiter,
)
from fleetkit.overload.asgi import PROBLEM_TYPE, OverloadMiddleware, refusal_body
from fleetkit.overload.classify import (
    DEFAULT_ROUTE_CLASSES,
    RouteClassifier,
    parse_priority,
    parse_route_classes,
)
from fleetkit.overload.sampler import LoopLagSampler

__all__ = [
    "ADMITTED",
    "DEFAULT_ROUTE_CLASSES",
    "PROBLEM_TYPE",
    "QUEUE",
    "REFUSED",
    "AdmissionController",
    "LoopLagSampler",
    "OverloadMiddleware",
    "Priority",
    "RouteClassifier",
    "Waiter",
    "parse_priority",
    "parse_route_classes",
    "refusal_body",
]
