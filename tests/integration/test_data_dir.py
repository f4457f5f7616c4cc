"""DATA_DIR: everything embedded mode writes goes there, nothing into the current directory
(`make run` used to leave an untracked fleetkit.db.migrate.lock in the checkout)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fleetkit.config import load_settings

SCRIPT = """
import asyncio
from fleetkit.app import create_app
from fleetkit.config import load_settings
from fleetkit.testing import client

async def main():
    app = create_app(load_settings(), install_signal_handlers=False)
    async with client(app) as http:
        r = await http.post("/v1/auth/register",
                            json={"email": "ada@example.com", "password": "correct horse"})
        assert r.status_code == 202, r.text
asyncio.run(main())
"""


def test_defaults_live_under_data_dir(tmp_path: Path) -> None:
    settings = load_settings(env={"DATA_DIR": str(tmp_path / "data")})
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path}/data/fleetkit.db"
    assert settings.audit_spool_dir == tmp_path / "data" / "audit-spool"
    # Set explicitly, a path is the user's: not rewritten, and it counts as configured.
    own = load_settings(env={"DATA_DIR": str(tmp_path), "AUDIT_SPOOL_DIR": "/srv/spool"})
    assert own.audit_spool_dir == Path("/srv/spool") and "database_url" not in own.model_fields_set
    default = load_settings(env={})
    assert default.data_dir.is_absolute() and default.data_dir.name == "fleetkit"


def test_the_embedded_service_writes_only_into_data_dir(tmp_path: Path) -> None:
    cwd, data = tmp_path / "checkout", tmp_path / "data"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REDIS_", "DATABASE_", "AUDIT_"))}
    env.update({"DATA_DIR": str(data), "SESSION_COOKIE_SECURE": "false", "LOG_LEVEL": "warning",
                "HOME": str(tmp_path / "home")})
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert list(cwd.iterdir()) == []
    written = {p.name for p in data.iterdir()}
    assert {"fleetkit.db", "fleetkit.db.migrate.lock"} <= written
    assert not (tmp_path / "home").exists()
