"""The library's lower layers import nothing from the reference service (``fleetkit.app``).

Two checks: statically, no import statement in ``fleetkit/db`` or ``fleetkit/audit`` (including
under ``TYPE_CHECKING`` and inside functions, migrations included) names ``fleetkit.app``; and at
run time, a fresh interpreter that imports every module of both packages and runs the library's
migrations on SQLite never loads ``fleetkit.app``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT

SRC = ROOT / "src" / "fleetkit"
PACKAGES = ("db", "audit")


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _modules() -> list[str]:
    out = []
    for package in PACKAGES:
        for path in sorted((SRC / package).rglob("*.py")):
            if "versions" in path.parts or path.name == "env.py":
                continue  # Alembic loads these from files, not as modules
            rel = path.relative_to(SRC.parent).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out.append(".".join(parts))
    return out


def test_no_import_statement_names_the_app() -> None:
    files = [p for package in PACKAGES for p in (SRC / package).rglob("*.py")]
    assert len(files) > 20 and any("versions" in p.parts for p in files)
    offenders = {str(p.relative_to(ROOT)): name for p in files for name in _imports(p)
                 if name == "fleetkit.app" or name.startswith("fleetkit.app.")}
    assert offenders == {}


def test_importing_and_migrating_never_loads_the_app(tmp_path: Path) -> None:
    modules = _modules()
    assert "fleetkit.db.migrate" in modules and "fleetkit.audit.pgsink" in modules
    code = f"""
import asyncio, importlib, sys
for name in {modules!r}:
    importlib.import_module(name)
from fleetkit.db import migrate
result = asyncio.run(migrate({f"sqlite:///{tmp_path / 'lib.db'}"!r}))
loaded = sorted(m for m in sys.modules if m == "fleetkit.app" or m.startswith("fleetkit.app."))
print(result.after, loaded)
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0002_audit", "[]"]
