"""Every ```python block of docs/*.md and README.md runs as a file against the real services,
the way a reader runs it (see tests/docs/runner.py)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from fleetkit.redis import create_client
from tests.docs.runner import Block, blocks_of, compile_block, pages
from tests.support import PG_PRIMARY_URL, PG_REPLICA_URL, REDIS_CLUSTER_URL, REDIS_URL

#: A database of its own on the standalone server: other tests FLUSHDB database 0.
DOCS_REDIS_DB = 9
BLOCKS = [b for p in pages() for b in blocks_of(p)]
PROGRAMS = [b for b in BLOCKS if b.run]


def _docs_redis_url() -> str:
    parts = urlsplit(REDIS_URL)
    return urlunsplit(parts._replace(path=f"/{DOCS_REDIS_DB}"))


def reader_env(tmp_path: Path) -> dict[str, str]:
    """The process environment of a reader who points the examples at our services."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REDIS_", "DATABASE_", "RATE_LIMIT_", "SESSION_", "AUDIT_"))}
    env.update({
        "REDIS_URL": _docs_redis_url(),
        "REDIS_CLUSTER_URL": REDIS_CLUSTER_URL,
        "DATABASE_URL": PG_PRIMARY_URL,
        "DATABASE_READ_URLS": PG_REPLICA_URL,
        "DATA_DIR": str(tmp_path / "data"),
        "PYTHONWARNINGS": "error::DeprecationWarning",
    })
    return env


def test_the_docs_have_runnable_examples() -> None:
    skipped = [b.where for b in BLOCKS if not b.run]
    assert len(PROGRAMS) >= 20, f"only {len(PROGRAMS)} runnable examples"
    # snippet/no-run are for fragments and servers; keep them rare.
    assert len(skipped) <= max(3, len(PROGRAMS) // 5), skipped


def test_the_extractor_sees_fences_and_markers(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("text\n```python\nx = 1\n```\n\n```sh\nls\n```\n"
                    "````python no-run\nserve()\n````\n```python snippet\nawait_me()\n```\n")
    found = blocks_of(page)
    assert [(b.line, b.source, b.run, b.kind) for b in found] == [
        (3, "x = 1\n", True, "program"), (10, "serve()\n", False, "no-run"),
        (13, "await_me()\n", False, "snippet")]


def test_no_example_uses_top_level_await() -> None:
    """A reader pastes a block into a file: top-level await is a SyntaxError there."""
    failures = []
    for block in BLOCKS:
        try:
            compile_block(block)
        except SyntaxError as exc:
            failures.append(f"{block.where}: {exc.msg} (line {exc.lineno})")
    assert failures == []


@pytest.mark.parametrize("block", PROGRAMS, ids=[b.where for b in PROGRAMS])
def test_example_runs_as_a_file(block: Block, tmp_path: Path) -> None:
    flusher = create_client(_docs_redis_url())

    async def flush() -> None:
        try:
            await flusher.flushdb()
        finally:
            await flusher.aclose()

    asyncio.run(flush())
    work = tmp_path / "reader"
    work.mkdir()
    script = work / "example.py"
    script.write_text(block.source)
    done = subprocess.run([sys.executable, str(script)], cwd=work, env=reader_env(tmp_path),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, (
        f"docs example at {block.where} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    leftovers = sorted(p.name for p in work.iterdir() if p.name != "example.py")
    assert leftovers == [], f"{block.where} wrote into the current directory: {leftovers}"
