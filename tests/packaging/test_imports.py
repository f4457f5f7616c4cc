"""Each component imports only what its job needs: the core components load with every extra
blocked (a meta-path finder refuses them), in a fresh interpreter of the dev venv."""

from __future__ import annotations

import subprocess
import sys

BLOCKER = """
import importlib, importlib.abc, sys
BLOCKED = {"fastapi", "starlette", "sqlalchemy", "asyncpg", "aiosqlite", "alembic", "uvicorn",
           "argon2", "httpx", "psutil", "uvloop", "httptools"}
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ImportError(f"{name} is an extra")
sys.meta_path.insert(0, Blocker())
for name in sys.argv[1:]:
    importlib.import_module(name)
loaded = sorted({m.partition(".")[0] for m in sys.modules} & BLOCKED)
assert not loaded, loaded
print("imported", len(sys.argv) - 1)
"""
CORE = ["fleetkit", "fleetkit.config", "fleetkit.errors", "fleetkit.ratelimit",
        "fleetkit.sessions", "fleetkit.breaker", "fleetkit.health", "fleetkit.redis",
        "fleetkit.observability", "fleetkit.monitor", "fleetkit.cli", "fleetkit.health.probe"]


def test_core_components_import_without_any_extra() -> None:
    done = subprocess.run([sys.executable, "-c", BLOCKER, *CORE], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"imported {len(CORE)}"


def test_the_blocker_blocks() -> None:
    done = subprocess.run([sys.executable, "-c", BLOCKER, "fleetkit.app"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode != 0 and "is an extra" in done.stderr


def test_the_fastapi_integration_needs_only_the_fastapi_extra() -> None:
    """`pip install 'fleetkit[fastapi]'`: install() works without the ORM, drivers, server."""
    code = BLOCKER.replace(
        'BLOCKED = {"fastapi", "starlette", ', 'BLOCKED = {').replace(
        '"argon2", "httpx", ', '"argon2", ') + """
from fastapi import FastAPI
from fleetkit.fastapi import install
from fleetkit.config import load_settings
fleet = install(FastAPI(), load_settings(env={}))
assert fleet.db is None
print("installed")
"""
    done = subprocess.run([sys.executable, "-c", code, "fleetkit.fastapi", "fleetkit.testing"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["imported", "2", "installed"]
