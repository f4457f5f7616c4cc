"""Every ```python block of docs/*.md and README.md runs against the real Redis/PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from fleetkit.redis import create_client
from tests.docs.runner import ROOT, Block, blocks_of, close_leftovers, pages, run_block
from tests.support import PG_PRIMARY_URL, PG_REPLICA_URL, REDIS_CLUSTER_URL, REDIS_URL

#: A database of its own on the standalone server: other tests FLUSHDB database 0.
DOCS_REDIS_DB = 9
PAGES = [p for p in pages() if blocks_of(p)]


def _docs_redis_url() -> str:
    parts = urlsplit(REDIS_URL)
    return urlunsplit(parts._replace(path=f"/{DOCS_REDIS_DB}"))


def _namespace(tmp_path: Path) -> dict[str, Any]:
    return {
        "__name__": "__docs__",
        "REDIS_URL": _docs_redis_url(),
        "REDIS_CLUSTER_URL": REDIS_CLUSTER_URL,
        "DATABASE_URL": PG_PRIMARY_URL,
        "DATABASE_READ_URLS": [PG_REPLICA_URL],
        "TMP": tmp_path,
    }


def test_the_docs_have_runnable_examples() -> None:
    runnable = [b for p in PAGES for b in blocks_of(p) if b.run]
    skipped = [b.where for p in PAGES for b in blocks_of(p) if not b.run]
    assert len(runnable) >= 20, f"only {len(runnable)} runnable examples"
    # no-run is for what cannot run in a test (starting servers); keep it rare.
    assert len(skipped) <= max(3, len(runnable) // 10), skipped


def test_the_extractor_sees_fences_and_markers(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("text\n```python\nx = 1\n```\n\n```sh\nls\n```\n"
                    "````python no-run\nserve()\n````\n")
    found = blocks_of(page)
    assert [(b.line, b.source, b.run) for b in found] == [
        (3, "x = 1\n", True), (10, "serve()\n", False)]


async def test_a_complete_program_runs_as_a_file(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("```python\nimport asyncio, os\n\nasync def main() -> None:\n"
                    "    assert os.environ['REDIS_URL'].startswith('redis')\n"
                    "    assert 'leftover' not in globals()\n\nasyncio.run(main())\n```\n"
                    "```python\nimport sys\nif __name__ == '__main__':\n    sys.exit(3)\n```\n"
                    "```python\nleftover = 1\n```\n")
    ok, failing, snippet = blocks_of(page)
    assert ok.program and failing.program and not snippet.program
    namespace = _namespace(tmp_path)
    await run_block(snippet, namespace)
    await run_block(ok, namespace)  # a file of its own: the page's names are not there
    with pytest.raises(AssertionError, match="exit 3"):
        await run_block(failing, namespace)


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
async def test_page_examples_run(page: Path, tmp_path: Path) -> None:
    client = create_client(_docs_redis_url())
    try:
        await client.flushdb()
    finally:
        await client.aclose()
    namespace = _namespace(tmp_path)
    block: Block | None = None
    try:
        async with asyncio.timeout(90):
            for block in blocks_of(page):
                await run_block(block, namespace)
    except Exception as exc:
        where = block.where if block is not None else str(page)
        raise AssertionError(f"docs example at {where} failed: {exc!r}") from exc
    finally:
        await close_leftovers(namespace)
