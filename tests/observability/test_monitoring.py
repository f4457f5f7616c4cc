"""deployment/monitoring: promtool validates config and rules, alerts fire in rule unit tests,
dashboards are the generator's output and every metric they use exists in the code."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess

import pytest

from tests.support import ROOT

MONITORING = ROOT / "deployment" / "monitoring"
DASHBOARDS = MONITORING / "grafana" / "dashboards"
_METRIC = re.compile(r"\bfleetkit_[a-z0-9_]+")
_SUFFIXES = ("_bucket", "_count", "_sum")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool is not installed: apt-get install prometheus (scripts/test.sh "
                    "does this when it is missing)")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=60,
                          cwd=MONITORING)


def test_promtool_check_config() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"SUCCESS: \d+ rules found", result.stdout)


def test_promtool_rule_unit_tests() -> None:
    result = promtool("test", "rules", "alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_cover_every_required_signal() -> None:
    text = (MONITORING / "alerts.yml").read_text()
    for needed in ("fleetkit_http_requests_total{status=~\"5..\"}",  # error rate
                   "fleetkit_http_request_duration_seconds_bucket",   # p95 latency
                   "fleetkit_ratelimit_backend", "fleetkit_sessions_degraded",  # Redis fallback
                   "fleetkit_breaker_local_only", "fleetkit_breaker_state",     # breaker open
                   "fleetkit_audit_consumer_lag", "fleetkit_db_replica_lag_seconds",
                   "fleetkit_db_pool_in_use"):                                   # pool saturation
        assert needed in text, needed


def _defined_metrics() -> set[str]:
    names = set()
    for path in (ROOT / "src" / "fleetkit").rglob("*.py"):
        names.update(re.findall(r"[\"'](fleetkit_[a-z0-9_]+)[\"']", path.read_text()))
    return names


def _base(name: str) -> str:
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def test_every_metric_used_by_alerts_and_dashboards_exists() -> None:
    defined = _defined_metrics()
    used = set(_METRIC.findall((MONITORING / "alerts.yml").read_text()))
    for path in DASHBOARDS.glob("*.json"):
        used.update(_METRIC.findall(path.read_text()))
    # prometheus_client adds "_total" to counters declared without it.
    missing = sorted(name for name in used if _base(name) not in defined
                     and name.removesuffix("_total") not in defined)
    assert not missing, f"metrics not defined anywhere in src/fleetkit: {missing}"
    assert len(used) > 40


def test_dashboards_are_generated_and_well_formed() -> None:
    spec = importlib.util.spec_from_file_location(
        "build_dashboards", MONITORING / "grafana" / "build_dashboards.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    files = sorted(p.name for p in DASHBOARDS.glob("*.json"))
    assert files == sorted(module.DASHBOARDS)
    for name in files:
        text = (DASHBOARDS / name).read_text()
        assert text == module.render(name), f"{name} is stale: run build_dashboards.py"
        board = json.loads(text)
        panels = [p for p in board["panels"] if p["type"] != "row"]
        assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
        for panel in panels:
            assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
            assert panel["datasource"]["uid"] == "fleetkit-prometheus"
    provisioning = (MONITORING / "grafana/provisioning/dashboards/fleetkit.yml").read_text()
    assert "/etc/fleetkit/monitoring/grafana/dashboards" in provisioning
    datasource = (MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text()
    assert "uid: fleetkit-prometheus" in datasource
