"""/metrics: single process and multiprocess aggregation across real worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from fleetkit.observability import MetricsApp, prepare_multiproc_dir
from tests.support import ROOT


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


async def scrape(app: MetricsApp) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://t") as client:
        return await client.get("/metrics")


async def test_metrics_endpoint_serves_a_registry() -> None:
    registry = CollectorRegistry()
    Counter("fleetkit_demo_total", "demo", registry=registry).inc(3)
    r = await scrape(MetricsApp(registry=registry))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=")
    assert samples(r.text, "fleetkit_demo_total") == {(): 3.0}


async def test_multiprocess_metrics_aggregate_two_worker_processes(tmp_path: Path) -> None:
    mp_dir = tmp_path / "prom"
    (mp_dir).mkdir()
    (mp_dir / "counter_999999.db").write_bytes(b"left over from a previous run")
    prepare_multiproc_dir(mp_dir)
    assert list(mp_dir.iterdir()) == []
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(mp_dir)}
    procs = [subprocess.Popen([sys.executable, str(ROOT / "tests/observability/mp_worker.py"),
                               str(first), str(count)], env=env, cwd=ROOT)
             for first, count in ((0, 7), (100, 5))]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    assert len(list(mp_dir.glob("counter_*.db"))) == 2  # one file per worker process

    r = await scrape(MetricsApp(multiproc_dir=mp_dir))
    assert r.status_code == 200
    requests = samples(r.text, "fleetkit_http_requests_total")
    key = (("method", "GET"), ("route", "/items/{item_id}"), ("status", "200"))
    assert requests[key] == 12.0
    assert requests[(("method", "GET"), ("route", "<unmatched>"), ("status", "404"))] == 2.0
    assert all("/items/1" not in dict(k)["route"] or "{" in dict(k)["route"] for k in requests)
    count = samples(r.text, "fleetkit_http_request_duration_seconds_count")
    assert count[(("method", "GET"), ("route", "/items/{item_id}"))] == 12.0
