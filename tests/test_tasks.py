"""fleetkit.tasks.cancel_and_wait: returns only once every cancelled task has finished."""

from __future__ import annotations

import asyncio

import pytest

from fleetkit.tasks import cancel_and_wait


async def test_returns_after_each_task_has_run_its_cleanup() -> None:
    cleaned: list[int] = []
    started = asyncio.Event()

    async def loop(n: int) -> None:
        try:
            started.set()
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)  # cleanup that itself awaits: cancel() alone would not wait
            cleaned.append(n)

    tasks = [asyncio.create_task(loop(n)) for n in range(3)]
    await started.wait()
    await cancel_and_wait(tasks[0], None, *tasks[1:])
    assert sorted(cleaned) == [0, 1, 2]
    assert all(t.cancelled() for t in tasks)


async def _crashed_and_running() -> tuple[asyncio.Task[None], asyncio.Task[None]]:
    """A task that has crashed and one still running."""
    async def crash() -> None:
        raise RuntimeError("boom")

    async def forever() -> None:
        await asyncio.Event().wait()

    crashed, other = asyncio.create_task(crash()), asyncio.create_task(forever())
    await asyncio.wait({crashed}, timeout=5)
    assert crashed.done()
    return crashed, other


async def test_a_crash_is_raised_after_the_others_have_finished() -> None:
    crashed, other = await _crashed_and_running()
    with pytest.raises(RuntimeError, match="boom"):
        await cancel_and_wait(crashed, other)
    assert other.cancelled()


async def test_ignore_errors_waits_for_every_task_and_raises_nothing() -> None:
    crashed, other = await _crashed_and_running()
    await cancel_and_wait(crashed, other, ignore_errors=True)
    assert other.cancelled()
    assert isinstance(crashed.exception(), RuntimeError)


async def test_the_callers_own_cancellation_is_not_swallowed() -> None:
    # A stop under a timeout: the timeout must fire even though the task it waits for is slow
    # to finish (its cleanup outlasts the deadline).
    release = asyncio.Event()
    started = asyncio.Event()

    async def slow_cleanup() -> None:
        try:
            started.set()
            await asyncio.Event().wait()
        finally:
            await release.wait()

    task = asyncio.create_task(slow_cleanup())
    await started.wait()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await cancel_and_wait(task)
    assert not task.done()  # still in its cleanup, and still cancelled once it ends
    release.set()
    await asyncio.wait({task}, timeout=5)
    assert task.cancelled()
