"""A stream entry being filled: the events of concurrent ``log()`` calls, packed together.

Every caller whose event is in the entry awaits the same :class:`BatchFuture`; it completes once
the entry is durable (:mod:`fleetkit.audit.producer`).
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["Batch", "BatchFuture"]


class BatchFuture(asyncio.Future[None]):
    """Shared by every ``log()`` of one entry: a cancelled caller must not cancel the others.

    Task.cancel() asks the awaited future to cancel first; refusing makes the task receive
    CancelledError when the batch completes, which leaves the other waiters untouched.
    """

    def cancel(self, msg: Any | None = None) -> bool:
        return False


class Batch:
    """The encoded lines of one entry (one JSON event per line) and the future they share."""

    __slots__ = ("future", "lines")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.lines: list[bytes] = []
        self.future = BatchFuture(loop=loop)
