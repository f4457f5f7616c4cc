"""Health of a :class:`~fleetkit.db.Database` from its nodes' cached state (no I/O but one
monitor round when the last is stale)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fleetkit.db.engines import PoolStats, pool_stats
from fleetkit.db.replicas import Node
from fleetkit.health import ComponentStatus

__all__ = ["health_checks", "overall_health", "pools"]


def pools(primary: Node, replicas: Sequence[Node]) -> list[PoolStats]:
    return [pool_stats("write", primary.engine),
            *(pool_stats(f"read:{r.name}", r.engine) for r in replicas)]


def health_checks(primary: Node, replicas: Sequence[Node]) -> dict[str, ComponentStatus]:
    """One status per pool: ``write`` and ``read:<host:port>`` (cached state, no I/O)."""
    out: dict[str, ComponentStatus] = {}
    for node, stats in zip((primary, *replicas), pools(primary, replicas), strict=True):
        ok = node.healthy
        if node.role == "primary" and not ok and node.checked_at is None:
            ok = True  # never checked: no evidence against it
        out[stats.name] = ComponentStatus(
            "pass" if ok else ("fail" if node.role == "primary" else "warn"),
            component_type="datastore", observed_value=stats.in_use,
            observed_unit="connections in use", output=None if ok else node.reason,
            details={"server": node.name, "pool_size": stats.size,
                     "outstanding": node.outstanding, "lag_seconds": node.lag_seconds,
                     "failovers": node.failovers},
        )
    return out


async def overall_health(primary: Node, replicas: Sequence[Node], *, interval: float,
                         timeout: float, check: Callable[[], Awaitable[None]]) -> ComponentStatus:
    """Overall status from the monitor's last check (``check()`` once if none is recent)."""
    checked = primary.checked_at
    if checked is None or time.monotonic() - checked > 2 * interval:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(timeout):
                await check()
    checks = health_checks(primary, replicas)
    write = checks["write"]
    healthy = sum(1 for r in replicas if r.healthy)
    if write.status == "fail":
        status: Any = "fail"
        output = write.output
    elif healthy < len(replicas):
        status = "warn"
        output = (f"{len(replicas) - healthy} of {len(replicas)} replicas out of "
                  "rotation" + ("; reads on the primary" if not healthy else ""))
    else:
        status, output = "pass", None
    return ComponentStatus(
        status, component_type="datastore", observed_value=healthy,
        observed_unit="healthy replicas", output=output,
        details={name: {"status": c.status, "output": c.output, **c.details}
                 for name, c in checks.items()},
    )
