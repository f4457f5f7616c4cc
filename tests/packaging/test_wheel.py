"""The wheel a user installs: metadata, the size of a core install, what each extra adds.

The wheel is built by uv (as the Dockerfile does); venvs are created by uv and filled from its
cache, pinned to uv.lock's versions, so a run takes seconds.
"""

from __future__ import annotations

import email.parser
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support import ROOT

CORE = {"redis", "pydantic", "pydantic-settings", "prometheus-client", "orjson"}
EXTRAS = {"fastapi", "postgres", "sqlite", "httpx", "server", "all"}
#: The packages that say an extra is installed; the core pulls none of them.
SIGNATURE = {
    "fastapi": {"fastapi", "starlette"},
    "postgres": {"sqlalchemy", "asyncpg", "alembic"},
    "sqlite": {"sqlalchemy", "aiosqlite"},
    "httpx": {"httpx"},
    "server": {"uvicorn", "argon2-cffi"},
}
#: What an extra pulls in besides its own packages.
INCLUDES = {"server": ("fastapi", "postgres", "sqlite")}
ALL_SIGNATURES = set().union(*SIGNATURE.values()) | {"psutil", "uvloop", "httptools"}


def _uv() -> str:
    local = ROOT / ".uv" / "bin" / "uv"
    found = str(local) if local.exists() else shutil.which("uv")
    assert found, "uv not found: `make install` puts it in .uv/bin"
    return found


def _run(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False,
                          cwd=ROOT)


def _name(requirement: str) -> str:
    return re.split(r"[\s\[;<>=!~]", requirement, maxsplit=1)[0].lower().replace("_", "-")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    done = _run(_uv(), "build", "--wheel", "--out-dir", str(out))
    assert done.returncode == 0, done.stderr
    (built,) = out.glob("fleetkit-*.whl")
    return built


@pytest.fixture(scope="module")
def constraints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """uv.lock's versions, so a venv gets what the suite was tested with."""
    done = _run(_uv(), "export", "--frozen", "--no-dev", "--all-extras", "--no-emit-project",
                "--no-hashes", "-q")
    assert done.returncode == 0, done.stderr
    path = tmp_path_factory.mktemp("lock") / "constraints.txt"
    path.write_text(done.stdout)
    return path


def _metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(zf.read(name).decode())


def test_wheel_metadata_core_dependencies_and_extras(wheel: Path) -> None:
    meta = _metadata(wheel)
    requires = meta.get_all("Requires-Dist") or []
    core = {_name(r) for r in requires if "extra ==" not in r}
    assert core == CORE
    assert set(meta.get_all("Provides-Extra") or []) == EXTRAS
    assert not any(_name(r) == "psutil" for r in requires)
    by_extra: dict[str, set[str]] = {}
    for r in requires:
        m = re.search(r"extra == ['\"]([\w-]+)['\"]", r)
        if m:
            by_extra.setdefault(m.group(1), set()).add(_name(r))
    assert {"sqlalchemy", "asyncpg", "alembic"} <= by_extra["postgres"]
    assert {"uvicorn", "argon2-cffi"} <= by_extra["server"]
    assert "fastapi" in by_extra["fastapi"]
    assert meta["Version"] and meta.get_all("Project-URL")


