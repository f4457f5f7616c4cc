"""What plain (non-async) callers need: counts safe across threads, and a loop to live on.

The async hot path counts on the event loop's thread without a lock. Sync calls may come from
any thread (a thread pool serving ``def`` routes, a plain script), so they count into a
:class:`Tally` under a lock, merged into the loop's batch at every flush. A breaker first used
by code with no event loop at all gets a :class:`LoopThread` of its own for its flushes,
subscription and Redis calls.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from fleetkit.breaker.rules import BreakerOutcome
from fleetkit.breaker.state import Batch
from fleetkit.errors import FleetkitError

__all__ = ["LoopThread", "NoLoop", "Tally", "merge"]

T = TypeVar("T")


class NoLoop(FleetkitError):
    """The breaker's event loop cannot answer this thread (it is this thread, or it stopped)."""


class Tally:
    """Outcomes of sync calls since the last flush, all admitted under ``gen``."""

    __slots__ = ("calls", "counts", "failures", "gen", "had_success", "lock", "n_slow", "slow",
                 "trailing")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.gen = 0
        self.calls = self.failures = self.slow = self.trailing = self.n_slow = 0
        self.had_success = False
        self.counts = {"success": 0, "failure": 0, "ignored": 0}

    def record(self, gen: int | None, outcome: BreakerOutcome, slow: bool) -> None:
        """Count one call; ``gen=None``: for the metrics only (a trial, a disabled breaker)."""
        with self.lock:
            self.counts[outcome] += 1
            if slow:
                self.n_slow += 1
            if outcome == "ignored" or gen != self.gen:
                return  # not counted, or admitted under a generation already flushed
            self.calls += 1
            if slow:
                self.slow += 1
            if outcome == "failure":
                self.failures += 1
                self.trailing += 1
            else:
                self.had_success = True
                self.trailing = 0

    def take(self, gen: int) -> Batch:
        """The counts so far (of ``self.gen``), reset to count under ``gen`` from now on."""
        with self.lock:
            batch = Batch(self.gen, self.calls, self.failures, self.slow, self.had_success,
                          self.trailing)
            self.gen = gen
            self.calls = self.failures = self.slow = self.trailing = 0
            self.had_success = False
            return batch

    def take_counts(self) -> tuple[dict[str, int], int]:
        with self.lock:
            counts, n_slow = dict(self.counts), self.n_slow
            for outcome in self.counts:
                self.counts[outcome] = 0
            self.n_slow = 0
            return counts, n_slow


def merge(a: Batch, b: Batch) -> Batch:
    """One batch of two counted side by side (same generation).

    Their interleaving is unknown, so the failures each saw after its last success are assumed
    to come after every success: a streak can only trip sooner, never be forgotten.
    """
    if not b.calls:
        return a
    had = a.had_success or b.had_success
    tail = ((a.trailing if a.had_success else a.failures)
            + (b.trailing if b.had_success else b.failures)) if had else 0
    return Batch(a.gen, a.calls + b.calls, a.failures + b.failures, a.slow + b.slow, had, tail)


class LoopThread:
    """An event loop on a daemon thread: home of a breaker used by code with no event loop."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    @property
    def current(self) -> bool:
        """True on the loop's own thread (waiting for it there would deadlock)."""
        return threading.current_thread() is self._thread

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for its result (from another thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        if not self.current:
            self._thread.join()
            self.loop.close()
