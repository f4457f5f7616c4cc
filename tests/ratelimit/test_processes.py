"""Three real processes hammer one key through Redis: together they never exceed the limit."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import pytest

from tests.support import REDIS_CLUSTER_URL, REDIS_URL, ROOT


@pytest.mark.parametrize("url", [REDIS_URL, pytest.param(REDIS_CLUSTER_URL,
                                                          marks=pytest.mark.cluster)],
                         ids=["standalone", "cluster"])
def test_three_processes_never_exceed_the_limit(url: str) -> None:
    key = f"shared:{uuid.uuid4().hex}"
    # An hour window: the test never spans enough of it for earlier admissions to expire.
    limit, attempts = 50, 120
    start_at = time.time() + 2.0
    procs = [subprocess.Popen([sys.executable, "-m", "tests.ratelimit.hammer", url, key,
                               f"{limit}/hour", str(attempts), str(start_at)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(3)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
        results.append(json.loads(out))
    for algorithm in ("sliding_window", "sliding_log", "gcra"):
        admitted = sum(r["allowed"][algorithm] for r in results)
        # 360 attempts against 50: exactly the limit is admitted, never more.
        assert admitted == limit, (algorithm, [r["allowed"][algorithm] for r in results])
    assert all(r["backends"] == ["cache", "redis"] or r["backends"] == ["redis"]
               for r in results)
