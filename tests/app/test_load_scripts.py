"""The load scripts work against a real server: the locust journeys and the wrk script."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ROOT, free_port, wait_port


@pytest.fixture(scope="module")
def embedded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("load")
    port = free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{work}/app.db",
           "AUDIT_SPOOL_DIR": str(work / "spool"), "RATE_LIMIT_IP": "100000/second",
           "RATE_LIMIT_LOGIN": "100000/second", "RATE_LIMIT_USER": "100000/second",
           "SESSION_COOKIE_SECURE": "false",
           "LOG_LEVEL": "warning"}
    for key in ("REDIS_URL", "DATABASE_READ_URLS"):
        env.pop(key, None)
    with open(Path(work) / "server.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "fleetkit.cli", "serve", "--port",
                                 str(port)], env=env, cwd=work, stdout=log, stderr=log)
        try:
            wait_port(port, timeout=30)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(30)


def test_locust_journeys_run_without_failures(embedded_server: str, tmp_path: Path) -> None:
    locust = Path(sys.executable).parent / "locust"
    out = subprocess.run(
        [str(locust), "-f", str(ROOT / "bench" / "locustfile.py"), "--host", embedded_server,
         "--headless", "-u", "4", "-r", "4", "-t", "6s", "--only-summary",
         "--csv", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=90, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    stats = (tmp_path / "run_stats.csv").read_text()
    total = next(line for line in stats.splitlines() if ",Aggregated," in line).split(",")
    requests, failures = int(total[2]), int(total[3])
    assert requests > 10
    assert failures == 0, stats


def test_wrk_script_measures_the_full_stack_endpoint(embedded_server: str) -> None:
    assert shutil.which("wrk"), "wrk is not installed (scripts/test.sh installs it)"
    out = subprocess.run(["bash", str(ROOT / "bench" / "wrk" / "run.sh"), embedded_server, "4",
                          "1"], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert re.search(r"Requests/sec:\s+[\d.]+", out.stdout), out.stdout
    assert "Non-2xx" not in out.stdout, out.stdout
