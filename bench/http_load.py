"""HTTP load on one server process: bare endpoints vs the full-stack authenticated endpoint.

(Named http_load.py: a bench/http.py would shadow the standard library's ``http`` package for
every script in bench/, since running ``python bench/x.py`` puts bench/ on sys.path.)

    python bench/http_load.py [--seconds 8] [--connections 64]

Starts ``fleetkit serve`` (1 worker, uvloop + httptools) in distributed mode against the test
services (Redis 127.0.0.1:6390, PostgreSQL primary 5440 + replica 5441), registers a user, and
drives it with ``wrk`` (apt install wrk) on the other core:

* ``/health/live`` — answered from memory by the health middleware (the server's floor);
* ``/v1/ping`` — a FastAPI route through the whole middleware stack (request id, metrics,
  sessions without a token, per-IP rate limit: one Redis round trip);
* ``/v1/me`` — session lookup + per-IP and per-user rate limits + database breaker + a user
  read on the replica (read-your-writes token) + JSON response.

Target (issue #9): ``/v1/me`` keeps >= 60% of the bare ``/v1/ping`` throughput, measured in the
same run. Redis round trips per request are read from the server's own ``/metrics`` (coalesced
pipelines + single commands, per role).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import PG_PRIMARY_URL, PG_REPLICA_URL, free_port, wait_port  # noqa: E402

from bench.harness import Report  # noqa: E402

REDIS_URL = os.environ.get("FLEETKIT_BENCH_REDIS_URL", "redis://127.0.0.1:6390/6")


def _wrk(url: str, seconds: float, connections: int, token: str | None) -> dict[str, float]:
    exe = shutil.which("wrk")
    if exe is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    args = [exe, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    if token:
        args += ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)

    def pct(p: str) -> float:
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)\b", out)
        assert m, out
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
        return float(m.group(1)) * scale

    return {"rps": rps, "requests": total, "non_2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": sum(int(x) for x in errors.groups()) if errors else 0,
            "p50_ms": pct("50"), "p99_ms": pct("99")}


def _server_commands() -> int:
    """Scripts the Redis server has run so far (EVALSHA + EVAL calls, all clients): each is one
    atomic operation (session get, rate-limit decision...); the commands inside scripts are
    not counted."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        stats = client.info("commandstats")
        return sum(int(stats.get(name, {}).get("calls", 0))
                   for name in ("cmdstat_evalsha", "cmdstat_eval"))
    finally:
        client.close()


