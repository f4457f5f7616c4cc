"""Capacity model: what the seed's targets take, computed from our own benchmark results.

    python bench/capacity.py [--users 1000000] [--requests-per-user-per-minute 6]
                             [--write-share 0.1] [--session-lifetime 1800]
                             [--web-concurrency 4] [--headroom 0.7] [--results bench/results]

Every measured input is READ from the JSON files the benchmarks write in ``bench/results/``
(nothing is typed in here); a missing file or measurement stops the model with a message that
names it. The workload and the deployment envelope are parameters. Output: a table on stdout,
``capacity.json`` and ``capacity.png`` next to the inputs.

The model (all rates per second; ``headroom`` = the share of a measured capacity we plan to use):

* requests = users x requests per user per minute / 60; logins = users / session lifetime.
* processes = requests / (full-stack requests/s per process x headroom); pods = processes /
  WEB_CONCURRENCY.
* Redis, per role: operations = requests x commands per request (http.json) + login work;
  shards = max(3, ops / (measured ops/s of one Redis x headroom), memory / shard budget).
  Memory: rate-limit keys (users x limits x bytes per key), sessions (stored sessions x bytes
  per session), audit backlog (events/s x backlog seconds x bytes per event).
* PostgreSQL: replicas = reads / (measured reads/s of one replica x headroom); server pool per
  replica by Little's law (reads/s x measured latency); client connections from the pool
  settings (PgBouncer ``max_client_conn``).
* Audit consumers = events / (measured events/s per consumer x headroom).
* Ceilings: the requests/s each component sustains inside the deployment envelope (max pods,
  shards per role, replicas, consumers); the lowest ceiling is the component that saturates
  first.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fleetkit.config import load_settings, parse_policy_list

RESULTS = Path(__file__).resolve().parent / "results"
ROLES = ("main", "ratelimit", "sessions")
_BENCH_OF = {"http": "bench/http_load.py", "ratelimit": "bench/ratelimit.py",
             "sessions": "bench/sessions.py", "audit": "bench/audit.py", "db": "bench/db.py",
             "breaker": "bench/breaker.py", "health": "bench/health.py"}


class MissingInput(Exception):
    """A results file or a measurement the model needs is not there."""


# --- inputs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """Where one input came from (shown in the output so every number can be traced)."""

    file: str
    label: str
    unit: str
    value: float


class Results:
    """The benchmark results files of one directory, with strict look-ups."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self._cache: dict[str, dict[str, Any]] = {}
        self.used: dict[str, Source] = {}
        self.missing: dict[str, str] = {}

    def data(self, name: str) -> dict[str, Any]:
        if name not in self._cache:
            path = self.dir / f"{name}.json"
            if not path.exists():
                raise MissingInput(f"{path} is missing: run `python {_BENCH_OF.get(name, name)}` "
                                   "first (the capacity model reads its results)")
            try:
                self._cache[name] = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise MissingInput(f"{path} is not valid JSON: {exc}") from exc
        return self._cache[name]

    def value(self, key: str, name: str, *, unit: str, label: str, pick: str = "max") -> float:
        """The measurement of ``name``.json whose unit matches ``unit`` and label ``label``
        (regular expressions); ``pick`` chooses among several (max, min)."""
        data = self.data(name)
        found = [m for m in data.get("measurements", [])
                 if re.search(unit, str(m.get("unit", ""))) and re.search(label, str(m["label"]))]
        if not found:
            present = "; ".join(f"{m['label']!r} [{m.get('unit')}]"
                                for m in data.get("measurements", []))
            raise MissingInput(
                f"{self.dir / (name + '.json')} has no measurement with unit ~ /{unit}/ and label "
                f"~ /{label}/ (needed for {key}); present: {present or 'none'}")
        chosen = (max if pick == "max" else min)(found, key=lambda m: float(m["value"]))
        self.used[key] = Source(f"{name}.json", chosen["label"], chosen["unit"],
                                float(chosen["value"]))
        return float(chosen["value"])

    def optional(self, key: str, name: str, *, unit: str, label: str) -> float | None:
        """Like :meth:`value`, but ``None`` (reported as unmeasured) when absent."""
        try:
            return self.value(key, name, unit=unit, label=label)
        except MissingInput as exc:
            self.missing[key] = str(exc)
            return None

    def info_keys(self, name: str) -> set[str]:
        """Top-level ``info`` fields of ``name``.json."""
        return set(self.data(name).get("info", {}))

    def info(self, key: str, name: str, path: str) -> Any:
        """``info[path]`` of ``name``.json (dotted path), required."""
        node: Any = self.data(name).get("info", {})
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                raise MissingInput(f"{self.dir / (name + '.json')} has no info field "
                                   f"{path!r} (needed for {key})")
            node = node[part]
        return node


