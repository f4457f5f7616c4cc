"""``/metrics`` in the Prometheus text format, also across several worker processes.

Multiprocess mode: prometheus_client picks its value storage when it is first imported, from
the ``PROMETHEUS_MULTIPROC_DIR`` environment variable (it reads that variable itself, fleetkit
does not). So whoever starts the workers (``fleetkit serve``, the container entrypoint) must
export ``PROMETHEUS_MULTIPROC_DIR`` before the workers start, empty the directory once with
:func:`prepare_multiproc_dir`, and pass the same path (``Settings.prometheus_multiproc_dir``)
to :class:`MetricsApp`, which then aggregates every worker's files at scrape time. Custom
collectors (e.g. Redis pool usage read at scrape time) only report the scraped process in that
mode; counters, histograms and ``live*`` gauges are exact.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)

from fleetkit.errors import ASGIError, ConfigError
from fleetkit.types import Receive, Scope, Send

__all__ = ["MetricsApp", "mark_process_dead", "prepare_multiproc_dir", "render_metrics"]


def prepare_multiproc_dir(path: Path) -> None:
    """Create ``path`` and delete metric files left by a previous run (call before forking)."""
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)


def mark_process_dead(pid: int, path: Path) -> None:
    """Drop a dead worker's live gauges (call from the supervisor when a worker exits)."""
    multiprocess.mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]


def render_metrics(multiproc_dir: Path | None = None,
                   registry: CollectorRegistry | None = None) -> bytes:
    """The exposition text: every worker's files when ``multiproc_dir`` is set."""
    if multiproc_dir is not None:
        aggregated = CollectorRegistry()
        multiprocess.MultiProcessCollector(aggregated, path=str(multiproc_dir))  # type: ignore[no-untyped-call]
        return generate_latest(aggregated)
    return generate_latest(registry or REGISTRY)


class MetricsApp:
    """ASGI endpoint answering GET/HEAD with the Prometheus text format (route it at /metrics)."""

    def __init__(self, *, multiproc_dir: Path | None = None,
                 registry: CollectorRegistry | None = None) -> None:
        if multiproc_dir is not None and not os.path.isdir(multiproc_dir):
            raise ConfigError(f"prometheus multiprocess directory {multiproc_dir} does not exist")
        self.multiproc_dir = multiproc_dir
        self.registry = registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            raise ASGIError("the metrics endpoint only serves HTTP")
        method = scope.get("method", "GET")
        if method not in ("GET", "HEAD"):
            await send({"type": "http.response.start", "status": 405,
                        "headers": [(b"allow", b"GET, HEAD"), (b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        # Reading many workers' files is blocking I/O: keep it off the event loop.
        body = await asyncio.to_thread(render_metrics, self.multiproc_dir, self.registry)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", CONTENT_TYPE_LATEST.encode()),
                                (b"content-length", str(len(body)).encode()),
                                (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})


class LabelCache:
    """A metric's children by label values, resolved once.

    ``metric.labels(...)`` takes a lock and builds a key on every call, about as much as the
    rest of a hot-path update; bounded in case a label value is unexpectedly unbounded.
    """

    __slots__ = ("_children", "_max", "_metric")

    def __init__(self, metric: Any, *, max_size: int = 10_000) -> None:
        self._metric = metric
        self._max = max_size
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *labels: str) -> Any:
        child = self._children.get(labels)
        if child is None:
            if len(self._children) >= self._max:
                self._children.clear()
            child = self._children[labels] = self._metric.labels(*labels)
        return child
