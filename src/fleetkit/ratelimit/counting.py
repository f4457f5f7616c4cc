"""Decision counts handed to Prometheus in batches.

``Counter.inc()`` takes a lock and costs about as much as the rest of a decision, so counts
are accumulated per (policy, outcome, backend) and added in steps of 64, and by
:meth:`DecisionCounts.flush` (the limiter's ``health()`` and ``aclose()`` call it).
"""

from __future__ import annotations

from typing import Any

from fleetkit.ratelimit import metrics
from fleetkit.ratelimit.decision import Decision

__all__ = ["DecisionCounts"]

_STEP = 64


class DecisionCounts:
    def __init__(self) -> None:
        # Metric children resolved once (labels() is too slow for the hot path).
        self._counted: dict[tuple[str, bool, str], list[Any]] = {}

    def count(self, policy: str, decision: Decision) -> None:
        label = (policy, decision.allowed, decision.backend)
        entry = self._counted.get(label)
        if entry is None:
            entry = self._counted[label] = [metrics.DECISIONS.labels(
                policy, "allowed" if decision.allowed else "denied", decision.backend), 0]
        entry[1] += 1
        if entry[1] >= _STEP:
            entry[0].inc(entry[1])
            entry[1] = 0

    def flush(self) -> None:
        for entry in self._counted.values():
            if entry[1]:
                entry[0].inc(entry[1])
                entry[1] = 0