@dataclass
class Inputs:
    """Every measured number the model uses (per process / per server, this machine)."""

    rps_per_process: float
    redis_ops_per_request: dict[str, float]
    ratelimit_ops_per_redis: float
    ratelimit_bytes_per_key: float
    redis_ops_per_redis: float
    session_bytes: float
    session_ops_per_redis: float
    audit_events_per_consumer: float
    audit_events_per_producer: float
    audit_bytes_per_event: float | None
    db_reads_per_request: float
    db_reads_per_replica: float
    db_read_latency: float
    breaker_overhead_us: float
    health_rps: float
    sources: dict[str, Source] = field(default_factory=dict)
    unmeasured: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: Path, *, algorithm: str) -> Inputs:
        r = Results(directory)
        # Operations (scripts/commands executed, a coalesced pipeline of N counts N) load a
        # shard; round trips (older results files) undercount them, so they are the fallback.
        key = ("redis_operations_per_request"
               if "redis_operations_per_request" in r.info_keys("http")
               else "redis_round_trips_per_request")
        trips = r.info("Redis operations per request", "http", key)
        if not isinstance(trips, dict) or not trips:
            raise MissingInput(f"{directory / 'http.json'}: info.{key} "
                               "must map role -> operations per request")
        per_role = {role: float(trips.get(role, 0.0)) for role in ROLES}
        # The app's reads run on the driver (db.fetch_all); older results only have db.read().
        db_rate = r.value("PostgreSQL reads/s per replica", "db", unit=r"^reads/s$",
                          label=r"^db\.(read|fetch_all)\(\) x\d+$")
        db_label = r.used["PostgreSQL reads/s per replica"].label
        concurrency = int(re.search(r"x(\d+)$", db_label).group(1))  # type: ignore[union-attr]
        # One EVALSHA per decision, as on a Redis Cluster (where shards live), at the best
        # concurrency; older results only have the merged standalone rate.
        key = "rate-limit decisions/s per Redis"
        ratelimit_rate = r.optional(key, "ratelimit", unit=r"^decisions/s$",
                                    label=rf"^{algorithm} unmerged x\d+$")
        if ratelimit_rate is None:
            r.missing.pop(key, None)
            ratelimit_rate = r.value(key, "ratelimit", unit=r"^decisions/s$",
                                     label=rf"^{algorithm} x\d+$")
        inputs = cls(
            rps_per_process=r.value("full-stack requests/s per process", "http",
                                    unit=r"^requests/s$", label=r"(?i)full.?stack"),
            redis_ops_per_request=per_role,
            ratelimit_ops_per_redis=ratelimit_rate,
            ratelimit_bytes_per_key=r.value("bytes per rate-limit key", "ratelimit",
                                            unit=r"^bytes", label=rf"^{algorithm} key"),
            redis_ops_per_redis=r.value("Redis commands/s (coalesced EVALSHA ceiling)",
                                        "ratelimit", unit=r"^decisions/s$",
                                        label=r"^EVALSHA ceiling"),
            session_bytes=r.value("bytes per session", "sessions", unit=r"^bytes",
                                  label=r"(?i)session", pick="max"),
            session_ops_per_redis=r.value("session get/s per Redis", "sessions",
                                          unit=r"^ops/s$", label=r"(?i)\bget\b"),
            audit_events_per_consumer=r.value("audit events/s per consumer", "audit",
                                              unit=r"^events/s$",
                                              label=r"(?i)consumer|worker drain"),
            audit_events_per_producer=r.value("audit events/s per producer process", "audit",
                                              unit=r"^events/s$", label=r"(?i)^producer"),
            audit_bytes_per_event=r.optional("stream bytes per audit event", "audit",
                                             unit=r"^bytes", label=r"(?i)event"),
            db_reads_per_request=float(r.info("PostgreSQL reads per request", "http",
                                              "db_reads_per_request")),
            db_reads_per_replica=db_rate,
            db_read_latency=concurrency / db_rate,  # Little's law: in flight / throughput
            breaker_overhead_us=r.value("breaker overhead per call", "breaker",
                                        unit=r"^us overhead/call$",
                                        label=r"^overhead: async with breaker$"),
            health_rps=r.value("/health/ready requests/s per process", "health",
                               unit=r"^req(uests)?/s$", label=r"^ready, healthy deps"),
        )
        inputs.sources = dict(r.used)
        inputs.unmeasured = dict(r.missing)
        inputs.sources["PostgreSQL reads per request"] = Source(
            "http.json", "info.db_reads_per_request", "reads/request", inputs.db_reads_per_request)
        inputs.sources["Redis operations per request"] = Source(
            "http.json", "info.redis_round_trips_per_request", "ops/request",
            sum(per_role.values()))
        return inputs


