"""Helpers of the breaker tests: unique key prefixes, bounded waits, fleet worker processes."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT


@pytest.fixture
def prefix() -> str:
    """A key prefix of its own: other engineers' tests share the Redis servers."""
    return f"test:cb:{uuid.uuid4().hex[:10]}"


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until true or ``timeout`` (a bound, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


class Worker:
    """A fleet member process (tests/breaker/fleet_worker.py)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def send(self, op: str, **args: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"op": op, **args}) + "\n").encode())
        await self.proc.stdin.drain()

    async def reply(self, timeout: float = 20.0) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        assert line, "worker exited"
        result: dict[str, Any] = json.loads(line)
        return result

    async def __call__(self, op: str, **args: Any) -> dict[str, Any]:
        await self.send(op, **args)
        return await self.reply()


async def all_of(workers: list[Worker], op: str, **args: Any) -> list[dict[str, Any]]:
    """Send ``op`` to every worker at once, then collect the replies."""
    for w in workers:
        await w.send(op, **args)
    return [await w.reply() for w in workers]


async def start_fleet(url: str, prefix: str, options: dict[str, Any], log_dir: Path,
                      n: int = 3) -> list[Worker]:
    workers = []
    for i in range(n):
        with (log_dir / f"worker{i}.log").open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.breaker.fleet_worker", url, prefix,
                json.dumps(options), cwd=ROOT, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=err)
        workers.append(Worker(proc))
    return workers


async def stop_fleet(workers: list[Worker]) -> None:
    for w in workers:
        if w.proc.returncode is None and w.proc.stdin is not None:
            w.proc.stdin.write(b'{"op": "exit"}\n')
            w.proc.stdin.close()
    for w in workers:
        try:
            await asyncio.wait_for(w.proc.communicate(), 15)
        except TimeoutError:
            w.proc.kill()
            await w.proc.communicate()


@pytest.fixture
async def fleet_factory(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    started: list[list[Worker]] = []

    async def make(url: str, prefix: str, **options: Any) -> list[Worker]:
        workers = await start_fleet(url, prefix, options, tmp_path)
        started.append(workers)
        return workers

    yield make
    for workers in started:
        await stop_fleet(workers)