def _redis_counts(metrics: str) -> dict[str, dict[str, float]]:
    """Per role so far: round trips (pipelines + single commands) and operations (commands sent,
    a coalesced pipeline of N counts N) from the server's own /metrics."""
    counts: dict[str, dict[str, float]] = {}
    for line in metrics.splitlines():
        m = re.match(r'(fleetkit_redis_command_seconds_count|fleetkit_redis_pipeline_commands_sum)'
                     r'\{(.*)\} ([\d.e+]+)$', line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        role = counts.setdefault(labels.get("role", "?"), {"trips": 0.0, "ops": 0.0})
        value = float(m.group(3))
        if m.group(1).endswith("_sum"):
            role["ops"] += value  # commands carried by pipelines
        else:
            role["trips"] += value  # every round trip, pipelines included
            if labels.get("command") != "PIPELINE":
                role["ops"] += value  # a single command is one operation
    return counts


async def _setup(base: str) -> str:
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        email = f"bench-{os.getpid()}-{time.time_ns()}@example.com"
        creds = {"email": email, "password": "benchmark-pw"}
        r = await client.post("/v1/auth/register", json=creds)
        r.raise_for_status()
        r = await client.post("/v1/auth/login", json=creds)
        r.raise_for_status()
        token: str = r.json()["token"]
        assert (await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
                ).status_code == 200
        return token


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=64)
    ns = parser.parse_args()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # Three role URLs (three databases of one server): each role gets its own client, so the
    # per-role round trips and operations below are attributed as in a 3-Redis deployment.
    role_base = REDIS_URL.rsplit("/", 1)[0]
    env = {**os.environ, "REDIS_URL": REDIS_URL, "REDIS_RATE_LIMIT_URL": f"{role_base}/7",
           "REDIS_SESSION_URL": f"{role_base}/8", "DATABASE_URL": PG_PRIMARY_URL,
           "DATABASE_READ_URLS": PG_REPLICA_URL, "RATE_LIMIT_IP": "1000000/second",
           "RATE_LIMIT_USER": "1000000/second", "LOG_LEVEL": "warning",
           "SESSION_COOKIE_SECURE": "false", "WEB_CONCURRENCY": "1",
           "AUDIT_SPOOL_DIR": "/tmp/fleetkit-bench-spool",
           # What a request costs at saturation, as bench/overload.py measures capacity C: with
           # admission control on (as shipped; bench/overload.py measures it) wrk's 64
           # back-to-back connections at saturation get part 503s (6,819 of 11,072 measured on
           # 2026-12-02), and refusals, which touch no Redis, would dilute the per-request
           # costs and round trips reported here.
           "OVERLOAD_ENABLED": os.environ.get("OVERLOAD_ENABLED", "false")}
    fleetkit = str(ROOT / ".venv" / "bin" / "fleetkit")
    subprocess.run([fleetkit, "migrate"], env=env, check=True, capture_output=True)
    server = subprocess.Popen([fleetkit, "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    report = Report("http", "HTTP requests/s on one server process (uvicorn, 1 worker)")
    try:
        wait_port(port, timeout=30)
        token = asyncio.run(_setup(base))
        cases = [("bare /v1/ping", "/v1/ping", None),
                 ("bare /health/live", "/health/live", None),
                 ("full-stack /v1/me", "/v1/me", token)]
        results: dict[str, list[dict[str, float]]] = {label: [] for label, _, _ in cases}
        trips: dict[str, dict[str, float]] = {}
        # Two interleaved rounds: the machine is shared, so each label sees the same noise.
        for _ in range(2):
            for label, path, auth in cases:
                before = _redis_counts(httpx.get(base + "/metrics").text)
                cmds_before = _server_commands()
                r = _wrk(base + path, ns.seconds / 2, ns.connections, auth)
                r["redis_commands"] = _server_commands() - cmds_before
                after = _redis_counts(httpx.get(base + "/metrics").text)
                results[label].append(r)
                per = trips.setdefault(label, {})
                for role, now in after.items():
                    was = before.get(role, {"trips": 0.0, "ops": 0.0})
                    for kind in ("trips", "ops"):
                        per[f"{kind}:{role}"] = (per.get(f"{kind}:{role}", 0.0)
                                                 + now[kind] - was[kind])
        for label, _, _ in cases:
            rounds = results[label]
            requests = sum(r["requests"] for r in rounds)
            rps = sum(r["rps"] for r in rounds) / len(rounds)
            per_request = {key.split(":", 1)[1]: round(n / requests, 3)
                           for key, n in trips[label].items() if key.startswith("trips:")}
            ops_per_request = {key.split(":", 1)[1]: round(n / requests, 3)
                               for key, n in trips[label].items() if key.startswith("ops:")}
            commands = round(sum(r["redis_commands"] for r in rounds) / requests, 2)
            report.add(label, rps, "requests/s",
                       baseline=None if label == "bare /v1/ping" else "bare /v1/ping",
                       p50_ms=max(r["p50_ms"] for r in rounds),
                       p99_ms=max(r["p99_ms"] for r in rounds),
                       non_2xx=sum(r["non_2xx"] for r in rounds),
                       socket_errors=sum(r["socket_errors"] for r in rounds),
                       redis_round_trips_per_request=per_request,
                       redis_operations_per_request=ops_per_request,
                       redis_scripts_per_request=commands)
            print(f"{label:22s} {rps:9,.0f} req/s  p50 {rounds[-1]['p50_ms']:.2f} ms  "
                  f"p99 {rounds[-1]['p99_ms']:.2f} ms  redis round trips/request {per_request}  "
                  f"operations/request {ops_per_request}  "
                  f"redis scripts/request {commands}")
        full = report.get("full-stack /v1/me")
        ratio = full.ratio or 0.0
        report.check("full stack >= 60% of bare /v1/ping", ratio >= 0.6, f"{ratio:.2f}x")
        bad = sum(m.extra["non_2xx"] + m.extra["socket_errors"] for m in report.measurements)
        report.check("no failed requests", bad == 0, f"{bad} non-2xx or socket errors")
        report.info["connections"] = ns.connections
        report.info["redis_round_trips_per_request"] = full.extra["redis_round_trips_per_request"]
        report.info["redis_scripts_per_request"] = full.extra["redis_scripts_per_request"]
        report.info["redis_operations_per_request"] = full.extra["redis_operations_per_request"]
        report.info["db_reads_per_request"] = 1
        report.save(chart_unit="requests/s")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
    return report.exit_code()


if __name__ == "__main__":
    sys.exit(main())