# --- workload and deployment -----------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    users: int = 1_000_000
    requests_per_user_per_minute: float = 6.0  # 1M users -> the seed's 100K requests/s
    write_share: float = 0.10
    session_lifetime: float = 1800.0  # seconds a user stays logged in (one login per lifetime)
    audit_events_per_write: float = 1.0
    audit_events_per_login: float = 1.0

    @property
    def rps(self) -> float:
        return self.users * self.requests_per_user_per_minute / 60.0

    @property
    def logins(self) -> float:
        return self.users / self.session_lifetime


@dataclass(frozen=True)
class Deployment:
    web_concurrency: int = 4  # the seed's pods have up to 4 cores: one process per core
    headroom: float = 0.7  # plan for 70% of measured capacity (the seed's HPA CPU target)
    shard_memory_gb: float = 8.0  # maxmemory budget of one Redis master
    memory_overhead: float = 1.5  # fragmentation, replication and AOF-rewrite buffers
    audit_backlog_seconds: float = 60.0  # stream kept while consumers catch up
    probe_period: float = 10.0  # Kubernetes readiness + liveness period
    # The envelope the "saturates first" ranking uses (the seed's ceilings).
    max_pods: int = 200
    max_shards_per_role: int = 3  # seed: "Redis Cluster: 3-6 nodes" = 3 masters + 3 replicas
    max_replicas: int = 5
    max_consumers: int = 16


# --- the model ------------------------------------------------------------------------------


def _ceil(x: float) -> int:
    return max(1, math.ceil(x - 1e-9))


