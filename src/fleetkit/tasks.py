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


async def cancel_and_wait(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel every task (``None`` is skipped) and wait until each one has finished.

    A task ending in ``CancelledError`` ended as asked and is not an error. Any other exception
    a task ended with is raised here (the first one, once every task has finished), so a crash
    of a background loop is not lost at shutdown.
    """
    pending = [t for t in tasks if t is not None]
    for task in pending:
        task.cancel()
    error: BaseException | None = None
    for task in pending:
        try:
            await task
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # re-raised below, after the others have finished
            error = error or exc
    if error is not None:
        raise error