def test_wheel_carries_the_non_python_files(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    assert "fleetkit/py.typed" in names
    source_lua = {f"fleetkit/{p.relative_to(ROOT / 'src' / 'fleetkit')}"
                  for p in (ROOT / "src" / "fleetkit").rglob("*.lua")}
    assert source_lua and source_lua <= names  # every Lua script ships
    assert "fleetkit/db/migrations/env.py" in names
    assert any(n.startswith("fleetkit/db/migrations/versions/") for n in names)
    assert not any(n.startswith(("tests/", "docs/", "bench/")) for n in names)


def test_long_description_reads_well_on_a_package_index(wheel: Path) -> None:
    """No links into the repository (not in the package) and no paths outside this project."""
    body = _metadata(wheel).get_payload()
    assert isinstance(body, str) and "make run" in body and "make test" in body
    assert "shared/seed" not in body and "seed/" not in body
    targets = re.findall(r"\]\(([^)]+)\)", body)
    relative = [t for t in targets if not t.startswith(("http://", "https://", "#"))]
    assert relative == []


def test_version_is_the_metadata_version(wheel: Path) -> None:
    import fleetkit

    assert fleetkit.__version__ == _metadata(wheel)["Version"]


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    path = tmp_path / "venv"
    done = _run(_uv(), "venv", "-q", "--python", sys.executable, str(path))
    assert done.returncode == 0, done.stderr
    return path


def _install(venv: Path, target: str, constraints: Path) -> set[str]:
    python = str(venv / "bin" / "python")
    done = _run(_uv(), "pip", "install", "-q", "-c", str(constraints), "--python", python, target)
    assert done.returncode == 0, done.stderr
    listed = _run(_uv(), "pip", "list", "--python", python, "--format", "freeze")
    return {line.split("==")[0].lower() for line in listed.stdout.split()}


def _size(venv: Path) -> int:
    site = next((venv / "lib").glob("python3*/site-packages"))
    return sum(p.stat().st_size for p in site.rglob("*") if p.is_file())


CORE_SCRIPT = """
import asyncio, importlib.util
for extra in ("fastapi", "starlette", "sqlalchemy", "asyncpg", "uvicorn", "argon2", "psutil"):
    assert importlib.util.find_spec(extra) is None, extra
import fleetkit, fleetkit.ratelimit, fleetkit.sessions, fleetkit.breaker, fleetkit.health
import fleetkit.redis, fleetkit.observability, fleetkit.monitor
from fleetkit.breaker import CircuitBreaker
from fleetkit.health import HealthRegistry
from fleetkit.ratelimit import Limit, Policy, RateLimiter, RateLimitMiddleware
from fleetkit.sessions import SessionMiddleware, SessionStore

async def main():
    limiter = RateLimiter(redis=None)
    assert (await limiter.hit("k", Limit.parse("1/minute"))).allowed
    assert not (await limiter.hit("k", Limit.parse("1/minute"))).allowed
    store = SessionStore(redis=None)
    s = await store.create("u1")
    assert (await store.get(s.token)).user_id == "u1"
    breaker = CircuitBreaker("x", redis=None)
    async with breaker:
        pass
    app = RateLimitMiddleware(SessionMiddleware(lambda s, r, w: None, store=store),
                              limiter=limiter, policies=[Policy("ip", "5/second")])
    assert app is not None
    await breaker.aclose(); await limiter.aclose()

asyncio.run(main())
print("core ok", fleetkit.__version__)
"""


def test_core_install_is_small_and_the_components_work(
        wheel: Path, constraints: Path, venv: Path) -> None:
    installed = _install(venv, str(wheel), constraints)
    assert len(installed) <= 16, sorted(installed)
    assert not installed & ALL_SIGNATURES, sorted(installed & ALL_SIGNATURES)
    size = _size(venv)
    assert size < 30 * 1024 * 1024, f"{size / 2**20:.1f} MiB"
    done = _run(str(venv / "bin" / "python"), "-c", CORE_SCRIPT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("core ok")
    # The CLI says which extra is missing instead of a traceback; the probe still works.
    serve = _run(str(venv / "bin" / "fleetkit"), "serve")
    assert serve.returncode == 2
    assert "pip install 'fleetkit[server]'" in serve.stderr and "Traceback" not in serve.stderr
    probe = _run(str(venv / "bin" / "fleetkit"), "healthcheck", "--url", "http://127.0.0.1:1/",
                 "--timeout", "1")
    assert probe.returncode == 1 and "Traceback" not in probe.stderr


@pytest.mark.parametrize("extra", sorted(SIGNATURE))
def test_each_extra_adds_only_its_own(
        extra: str, wheel: Path, constraints: Path, venv: Path) -> None:
    installed = _install(venv, f"{wheel}[{extra}]", constraints)
    own = SIGNATURE[extra].union(*(SIGNATURE[e] for e in INCLUDES.get(extra, ())))
    assert own <= installed
    others = ALL_SIGNATURES - own
    if extra == "server":  # the reference service runs on uvicorn[standard]
        others -= {"uvloop", "httptools"}
    assert not installed & others, sorted(installed & others)