def compute(inputs: Inputs, work: Workload, dep: Deployment, settings: Any) -> dict[str, Any]:
    rps, logins = work.rps, work.logins
    h = dep.headroom
    writes = rps * work.write_share
    reads = rps * (1 - work.write_share) * inputs.db_reads_per_request
    audit_events = writes * work.audit_events_per_write + logins * work.audit_events_per_login

    processes = _ceil(rps / (inputs.rps_per_process * h))
    pods = _ceil(processes / dep.web_concurrency)

    # Redis load per role: the per-request operations measured end to end, plus a session
    # create and a login-policy decision per login, plus one XADD per audit event on main
    # (at a few events/s per process the producer rarely packs more than one per entry).
    ops = {role: rps * inputs.redis_ops_per_request[role] for role in ROLES}
    # A Redis shard executes each script: an authenticated request runs one script per
    # configured policy (ip, user), whatever older results files (round trips) say.
    policies = sum(1 for p in (settings.rate_limit_ip, settings.rate_limit_user)
                   if parse_policy_list(p))
    ops["ratelimit"] = rps * max(inputs.redis_ops_per_request["ratelimit"], policies)
    ops["sessions"] += logins
    ops["ratelimit"] += logins
    ops["main"] += audit_events
    capacity = {"main": inputs.redis_ops_per_redis, "ratelimit": inputs.ratelimit_ops_per_redis,
                "sessions": inputs.session_ops_per_redis}

    limits_per_user = (len(parse_policy_list(settings.rate_limit_ip))
                       + len(parse_policy_list(settings.rate_limit_user)))
    stored_sessions = work.users * (1 + settings.session_idle_ttl / work.session_lifetime)
    memory = {
        "ratelimit": work.users * limits_per_user * inputs.ratelimit_bytes_per_key,
        "sessions": stored_sessions * inputs.session_bytes,
        # Unmeasured (audit.json has no bytes per event): counted as 0 and flagged.
        "main": audit_events * dep.audit_backlog_seconds * (inputs.audit_bytes_per_event or 0),
    }
    budget = dep.shard_memory_gb * 1024**3
    redis: dict[str, Any] = {}
    for role in ROLES:
        need_ops = _ceil(ops[role] / (capacity[role] * h))
        need_mem = _ceil(memory[role] * dep.memory_overhead / budget)
        shards = max(3, need_ops, need_mem)
        sized_by = ("operations/s" if need_ops == shards and need_ops > 3 else
                    "memory" if need_mem == shards and need_mem > 3 else
                    "the Cluster minimum (3 masters)")
        redis[role] = {
            "ops_per_s": ops[role], "ops_per_shard_capacity": capacity[role],
            "memory_bytes": memory[role],
            "memory_per_shard_bytes": memory[role] * dep.memory_overhead / shards,
            "shards": shards, "nodes_with_replicas": 2 * shards, "sized_by": sized_by,
            "utilisation": ops[role] / (shards * capacity[role]),
        }

    replicas = _ceil(reads / (inputs.db_reads_per_replica * h))
    per_replica = reads / replicas
    # Per-process pools by Little's law too: a process's reads/s x latency are in flight.
    per_process_reads = reads / processes
    read_pool = _ceil(per_process_reads * inputs.db_read_latency / h / replicas)
    write_pool = _ceil(writes / processes * inputs.db_read_latency / h)
    limit = write_pool + read_pool * replicas
    postgres = {
        "reads_per_s": reads, "writes_per_s": writes, "replicas": replicas,
        "reads_per_replica": per_replica,
        "read_latency_ms": inputs.db_read_latency * 1000,
        # Little's law on measured numbers: server connections busy at the planned load.
        "pgbouncer_pool_per_replica": _ceil(per_replica * inputs.db_read_latency / h),
        "pgbouncer_pool_primary": _ceil(writes * inputs.db_read_latency / h),
        "client_connections": processes * limit,
        "per_process_pools": {"write": write_pool, "read_per_replica": read_pool,
                              "connection_limit": limit},
    }
    consumers = _ceil(audit_events / (inputs.audit_events_per_consumer * h))
    audit = {
        "events_per_s": audit_events, "consumers": consumers,
        "stream_shards": max(settings.audit_stream_shards, consumers),
        "producer_utilisation": audit_events / processes / inputs.audit_events_per_producer,
    }
    breaker_share = inputs.breaker_overhead_us * 1e-6 * inputs.rps_per_process
    probes = pods * dep.web_concurrency * 2 / dep.probe_period
    app = {"requests_per_s": rps, "logins_per_s": logins, "processes": processes, "pods": pods,
           "requests_per_pod": rps / pods,
           "breaker_cpu_share": breaker_share,
           "health_probe_cpu_share": probes / processes / inputs.health_rps}

    ceilings = _ceilings(inputs, work, dep, ops, capacity)
    first = min(ceilings, key=lambda c: c["max_requests_per_s"])
    return {"workload": asdict(work), "deployment": asdict(dep), "app": app, "redis": redis,
            "postgres": postgres, "audit": audit, "ceilings": ceilings,
            "saturates_first": {**first, "why": _why(first, inputs, work, dep, ops, capacity)}}


