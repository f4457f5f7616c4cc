"""Generate the Grafana dashboards (JSON) from one table of panels.

    python deployment/monitoring/grafana/build_dashboards.py        # rewrites dashboards/*.json

Edit the table here, not the JSON: tests/observability/test_monitoring.py checks that the
committed JSON is this script's output and that every metric it uses exists in the code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"
DS = {"type": "prometheus", "uid": "fleetkit-prometheus"}

# (row title, [(panel title, unit, [(expr, legend)], kind)])
Panel = tuple[str, str, list[tuple[str, str]], str]
SERVICE: list[tuple[str, list[Panel]]] = [
    ("HTTP", [
        ("Requests/s by route", "reqps", [
            ('sum by (route) (rate(fleetkit_http_requests_total[$__rate_interval]))',
             "{{route}}")], "timeseries"),
        ("5xx ratio", "percentunit", [
            ('sum(rate(fleetkit_http_requests_total{status=~"5.."}[$__rate_interval]))'
             ' / sum(rate(fleetkit_http_requests_total[$__rate_interval]))', "5xx")],
         "timeseries"),
        ("Latency p50 / p95 / p99", "s", [
            (f'histogram_quantile({q}, sum by (le) (rate('
             f'fleetkit_http_request_duration_seconds_bucket[$__rate_interval])))', f"p{p}")
            for q, p in ((0.5, 50), (0.95, 95), (0.99, 99))], "timeseries"),
        ("p95 latency by route", "s", [
            ('histogram_quantile(0.95, sum by (le, route) (rate('
             'fleetkit_http_request_duration_seconds_bucket[$__rate_interval])))', "{{route}}")],
         "timeseries"),
        ("In-flight requests", "short", [
            ("sum by (instance) (fleetkit_http_requests_in_flight)", "{{instance}}")],
         "timeseries"),
    ]),
    ("Overload (admission control)", [
        ("Refused/s by class (503 shedding)", "reqps", [
            ("sum by (priority) (rate(fleetkit_overload_refused_total[$__rate_interval]))",
             "{{priority}}")], "timeseries"),
        ("Refused share of offered requests", "percentunit", [
            ("sum(rate(fleetkit_overload_refused_total[$__rate_interval])) / (sum(rate("
             "fleetkit_overload_refused_total[$__rate_interval])) + sum(rate("
             "fleetkit_http_requests_total[$__rate_interval])))", "refused")], "timeseries"),
        ("Concurrency limit and in-flight", "short", [
            ("sum by (instance) (fleetkit_overload_limit)", "limit {{instance}}"),
            ("sum by (instance) (fleetkit_overload_in_flight)", "in-flight {{instance}}"),
            ("sum by (instance) (fleetkit_overload_queued)", "queued {{instance}}")],
         "timeseries"),
        ("Queueing delay before a request runs", "s", [
            ("max by (instance) (fleetkit_overload_queue_delay_seconds)", "{{instance}}")],
         "timeseries"),
        ("Instances over target (shedding)", "short", [
            ("sum(max by (instance) (fleetkit_overload_shedding))", "shedding")], "stat"),
    ]),
    ("Health", [
        ("Ready instances", "short", [("sum(fleetkit_health_ready)", "ready")], "stat"),
        ("Check status (1 pass, 0.5 warn, 0 fail)", "short", [
            ("min by (check) (fleetkit_health_check_status)", "{{check}}")], "timeseries"),
        ("Check duration p95", "s", [
            ('histogram_quantile(0.95, sum by (le, check) (rate('
             'fleetkit_health_check_duration_seconds_bucket[$__rate_interval])))', "{{check}}")],
         "timeseries"),
        ("Failed check runs/s", "ops", [
            ('sum by (check) (rate(fleetkit_health_check_runs_total{result="fail"}'
             '[$__rate_interval]))', "{{check}}")], "timeseries"),
        ("Event loop lag", "s", [
            ("max by (instance) (fleetkit_health_event_loop_lag_seconds)", "{{instance}}")],
         "timeseries"),
        ("Stale health answers/s", "ops", [
            ("sum by (endpoint) (rate(fleetkit_health_stale_responses_total[$__rate_interval]))",
             "{{endpoint}}")], "timeseries"),
    ]),
]
COMPONENTS: list[tuple[str, list[Panel]]] = [
    ("Redis", [
        ("Redis up by role", "short", [("min by (role) (fleetkit_redis_up)", "{{role}}")],
         "timeseries"),
        ("Command latency p99 by role", "s", [
            ('histogram_quantile(0.99, sum by (le, role) (rate('
             'fleetkit_redis_command_seconds_bucket[$__rate_interval])))', "{{role}}")],
         "timeseries"),
        ("Errors/s by role and kind", "ops", [
            ("sum by (role, kind) (rate(fleetkit_redis_errors_total[$__rate_interval]))",
             "{{role}} {{kind}}")], "timeseries"),
        ("Pool connections in use", "short", [
            ("sum by (role) (fleetkit_redis_pool_in_use)", "{{role}}")], "timeseries"),
        ("Reconnects", "short", [
            ("sum by (role) (increase(fleetkit_redis_reconnects_total[$__range]))", "{{role}}")],
         "stat"),
    ]),
    ("Rate limiting", [
        ("Decisions/s by result", "ops", [
            ("sum by (result, backend) (rate(fleetkit_ratelimit_decisions_total"
             "[$__rate_interval]))", "{{result}} ({{backend}})")], "timeseries"),
        ("Backend in use (fallback when not redis)", "short", [
            ("max by (limiter, backend) (fleetkit_ratelimit_backend)",
             "{{limiter}} {{backend}}")], "timeseries"),
        ("Fallback switches", "short", [
            ("sum by (to) (increase(fleetkit_ratelimit_fallback_transitions_total[$__range]))",
             "to {{to}}")], "stat"),
        ("Live instances (heartbeat)", "short", [
            ("max by (limiter) (fleetkit_ratelimit_live_instances)", "{{limiter}}")],
         "timeseries"),
        ("Redis decision latency p99", "s", [
            ('histogram_quantile(0.99, sum by (le) (rate('
             'fleetkit_ratelimit_redis_seconds_bucket[$__rate_interval])))', "p99")],
         "timeseries"),
        ("Shadow-mode denials/s", "ops", [
            ("sum(rate(fleetkit_ratelimit_shadow_denials_total[$__rate_interval]))", "denied")],
         "timeseries"),
    ]),
    ("Circuit breakers", [
        ("State", "short", [
            ("max by (breaker, state) (fleetkit_breaker_state) == 1", "{{breaker}} {{state}}")],
         "timeseries"),
        ("Calls/s by outcome", "ops", [
            ("sum by (breaker, outcome) (rate(fleetkit_breaker_calls_total[$__rate_interval]))",
             "{{breaker}} {{outcome}}")], "timeseries"),
        ("Rejected calls/s", "ops", [
            ("sum by (breaker) (rate(fleetkit_breaker_rejected_calls_total[$__rate_interval]))",
             "{{breaker}}")], "timeseries"),
        ("Local-only (Redis fallback)", "short", [
            ("max by (breaker) (fleetkit_breaker_local_only)", "{{breaker}}")], "timeseries"),
        ("Transitions", "short", [
            ("sum by (breaker, to_state) (increase(fleetkit_breaker_transitions_total"
             "[$__range]))", "{{breaker}} -> {{to_state}}")], "stat"),
        ("Slow calls/s", "ops", [
            ("sum by (breaker) (rate(fleetkit_breaker_slow_calls_total[$__rate_interval]))",
             "{{breaker}}")], "timeseries"),
    ]),
    ("Sessions", [
        ("Operations/s", "ops", [
            ("sum by (op, outcome) (rate(fleetkit_sessions_operations_total[$__rate_interval]))",
             "{{op}} {{outcome}}")], "timeseries"),
        ("Degraded (Redis fallback)", "short", [
            ("max by (instance, store) (fleetkit_sessions_degraded)", "{{instance}} {{store}}")],
         "timeseries"),
        ("Backend errors/s", "ops", [
            ("sum by (op) (rate(fleetkit_sessions_backend_errors_total[$__rate_interval]))",
             "{{op}}")], "timeseries"),
        ("Evicted sessions", "short", [
            ("sum(increase(fleetkit_sessions_evicted_total[$__range]))", "evicted")], "stat"),
    ]),
    ("Audit", [
        ("Events logged/s", "ops", [
            ("sum(rate(fleetkit_audit_events_logged_total[$__rate_interval]))", "logged")],
         "timeseries"),
        ("Consumer lag and pending", "short", [
            ("sum(max by (shard) (fleetkit_audit_consumer_lag))", "lag"),
            ("sum(max by (shard) (fleetkit_audit_consumer_pending))", "pending")],
         "timeseries"),
        ("Disk spool", "bytes", [
            ("sum by (instance) (fleetkit_audit_spool_bytes)", "{{instance}}")], "timeseries"),
        ("Rows inserted/s", "ops", [
            ("sum(rate(fleetkit_audit_rows_inserted_total[$__rate_interval]))", "rows")],
         "timeseries"),
        ("Dead letters and sink errors", "short", [
            ("sum(increase(fleetkit_audit_dead_letters_total[$__range]))", "dead letters"),
            ("sum(increase(fleetkit_audit_sink_errors_total[$__range]))", "sink errors")],
         "stat"),
    ]),
    ("PostgreSQL", [
        ("Pool use (in use / size)", "percentunit", [
            ("sum by (pool) (fleetkit_db_pool_in_use) / sum by (pool) (fleetkit_db_pool_size)",
             "{{pool}}")], "timeseries"),
        ("Replica lag", "s", [
            ("max by (replica) (fleetkit_db_replica_lag_seconds)", "{{replica}}")],
         "timeseries"),
        ("Replicas in rotation", "short", [
            ("min by (replica) (fleetkit_db_replica_healthy)", "{{replica}}")], "timeseries"),
        ("Pool acquire timeouts/s", "ops", [
            ("sum by (pool) (rate(fleetkit_db_acquire_timeouts_total[$__rate_interval]))",
             "{{pool}}")], "timeseries"),
        ("Failovers", "short", [
            ("sum(increase(fleetkit_db_failovers_total[$__range]))", "failovers")], "stat"),
    ]),
]


def _panel(pid: int, x: int, y: int, title: str, unit: str, targets: list[tuple[str, str]],
           kind: str) -> dict[str, Any]:
    return {
        "id": pid, "type": kind, "title": title, "datasource": DS,
        "gridPos": {"h": 8, "w": 8, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}}
        if kind == "timeseries" else {"reduceOptions": {"calcs": ["lastNotNull"]}},
        "targets": [{"refId": chr(65 + i), "datasource": DS, "expr": expr,
                     "legendFormat": legend} for i, (expr, legend) in enumerate(targets)],
    }


def dashboard(uid: str, title: str, rows: list[tuple[str, list[Panel]]]) -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    pid, y = 1, 0
    for row_title, row_panels in rows:
        panels.append({"id": pid, "type": "row", "title": row_title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid, y = pid + 1, y + 1
        for i, (title, unit, targets, kind) in enumerate(row_panels):
            panels.append(_panel(pid, (i % 3) * 8, y + (i // 3) * 8, title, unit, targets, kind))
            pid += 1
        y += ((len(row_panels) + 2) // 3) * 8
    return {
        "uid": uid, "title": title, "tags": ["fleetkit"], "timezone": "utc",
        "schemaVersion": 39, "version": 1, "editable": False, "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": []}, "annotations": {"list": []},
        "panels": panels,
    }


DASHBOARDS = {
    "fleetkit-service.json": dashboard("fleetkit-service", "fleetkit — service (HTTP, health)",
                                       SERVICE),
    "fleetkit-components.json": dashboard("fleetkit-components",
                                          "fleetkit — components (Redis, limits, breakers, "
                                          "sessions, audit, PostgreSQL)", COMPONENTS),
}


def render(name: str) -> str:
    return json.dumps(DASHBOARDS[name], indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    for name in DASHBOARDS:
        (OUT / name).write_text(render(name))
        print(f"wrote {OUT / name}")
