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


# --- import cycles, also through imports under TYPE_CHECKING and inside functions ----------

def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The fleetkit modules ``path`` imports anywhere in its body (an ``from pkg import mod``
    counts as importing ``pkg.mod`` when that is a module, else ``pkg``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = package
                for _ in range(node.level - 1):
                    pkg = pkg.rpartition(".")[0]
                base = f"{pkg}.{base}" if base else pkg
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in known else base)
    return {m for m in found if m in known and m != name}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle() -> None:
    modules = {_module_name(p): p for p in _modules()}
    graph = {name: _imports(path, name, set(modules)) for name, path in modules.items()}
    assert graph["fleetkit.ratelimit.limiter"] >= {"fleetkit.ratelimit.backend"}  # sanity
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_type_checking_and_function_imports_are_edges(tmp_path: Path) -> None:
    # A cycle closed only under TYPE_CHECKING (or by an import inside a function) still ties
    # the two modules together: the finder must see those imports, not only top-level ones.
    module = tmp_path / "view.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from fleetkit.breaker.breaker import CircuitBreaker\n"
        "    from . import rules\n"
        "def f() -> None:\n"
        "    import fleetkit.redis.connect\n")
    known = {"fleetkit.breaker.breaker", "fleetkit.breaker.rules", "fleetkit.redis.connect",
             "fleetkit.breaker.view"}
    assert _imports(module, "fleetkit.breaker.view", known) == known - {"fleetkit.breaker.view"}


# --- module size --------------------------------------------------------------------------

def test_modules_stay_under_400_lines() -> None:
    long = {str(p.relative_to(SRC)) for p in _modules() if len(p.read_text().splitlines()) >= 400}
    assert long == set(), sorted(long)
