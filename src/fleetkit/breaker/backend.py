"""The contract between a circuit breaker and the place its fleet-wide state lives.

Written from what :class:`~fleetkit.breaker.CircuitBreaker` needs, nothing more. Two
implementations keep identical semantics: :class:`~fleetkit.breaker.redis.RedisBreakerBackend`
(``breaker.lua``: every instance sharing one Redis sees one state) and
:class:`~fleetkit.breaker.memory.MemoryBreakerBackend` (the same rules inside one process:
embedded mode, and each instance's fallback while Redis is unreachable).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol

from fleetkit.breaker.state import Batch, Snapshot

__all__ = ["AdminAction", "BreakerBackend", "TrialVerdict"]

#: Operator actions, fleet-wide: reject all / let all through unrecorded / closed (open backoff
#: kept) / closed with empty counts and no backoff.
AdminAction = Literal["force_open", "disable", "force_close", "reset"]
#: How a half-open trial ended; ``cancel`` frees the permit without counting.
TrialVerdict = Literal["success", "failure", "cancel"]


class BreakerBackend(Protocol):
    """Shared state of one breaker. Every operation returns the state as decided after it.

    Every method may raise :class:`~fleetkit.errors.BackendUnavailable` (or a driver
    connection error): the breaker then decides on a local memory backend until the shared
    one answers again.
    """

    #: What holds the state (``"redis"``, ``"memory"``): shown in health details.
    kind: str

    async def flush(self, batch: Batch) -> Snapshot:
        """Add ``batch`` (ignored unless closed and of the current generation) and apply the
        trip rules; ``open`` becomes ``half_open`` once its wait is over. ``flag``: changed."""
        ...

    async def acquire(self, lease_id: str) -> Snapshot:
        """Take one of the half-open trial permits; ``flag``: admitted."""
        ...

    async def release(self, lease_id: str, gen: int, verdict: TrialVerdict) -> Snapshot:
        """Report a trial's verdict and free its permit; ``flag``: the result was stale (an
        older generation, or an expired lease) and was ignored."""
        ...

    async def admin(self, action: AdminAction) -> Snapshot:
        """Apply an operator action; ``flag``: changed."""
        ...

    async def watch(self, callback: Callable[[Snapshot], None], *,
                    on_subscribed: Callable[[], None], retry: float) -> None:
        """Call ``callback`` with every change, until cancelled.

        ``on_subscribed`` runs after every (re)subscription, so the caller polls once for
        changes made while it was not listening; ``retry`` is the pause after a lost one.
        """
        ...
