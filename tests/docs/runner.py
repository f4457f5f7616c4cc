"""Extract the ```python blocks of docs/*.md and README.md and run them.

Blocks of one page run in order in one namespace (a page reads like a session: a later block may
use what an earlier one defined). Top-level ``await`` is allowed. A block whose fence reads
```` ```python no-run ```` is only compiled (kept for commands such as ``fleetkit serve``).

The runner injects the URLs of the real test services, so examples read naturally:
``REDIS_URL`` (standalone, a database of its own so other tests' FLUSHDB cannot wipe an example
mid-run), ``REDIS_CLUSTER_URL``, ``DATABASE_URL`` (PostgreSQL primary), ``DATABASE_READ_URLS``
(the streaming replica) and ``TMP`` (a temporary directory).

A block that is a complete program (a top-level ``asyncio.run(...)`` or ``if __name__ ==
"__main__":``) runs the way a reader runs it: written to a file in ``TMP`` and started with
``python file.py`` there, those URLs in its environment (``REDIS_URL``, ``DATABASE_URL``,
``DATABASE_READ_URLS`` comma separated, ``REDIS_CLUSTER_URL``), sharing nothing with the page.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)$")
_PROGRAM = re.compile(r"^(asyncio\.run\(|if __name__ == [\"']__main__[\"']:)", re.MULTILINE)


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the first code line
    source: str
    run: bool

    @property
    def where(self) -> str:
        path = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{path}:{self.line}"

    @property
    def program(self) -> bool:
        """A complete program: run as a file, not in the page's namespace."""
        return _PROGRAM.search(self.source) is not None


def blocks_of(path: Path) -> list[Block]:
    """Every fenced code block whose info string starts with ``python``."""
    out: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        fence, info = m.group("fence"), m.group("info").strip().split()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].lstrip().startswith(fence):
            body.append(lines[j])
            j += 1
        if info and info[0] == "python":
            out.append(Block(path, i + 2, "\n".join(body) + "\n", "no-run" not in info[1:]))
        i = j + 1
    return out


def pages() -> list[Path]:
    found = sorted((ROOT / "docs").glob("*.md"))
    readme = ROOT / "README.md"
    return [*found, readme] if readme.exists() else found


async def run_block(block: Block, namespace: dict[str, Any]) -> None:
    """Compile (and unless ``no-run``, execute) one block; the line numbers match the file."""
    source = "\n" * (block.line - 1) + block.source
    code = compile(source, str(block.path), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
                   dont_inherit=True)
    if not block.run:
        return
    if block.program:
        await run_program(block, namespace)
        return
    result = eval(code, namespace)  # noqa: S307 - running our own documentation is the point
    if inspect.iscoroutine(result):
        await result


async def run_program(block: Block, namespace: dict[str, Any], timeout: float = 60) -> None:
    """``python <file>`` in ``TMP``, with the services' URLs in its environment."""
    tmp = Path(namespace["TMP"])
    path = tmp / f"{block.path.stem}_{block.line}.py"
    path.write_text(block.source, encoding="utf-8")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    for name in ("REDIS_URL", "REDIS_CLUSTER_URL", "DATABASE_URL"):
        if name in namespace:
            env[name] = str(namespace[name])
    if "DATABASE_READ_URLS" in namespace:
        env["DATABASE_READ_URLS"] = ",".join(namespace["DATABASE_READ_URLS"])
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(path), cwd=tmp, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    try:
        async with asyncio.timeout(timeout):
            output, _ = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"{block.where}: still running after {timeout} s") from None
    if proc.returncode != 0:
        tail = output.decode(errors="replace")[-3000:]
        raise AssertionError(f"{block.where}: exit {proc.returncode}\n{tail}")


async def close_leftovers(namespace: dict[str, Any]) -> None:
    """Safety net: close anything the page left open (clients, limiters...)."""
    # Newest first: a component (limiter, store) is closed before the client it uses, so its
    # own shutdown commands do not reopen a connection on an already closed client.
    for value in reversed(list(namespace.values())):
        closer = getattr(value, "aclose", None)
        if closer is None or inspect.isclass(value) or inspect.ismodule(value):
            continue
        with contextlib.suppress(Exception):
            result = closer()
            if inspect.isawaitable(result):
                await result