def _ceilings(inputs: Inputs, work: Workload, dep: Deployment, ops: dict[str, float],
              capacity: dict[str, float]) -> list[dict[str, Any]]:
    h, rps = dep.headroom, work.rps
    out = [{"component": "app pods", "limit": f"{dep.max_pods} pods x {dep.web_concurrency} "
            "processes", "max_requests_per_s": dep.max_pods * dep.web_concurrency
            * inputs.rps_per_process * h}]
    for role in ROLES:
        per_request = ops[role] / rps  # includes the login and audit work, per request
        if per_request > 0:
            out.append({"component": f"redis {role}",
                        "limit": f"{dep.max_shards_per_role} shards",
                        "max_requests_per_s": dep.max_shards_per_role * capacity[role] * h
                        / per_request})
    read_per_request = (1 - work.write_share) * inputs.db_reads_per_request
    if read_per_request > 0:
        out.append({"component": "postgres replicas", "limit": f"{dep.max_replicas} replicas",
                    "max_requests_per_s": dep.max_replicas * inputs.db_reads_per_replica * h
                    / read_per_request})
    events_per_request = (rps * work.write_share * work.audit_events_per_write
                          + work.logins * work.audit_events_per_login) / rps
    if events_per_request > 0:
        out.append({"component": "audit consumers", "limit": f"{dep.max_consumers} consumers",
                    "max_requests_per_s": dep.max_consumers * inputs.audit_events_per_consumer
                    * h / events_per_request})
    return sorted(out, key=lambda c: c["max_requests_per_s"])


def _why(first: dict[str, Any], inputs: Inputs, work: Workload, dep: Deployment,
         ops: dict[str, float], capacity: dict[str, float]) -> str:
    name = first["component"]
    if name == "app pods":
        return (f"each process serves {inputs.rps_per_process:,.0f} full-stack requests/s "
                f"(measured), so {dep.max_pods} pods x {dep.web_concurrency} processes at "
                f"{dep.headroom:.0%} carry {first['max_requests_per_s']:,.0f} requests/s; the "
                "request path (HTTP parsing, session, rate limit, breaker, DB read) is Python CPU "
                "work, while every datastore behind it scales out by adding shards/replicas")
    if name.startswith("redis"):
        role = name.split()[1]
        return (f"every request costs {ops[role] / work.rps:.2f} operations on the {role} role "
                f"and one Redis process did {capacity[role]:,.0f} ops/s here; "
                f"{dep.max_shards_per_role} shards are the envelope: add shards")
    if name == "postgres replicas":
        return (f"one replica served {inputs.db_reads_per_replica:,.0f} reads/s here; "
                f"{dep.max_replicas} replicas are the envelope (cache reads or add replicas)")
    return (f"one consumer stored {inputs.audit_events_per_consumer:,.0f} events/s here; "
            f"{dep.max_consumers} consumers are the envelope")


# --- output ---------------------------------------------------------------------------------


def _gib(n: float) -> str:
    return f"{n / 1024**3:,.2f} GiB" if n >= 1024**3 / 10 else f"{n / 1024**2:,.1f} MiB"


