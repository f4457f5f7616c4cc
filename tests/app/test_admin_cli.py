"""`fleetkit admin create`: the first admin comes from the command line, never a default."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.app.conftest import AppFactory, embedded_env


def _admin(tmp_path: Path, email: str, password: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **embedded_env(tmp_path)}
    env.pop("REDIS_URL", None)
    return subprocess.run([sys.executable, "-m", "fleetkit.cli", "admin", "create", email,
                           "--password-stdin"], input=password + "\n", env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)


async def test_admin_create_then_login_has_the_admin_role(tmp_path: Path,
                                                          app_factory: AppFactory) -> None:
    weak = _admin(tmp_path, "root@example.com", "short")
    assert weak.returncode == 2 and "12 characters" in weak.stderr
    made = _admin(tmp_path, "Root@Example.com", "a-long-admin-password")
    assert made.returncode == 0, made.stderr
    assert "created admin root@example.com" in made.stdout
    _, client = await app_factory(embedded_env(tmp_path))
    r = await client.post("/v1/auth/login", json={"email": "root@example.com",
                                                  "password": "a-long-admin-password"})
    assert r.status_code == 200 and r.json()["user"]["role"] == "admin"
    token = r.json()["token"]
    listed = await client.get("/v1/admin/breakers", headers={"Authorization": f"Bearer {token}"})
    assert listed.status_code == 200
    # Running it again for an existing user promotes it (and resets the password).
    again = _admin(tmp_path, "root@example.com", "another-long-password")
    assert again.returncode == 0 and "promoted" in again.stdout
