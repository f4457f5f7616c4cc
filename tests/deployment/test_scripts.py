"""Shell scripts: shellcheck, and the container entrypoint run for real against the services
of scripts/services.sh (waiting, migrations, exec, signals)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.deployment.tooling import DOCKER, ENTRYPOINT, run, tool
from tests.support import PG_PRIMARY_URL, REDIS_ACL_URL, REDIS_CLUSTER_URL, REDIS_SENTINEL_URL

SCRIPTS = [ENTRYPOINT, *sorted((DOCKER / "postgres").glob("*.sh"))]


def entrypoint_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A clean environment: only what the test sets, plus a PATH whose `fleetkit` is a stub that
    records its arguments (the real commands are other components' business)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stub = bin_dir / "fleetkit"
    stub.write_text(
        '#!/bin/sh\n'
        'echo "fleetkit $*" >> "$CALLS"\n'
        'if [ "$1" = migrate ] && [ -n "${FAIL_MIGRATIONS:-}" ]; then\n'
        '  n=$(cat "$CALLS" | grep -c migrate); [ "$n" -le "$FAIL_MIGRATIONS" ] && exit 1\n'
        'fi\n'
        'exit 0\n')
    stub.chmod(0o755)
    return {"PATH": f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin",
            "CALLS": str(tmp_path / "calls"), "WAIT_TIMEOUT": "10", "MIGRATION_RETRY_DELAY": "0.1",
            **extra}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck(script: Path) -> None:
    result = run(tool("shellcheck"), "--severity=style", str(script))
    assert result.returncode == 0, result.stdout + result.stderr
    assert os.access(script, os.X_OK), f"{script.name} is not executable"


def test_shellcheck_is_really_checking(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/bin/sh\nrm -rf $1/*\n")
    result = run(tool("shellcheck"), str(bad))
    assert result.returncode != 0 and "SC2086" in result.stdout


def test_waits_for_every_datastore_then_execs(tmp_path: Path) -> None:
    metrics = tmp_path / "prom"
    metrics.mkdir()
    (metrics / "counter_123.db").write_text("stale")
    env = entrypoint_env(
        tmp_path, DATABASE_URL=PG_PRIMARY_URL.replace("postgresql://", "postgresql+asyncpg://"),
        REDIS_URL=REDIS_ACL_URL, REDIS_RATE_LIMIT_URL=REDIS_CLUSTER_URL,
        REDIS_SESSION_URL=REDIS_SENTINEL_URL, PROMETHEUS_MULTIPROC_DIR=str(metrics),
        WAIT_TIMEOUT="60")  # other suites restart the shared servers: this is what waiting is for
    # `exec`: the command runs with the entrypoint's own PID.
    proc = subprocess.Popen(["sh", str(ENTRYPOINT), "sh", "-c", "echo $$"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    assert out.strip() == str(proc.pid)
    for name in ("postgresql", "redis redis://", "redis+cluster://", "redis+sentinel://"):
        assert name in err and "is ready" in err
    assert "fleetkit-secret" not in err  # passwords never logged
    assert not list(metrics.iterdir())  # stale multiprocess files removed
    assert not (tmp_path / "calls").exists()  # no migrations unless asked


def test_gives_up_after_the_timeout_with_a_clear_message(tmp_path: Path) -> None:
    env = entrypoint_env(tmp_path, REDIS_URL="redis://127.0.0.1:1/0", WAIT_TIMEOUT="1")
    result = run("sh", str(ENTRYPOINT), "true", env=env)
    assert result.returncode == 1
    assert "redis redis://127.0.0.1:1 not ready after 1s" in result.stderr
    assert "dependencies not ready" in result.stderr


def test_runs_migrations_before_the_command_and_retries(tmp_path: Path) -> None:
    env = entrypoint_env(tmp_path, RUN_MIGRATIONS="true", FAIL_MIGRATIONS="1",
                         MIGRATION_ATTEMPTS="3", WAIT_FOR_DEPENDENCIES="false")
    result = run("sh", str(ENTRYPOINT), "fleetkit", "worker", "audit", env=env)
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls == ["fleetkit migrate", "fleetkit migrate", "fleetkit worker audit"]


def test_failed_migrations_stop_the_container(tmp_path: Path) -> None:
    env = entrypoint_env(tmp_path, RUN_MIGRATIONS="true", FAIL_MIGRATIONS="9",
                         MIGRATION_ATTEMPTS="2", WAIT_FOR_DEPENDENCIES="false")
    result = run("sh", str(ENTRYPOINT), env=env)
    assert result.returncode == 1
    assert (tmp_path / "calls").read_text().splitlines() == ["fleetkit migrate"] * 2
    assert "migrations failed after 2 attempts" in result.stderr


def test_default_command_and_flag_shorthand_serve(tmp_path: Path) -> None:
    env = entrypoint_env(tmp_path, WAIT_FOR_DEPENDENCIES="false")
    assert run("sh", str(ENTRYPOINT), env=env).returncode == 0
    assert run("sh", str(ENTRYPOINT), "--port", "9000", env=env).returncode == 0
    assert (tmp_path / "calls").read_text().splitlines() == [
        "fleetkit serve --host 0.0.0.0", "fleetkit serve --port 9000"]


def test_sigterm_while_waiting_exits_at_once(tmp_path: Path) -> None:
    env = entrypoint_env(tmp_path, REDIS_URL="redis://127.0.0.1:1/0", WAIT_TIMEOUT="60")
    proc = subprocess.Popen(["sh", str(ENTRYPOINT), "true"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    probe_seen = False
    while time.monotonic() < deadline and not probe_seen:  # the probe child has started
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        probe_seen = children.exists() and bool(children.read_text().split())
        time.sleep(0.05)
    assert probe_seen
    child = int(children.read_text().split()[0])
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)  # far less than WAIT_TIMEOUT
    assert proc.returncode == 143
    assert "received TERM before the server started" in err
    status = Path(f"/proc/{child}/status")
    assert not status.exists() or "zombie" in status.read_text().lower()
