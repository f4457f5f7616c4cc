"""Stopping a component's background tasks: the one place the cancel-then-await idiom lives.

``task.cancel()`` only *asks*: the task is still running its ``finally`` blocks (closing a
connection, releasing a lease) when ``cancel()`` returns. A component that returns from its
``stop()``/``aclose()`` before then leaves work running after shutdown ("Task was destroyed but
it is pending"), so every stop awaits what it cancelled. Imports nothing from fleetkit: any
layer may use it.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["cancel_and_wait"]


async def cancel_and_wait(*tasks: asyncio.Future[Any] | None, ignore_errors: bool = False) -> None:
    """Cancel every task (``None`` is skipped) and wait until each one has finished.

    A task ending in ``CancelledError`` ended as asked and is not an error. Any other exception
    a task ended with is raised here (the first one, once every task has finished), so a crash
    of a background loop is not lost at shutdown; ``ignore_errors`` is for a stop that must go
    on whatever the tasks ended with (a task that reports its own failures, a ``finally`` that
    still has a lease to release).

    The caller's own cancellation is not swallowed: cancelled while it waits (a timeout around
    a stop), it raises ``CancelledError`` as asyncio expects; the tasks stay cancelled.
    """
    pending = list(dict.fromkeys(t for t in tasks if t is not None))
    for task in pending:
        task.cancel()
    if not pending:
        return
    # asyncio.wait raises nothing the tasks ended with, only our own cancellation.
    await asyncio.wait(pending)
    # exception() on every task, ignored or not: none is logged as "never retrieved".
    errors = [task.exception() for task in pending if not task.cancelled()]
    first = next((exc for exc in errors if exc is not None), None)
    if first is not None and not ignore_errors:
        raise first
