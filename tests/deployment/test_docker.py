"""Dockerfile (hadolint + structure), .dockerignore and the compose stack (no Docker engine here:
everything is checked statically)."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Any

import yaml

from fleetkit.config import Settings, load_settings
from tests.deployment.tooling import COMPOSE_FILE, DOCKER, DOCKERFILE, NGINX, ROOT, run, tool

ENTRYPOINT_ENV = {"WAIT_TIMEOUT", "RUN_MIGRATIONS", "WAIT_FOR_DEPENDENCIES", "MIGRATION_ATTEMPTS",
                  "MIGRATION_RETRY_DELAY"}
STACK = {"app-1", "app-2", "app-3", "audit-worker", "nginx", "postgres-primary", "postgres-replica",
         "redis-main", "redis-ratelimit", "redis-sessions", "prometheus", "grafana"}


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())  # resolves anchors and <<
    return data


def substitute(value: str) -> str:
    """Compose interpolation: ``${VAR:-default}`` gives the default, any other variable a
    URL-safe placeholder (as if .env set it) long enough for SECRET_KEY."""
    def one(m: re.Match[str]) -> str:
        if m.group(2) == ":-":
            return m.group(3)
        return f"x-{m.group(1).lower().replace('_', '-')}".ljust(32, "x")

    return re.sub(r"\$\{([A-Z_]+)(?:(:?[-?])([^}]*))?\}", one, value)


# --- Dockerfile ----------------------------------------------------------------------------------

def test_hadolint_passes() -> None:
    result = run(tool("hadolint"), "--no-color", str(DOCKERFILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_is_really_linting() -> None:
    bad = "FROM python:latest\nRUN apt-get install curl\nRUN cd /tmp && ls\n"
    result = run(tool("hadolint"), "--no-color", "-", input=bad)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # :latest
    assert "DL3003" in result.stdout  # cd in RUN


def test_dockerfile_stages_and_runtime() -> None:
    steps = instructions()
    stages = [args.split()[-1] for word, args in steps if word == "FROM"]
    assert stages == ["dependencies", "build", "runtime"]
    assert any(w == "ARG" and a.startswith("PYTHON_IMAGE=python:3.11-slim") for w, a in steps)
    runtime = steps[max(i for i, (w, _) in enumerate(steps) if w == "FROM"):]
    words = dict(runtime)
    assert re.fullmatch(r"\d+:\d+", words["USER"]) and not words["USER"].startswith("0")
    assert '"fleetkit", "healthcheck"' in words["HEALTHCHECK"]
    assert words["ENTRYPOINT"].startswith(
        '["/usr/bin/tini", "--", "/usr/local/bin/docker-entrypoint.sh"')
    env = words["ENV"]
    for name in ("PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1", "MALLOC_ARENA_MAX=",
                 "PROMETHEUS_MULTIPROC_DIR=", "AUDIT_SPOOL_DIR=", "WEB_CONCURRENCY="):
        assert name in env
    # Locked, production-only install; the runtime stage copies the venv, not the sources.
    all_runs = " ".join(a for w, a in steps if w == "RUN")
    assert "uv sync --frozen --no-dev" in all_runs
    assert "uv build --wheel" in all_runs
    assert not any(w == "COPY" and a.startswith("src") for w, a in runtime)


def test_dockerignore_lets_exactly_the_copied_files_through() -> None:
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]

    def included(path: str) -> bool:
        keep = True
        for pattern in patterns:
            negate = pattern.startswith("!")
            pat = pattern[1:] if negate else pattern
            pat = pat.rstrip("/")
            parts = path.split("/")
            hit = fnmatch.fnmatch(path, pat) or path.startswith(pat + "/") or (
                pat.startswith("**/") and any(fnmatch.fnmatch(p, pat[3:]) for p in parts))
            if hit:
                keep = negate
        return keep

    sources = []
    for word, args in instructions():
        if word == "COPY" and "--from=" not in args:
            sources += [a for a in args.split()[:-1] if not a.startswith("--")]
    assert sources
    for src in sources:
        assert (ROOT / src).exists(), src
        assert included(src), f"{src} is excluded by .dockerignore"
    for secret in (".env", "deployment/docker/.env", ".venv/bin/python", ".git/config",
                   "src/fleetkit/__pycache__/x.pyc", "bench/results/x.json"):
        assert not included(secret), secret


# --- compose -------------------------------------------------------------------------------------

def test_compose_has_the_whole_stack_with_healthchecks_and_conditions() -> None:
    services = compose()["services"]
    assert set(services) == STACK
    for name, svc in services.items():
        check = svc.get("healthcheck", {})
        if name == "audit-worker":
            assert check == {"disable": True}  # no HTTP listener; documented in the file
        else:
            assert check.get("test"), f"{name} has no healthcheck"
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            expected = "service_healthy" if "test" in services[dep].get("healthcheck", {}) else None
            assert cond["condition"] == expected, f"{name} -> {dep}"


def test_compose_images_are_pinned() -> None:
    for name, svc in compose()["services"].items():
        image = svc["image"]
        pinned = ":" in image and not image.endswith(":latest")
        assert pinned or "build" in svc, f"{name}: {image}"


def test_compose_redis_persistence() -> None:
    services = compose()["services"]

    def option(name: str, flag: str) -> str | None:
        cmd = [substitute(str(c)) for c in services[name]["command"]]
        return cmd[cmd.index(flag) + 1] if flag in cmd else None

    # The audit streams: every acknowledged XADD is on disk.
    assert option("redis-main", "--appendonly") == "yes"
    assert option("redis-main", "--appendfsync") == "always"
    assert option("redis-main", "--maxmemory-policy") == "noeviction"
    assert option("redis-sessions", "--appendonly") == "yes"
    assert option("redis-ratelimit", "--appendonly") == "no"
    for name in ("redis-main", "redis-sessions"):
        assert any(v.endswith(":/data") for v in services[name]["volumes"]), name


def test_compose_app_environment_is_valid_settings() -> None:
    services = compose()["services"]
    fields = {n.upper() for n in Settings.model_fields}
    ids = set()
    for name in ("app-1", "app-2", "app-3", "audit-worker"):
        env = {k: substitute(str(v)) for k, v in services[name]["environment"].items()}
        assert not set(env) - fields - ENTRYPOINT_ENV, name
        settings = load_settings(env=env)
        assert not settings.embedded
        assert settings.redis_url and "redis-main" in settings.redis_url
        assert settings.redis_rate_limit_url and "redis-ratelimit" in settings.redis_rate_limit_url
        assert settings.redis_session_url and "redis-sessions" in settings.redis_session_url
        assert "postgres-primary" in settings.database_url
        assert any("postgres-replica" in u for u in settings.database_read_urls)
        ids.add(settings.instance_id)
    assert len(ids) == 4
    assert services["audit-worker"]["command"] == ["fleetkit", "worker", "audit"]


def test_compose_read_only_apps_have_their_writable_paths() -> None:
    services = compose()["services"]
    for name in ("app-1", "app-2", "app-3", "audit-worker"):
        svc = services[name]
        assert svc["read_only"] is True
        env = svc["environment"]
        mounts = [t.split(":")[0] for t in svc["tmpfs"]] + [v.split(":")[1] for v in svc["volumes"]]
        assert {"/tmp", env.get("PROMETHEUS_MULTIPROC_DIR", "/var/run/fleetkit/prometheus"),
                "/var/lib/fleetkit/audit-spool"} <= set(mounts), name
        # Drain budget: readiness delay + graceful timeout fit in the stop grace period.
        grace = int(svc["stop_grace_period"].rstrip("s"))
        assert grace >= float(env["SHUTDOWN_DELAY"]) + float(env["GRACEFUL_TIMEOUT"]) + 5


def test_compose_nginx_upstreams_are_the_app_instances() -> None:
    data = compose()
    services = data["services"]
    upstream = (NGINX / "upstream.compose.conf").read_text()
    servers = re.findall(r"^server\s+([\d.]+):(\d+)", upstream, re.M)
    addresses = {services[f"app-{i}"]["networks"]["backend"]["ipv4_address"] for i in (1, 2, 3)}
    assert {ip for ip, _ in servers} == addresses
    assert {int(port) for _, port in servers} == {Settings.model_fields["port"].default}
    subnet = data["networks"]["backend"]["ipam"]["config"][0]["subnet"]
    assert all(ip.startswith(subnet.rsplit(".", 1)[0] + ".") for ip in addresses)
    # The apps trust exactly the balancer's address for X-Forwarded-For.
    nginx_ip = services["nginx"]["networks"]["backend"]["ipv4_address"]
    assert services["app-1"]["environment"]["TRUSTED_PROXIES"] == f"{nginx_ip}/32"
    listen = (NGINX / "listen.compose.conf").read_text()
    port = re.search(r"^listen\s+(\d+)", listen, re.M)
    assert port and services["nginx"]["ports"][0].endswith(f":{port.group(1)}")


def test_nginx_closes_idle_upstream_connections_before_the_instances_do() -> None:
    # Nginx never re-sends a POST written on a connection the instance is closing, so the
    # instance must never be the one closing an idle pooled connection: neither on its own idle
    # timeout nor when its listener closes SHUTDOWN_DELAY after SIGTERM (docs/deployment.md
    # "Draining an instance").
    from fleetkit.app.server import KEEP_ALIVE_TIMEOUT

    conf = (NGINX / "nginx.conf").read_text()
    upstream = re.search(r"^\s*upstream fleetkit_app \{(.*?)^\s*\}", conf, re.M | re.S)
    assert upstream
    idle = re.search(r"^\s*keepalive_timeout (\d+)s;", upstream.group(1), re.M)
    assert idle, "the upstream keepalive_timeout must be set (Nginx's default is 60 s)"
    nginx_idle = int(idle.group(1))
    assert nginx_idle < KEEP_ALIVE_TIMEOUT
    app_env = compose()["services"]["app-1"]["environment"]
    stack = re.search(r"SHUTDOWN_DELAY=\$\{SHUTDOWN_DELAY:-([\d.]+)\}",
                      (ROOT / "scripts" / "stack.sh").read_text())
    assert stack
    for where, delay in (("compose", app_env["SHUTDOWN_DELAY"]), ("stack.sh", stack.group(1))):
        # A margin of a second: Nginx's timers and a response finishing at SIGTERM.
        assert float(delay) >= nginx_idle + 1, where


def test_compose_bind_mounts_exist() -> None:
    sources = []
    for svc in compose()["services"].values():
        for volume in svc.get("volumes", []):
            src = volume.split(":")[0]
            if src.startswith("."):
                sources.append(src)
        for key, value in svc.get("environment", {}).items():
            if key == "GF_PATHS_PROVISIONING":
                sources.append(value.replace("/etc/fleetkit/monitoring", "../monitoring"))
    assert len(sources) >= 8
    for src in sources:
        assert (DOCKER / src).exists(), f"{src} (relative to deployment/docker) does not exist"
    prometheus = compose()["services"]["prometheus"]["command"]
    config = next(c for c in prometheus if c.startswith("--config.file="))
    local = config.replace("--config.file=/etc/fleetkit/monitoring", str(DOCKER / "../monitoring"))
    assert Path(local).exists()


def test_env_example_defines_every_required_variable() -> None:
    required = set(re.findall(r"\$\{([A-Z_]+):\?", COMPOSE_FILE.read_text()))
    example = (DOCKER / ".env.example").read_text()
    defined = set(re.findall(r"^([A-Z_]+)=", example, re.M))
    assert required and required <= defined
