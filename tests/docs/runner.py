"""Extract the ```python blocks of docs/*.md and README.md, the way a reader would use them.

Each ```` ```python ```` block is a complete program: the test suite writes it to a file and
runs ``python example.py`` in an empty directory, as a reader who copied it would. Like a reader,
it gets the services through the environment, which ``fleetkit.config`` reads: ``REDIS_URL``
(standalone; a database of its own so other tests' FLUSHDB cannot wipe an example mid-run),
``REDIS_CLUSTER_URL``, ``DATABASE_URL`` (PostgreSQL primary), ``DATABASE_READ_URLS`` (the
streaming replica) and ``DATA_DIR`` (a temporary directory).

A fragment that is not a whole program is fenced ```` ```python snippet ```` and says so in the
text; it is only compiled. ```` ```python no-run ```` is for programs that cannot run in a test
(they start a server); they are compiled too. Neither kind may use top-level ``await``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)$")
#: The fence words after ``python`` that mean "compile only".
COMPILE_ONLY = frozenset({"snippet", "no-run"})


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the first code line
    source: str
    run: bool
    kind: str  # "program", "snippet" or "no-run"

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    def padded(self) -> str:
        """The source with blank lines in front, so tracebacks give the page's line numbers."""
        return "\n" * (self.line - 1) + self.source


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
            marks = COMPILE_ONLY.intersection(info[1:])
            kind = sorted(marks)[0] if marks else "program"
            out.append(Block(path, i + 2, "\n".join(body) + "\n", not marks, kind))
        i = j + 1
    return out


def pages() -> list[Path]:
    found = sorted((ROOT / "docs").glob("*.md"))
    readme = ROOT / "README.md"
    return [*found, readme] if readme.exists() else found


def compile_block(block: Block) -> None:
    """Compile as a module (a program or a snippet): top-level ``await`` is a SyntaxError."""
    compile(block.padded(), str(block.path), "exec", dont_inherit=True)
