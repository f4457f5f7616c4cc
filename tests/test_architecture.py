"""Package-shape rules from issue 17, checked on the source tree (no import needed)."""

from __future__ import annotations

import ast
from pathlib import Path

import fleetkit

SRC = Path(fleetkit.__file__).parent
ASGI_ALIASES = {"Scope", "Message", "Receive", "Send", "ASGIApp"}


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_asgi_types_are_defined_only_in_fleetkit_types() -> None:
    offenders = []
    for path in _modules():
        if path == SRC / "types.py":
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = {t.id for t in targets if isinstance(t, ast.Name)}
                offenders += [f"{path.relative_to(SRC)}:{n}" for n in names & ASGI_ALIASES]
            elif isinstance(node, ast.ImportFrom) and node.module == "starlette.types":
                offenders.append(f"{path.relative_to(SRC)}: imports starlette.types")
    assert offenders == []