def table(result: dict[str, Any], inputs: Inputs) -> str:
    w, app, pg, audit = result["workload"], result["app"], result["postgres"], result["audit"]
    rows: list[tuple[str, str, str]] = [
        ("workload", f"{w['users']:,} users x {w['requests_per_user_per_minute']:g} req/min",
         f"{app['requests_per_s']:,.0f} requests/s, {app['logins_per_s']:,.0f} logins/s, "
         f"{w['write_share']:.0%} writes"),
        ("app", f"{app['pods']} pods x {result['deployment']['web_concurrency']} processes",
         f"{app['processes']} processes at {inputs.rps_per_process:,.0f} req/s each x "
         f"{result['deployment']['headroom']:.0%}"),
    ]
    for role, r in result["redis"].items():
        rows.append((f"redis {role}", f"{r['shards']} shards (+{r['shards']} replicas)",
                     f"{r['ops_per_s']:,.0f} ops/s, {_gib(r['memory_bytes'])} data, "
                     f"{_gib(r['memory_per_shard_bytes'])}/shard; sized by {r['sized_by']}"))
    rows += [
        ("postgres", f"1 primary + {pg['replicas']} replicas",
         f"{pg['reads_per_s']:,.0f} reads/s, {pg['writes_per_s']:,.0f} writes/s"),
        ("pgbouncer", f"pool {pg['pgbouncer_pool_per_replica']}/replica, "
         f"{pg['pgbouncer_pool_primary']} primary",
         f"max_client_conn >= {pg['client_connections']:,}; per process "
         f"DATABASE_WRITE_POOL_SIZE={pg['per_process_pools']['write']}, "
         f"DATABASE_READ_POOL_SIZE={pg['per_process_pools']['read_per_replica']}, "
         f"DATABASE_CONNECTION_LIMIT={pg['per_process_pools']['connection_limit']}"),
        ("audit", f"{audit['consumers']} consumers, {audit['stream_shards']} stream shards",
         f"{audit['events_per_s']:,.0f} events/s; producer at "
         f"{audit['producer_utilisation']:.2%} of one process' capacity"),
        ("breaker + probes", f"{app['breaker_cpu_share']:.2%} + "
         f"{app['health_probe_cpu_share']:.4%} of CPU", "breaker overhead per request; probes"),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    lines = [f"{a.ljust(widths[0])}  {b.ljust(widths[1])}  {c}" for a, b, c in rows]
    lines.append("")
    lines.append("ceilings inside the envelope (requests/s):")
    for c in result["ceilings"]:
        lines.append(f"  {c['component']:<18} {c['max_requests_per_s']:>14,.0f}  ({c['limit']})")
    first = result["saturates_first"]
    lines.append(f"saturates first: {first['component']} at "
                 f"{first['max_requests_per_s']:,.0f} requests/s: {first['why']}")
    return "\n".join(lines)


def chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ceilings = result["ceilings"]
    target = result["app"]["requests_per_s"]
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(ceilings) + 1.8))
    labels = [f"{c['component']}\n({c['limit']})" for c in ceilings]
    values = [c["max_requests_per_s"] for c in ceilings]
    colors = ["#c44e52" if v < target else "#4c72b0" for v in values]
    bars = ax.barh(labels, values, color=colors)
    for bar, v in zip(bars, values, strict=True):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {v:,.0f}", va="center",
                fontsize=8)
    ax.axvline(target, color="black", linestyle="--", linewidth=1)
    ax.text(target, -0.6, f" target {target:,.0f} req/s", fontsize=8)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("requests/s each component sustains inside the envelope (log scale)")
    app = result["app"]
    ax.set_title(f"Capacity for {result['workload']['users']:,} users: {app['pods']} pods, "
                 f"redis {'/'.join(str(r['shards']) for r in result['redis'].values())} shards "
                 f"(main/ratelimit/sessions), {result['postgres']['replicas']} PG replicas, "
                 f"{result['audit']['consumers']} audit consumers", fontsize=9)
    ax.margins(x=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(results: Path, work: Workload, dep: Deployment, *, out: Path | None = None,
        make_chart: bool = True) -> dict[str, Any]:
    """Load the inputs from ``results``, compute, write ``capacity.json`` (+ png) to ``out``."""
    settings = load_settings(env={})  # the documented defaults, not this shell's environment
    inputs = Inputs.load(results, algorithm=settings.rate_limit_algorithm)
    result = compute(inputs, work, dep, settings)
    times = {}
    for name in sorted({s.file for s in inputs.sources.values()}):
        times[name] = json.loads((results / name).read_text()).get("time")
    result["inputs"] = {k: asdict(v) for k, v in inputs.sources.items()}
    result["unmeasured"] = inputs.unmeasured
    result["input_times"] = times
    result["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result["table"] = table(result, inputs)
    if inputs.unmeasured:
        result["table"] += "\nunmeasured (counted as 0): " + "; ".join(inputs.unmeasured)
    out = out or results
    out.mkdir(parents=True, exist_ok=True)
    (out / "capacity.json").write_text(json.dumps(result, indent=2) + "\n")
    if make_chart:
        chart(result, out / "capacity.png")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    w, d = Workload(), Deployment()
    parser.add_argument("--users", type=int, default=w.users)
    parser.add_argument("--requests-per-user-per-minute", type=float,
                        default=w.requests_per_user_per_minute)
    parser.add_argument("--write-share", type=float, default=w.write_share)
    parser.add_argument("--session-lifetime", type=float, default=w.session_lifetime,
                        help="seconds a user stays logged in")
    parser.add_argument("--web-concurrency", type=int, default=d.web_concurrency)
    parser.add_argument("--headroom", type=float, default=d.headroom)
    parser.add_argument("--max-pods", type=int, default=d.max_pods)
    parser.add_argument("--max-shards-per-role", type=int, default=d.max_shards_per_role)
    parser.add_argument("--max-replicas", type=int, default=d.max_replicas)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--out", type=Path, default=None, help="default: the results dir")
    parser.add_argument("--no-chart", action="store_true")
    parser.add_argument("--update-doc", type=Path, default=None,
                        help="replace the model output between the capacity markers of this "
                             "Markdown file (docs/capacity.md)")
    a = parser.parse_args(argv)
    if not 0 < a.headroom <= 1 or not 0 <= a.write_share <= 1:
        parser.error("--headroom must be in (0, 1] and --write-share in [0, 1]")
    work = Workload(users=a.users, requests_per_user_per_minute=a.requests_per_user_per_minute,
                    write_share=a.write_share, session_lifetime=a.session_lifetime)
    dep = Deployment(web_concurrency=a.web_concurrency, headroom=a.headroom,
                     max_pods=a.max_pods, max_shards_per_role=a.max_shards_per_role,
                     max_replicas=a.max_replicas)
    try:
        result = run(a.results, work, dep, out=a.out, make_chart=not a.no_chart)
    except MissingInput as exc:
        print(f"capacity: {exc}", file=sys.stderr)
        return 2
    print(f"== Capacity model (inputs from {a.results}) ==")
    print(result["table"])
    print(f"wrote {(a.out or a.results) / 'capacity.json'}"
          + ("" if a.no_chart else " and capacity.png"))
    if a.update_doc is not None:
        update_doc(a.update_doc, result, a.results)
        print(f"updated {a.update_doc}")
    return 0


BEGIN, END = "<!-- capacity:begin -->", "<!-- capacity:end -->"


def update_doc(path: Path, result: dict[str, Any], results: Path) -> None:
    """Put the table (with its date and the inputs' dates) between the markers of ``path``."""
    text = path.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path} has no {BEGIN} ... {END} markers")
    dates = ", ".join(f"{k} {v}" for k, v in sorted(result["input_times"].items()))
    block = (f"{BEGIN}\nRun on {result['time']} on the 2-core development machine, from the "
             f"results present then ({dates}):\n\n```text\n{result['table']}\n```\n\n"
             f"![capacity chart](../bench/results/capacity.png)\n{END}")
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    path.write_text(head + block + tail, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
