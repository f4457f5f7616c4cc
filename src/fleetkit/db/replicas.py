"""Per-server state (primary and replicas) and the background health monitor.

Each check (every ``interval`` seconds, 30 by default) samples the primary first
(``pg_is_in_recovery()``, ``pg_current_wal_lsn()``), then every replica (connectivity,
``pg_is_in_recovery()``, ``pg_last_wal_replay_lsn()``, ``pg_last_xact_replay_timestamp()``).

Lag is the age of the last replayed transaction, but only while the replica is *behind* the
primary's LSN: on an idle primary that age grows forever although nothing is missing. A replica
that looks lagging is probed once more after a short delay, so one slow moment right after a
burst of writes does not take it out for a whole interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from fleetkit.db.lsn import parse_lsn
from fleetkit.tasks import cancel_and_wait

__all__ = ["MonitoredRouter", "Node", "ReplicaMonitor", "ReplicaProbe", "assess_replica",
           "least_busy"]

log = logging.getLogger("fleetkit.db")

_REPLICA_SQL = text(
    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, pg_last_wal_receive_lsn()::text,"
    " EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8"
)
# pg_current_wal_lsn() raises during recovery, hence the CASE.
_PRIMARY_SQL = text(
    "SELECT pg_is_in_recovery(),"
    " CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END"
)


@dataclass(eq=False)
class Node:
    """One server and its pool: the primary (``role="primary"``) or a replica."""

    name: str
    role: str
    url: URL
    engine: AsyncEngine
    pool_size: int
    probe: AsyncEngine | None = None  # unpooled engine for monitor checks (None: use ``engine``)
    healthy: bool = True
    reason: str | None = "not checked yet"
    outstanding: int = 0
    replay_lsn: int | None = None
    lag_seconds: float | None = None
    checked_at: float | None = None
    changed_at: float = field(default_factory=time.monotonic)
    failovers: int = 0

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Count one connection (being acquired or in use) in ``outstanding`` for the block."""
        self.outstanding += 1
        try:
            yield
        finally:
            self.outstanding -= 1

    def note_replay(self, lsn: int | None) -> None:
        # Replay only moves forward; keep the freshest value from any probe.
        if lsn is not None and (self.replay_lsn is None or lsn > self.replay_lsn):
            self.replay_lsn = lsn

    def set_state(self, healthy: bool, reason: str | None) -> bool:
        """Record the state; True (and a log line) when it changed."""
        changed = healthy != self.healthy
        self.healthy, self.reason = healthy, reason
        if changed:
            self.changed_at = time.monotonic()
            if healthy:
                log.warning("db %s %s back in rotation", self.role, self.name)
            else:
                log.warning("db %s %s taken out: %s", self.role, self.name, reason)
        return changed


def least_busy(replicas: Sequence[Node], start: int, token: int | None,
               tried: set[int]) -> tuple[Node | None, int]:
    """(least outstanding connections among healthy, untried replicas, next start index).

    Scanning from ``start`` rotates ties; with a token, replicas already known to have replayed
    it come first.
    """
    count = len(replicas)
    if not count:
        return None, start
    best: Node | None = None
    best_key: tuple[int, int] = (0, 0)
    for i in range(count):
        node = replicas[(start + i) % count]
        if not node.healthy or id(node) in tried:
            continue
        stale = int(token is not None and (node.replay_lsn or 0) < token)
        key = (stale, node.outstanding)
        if best is None or key < best_key:
            best, best_key = node, key
    return best, (start + 1) % count


class MonitoredRouter(Protocol):
    """What the monitor needs from the router (``fleetkit.db.Database`` is one)."""

    name: str
    primary: Node
    replicas: list[Node]
    embedded: bool
    max_replica_lag: float

    async def primary_read_only(self, reason: str) -> None:
        """The primary refused to act as one: mark it and discard its connections."""

    async def discard_connections(self, node: Node) -> None:
        """Never hand out a connection of ``node`` made before now."""


@dataclass(frozen=True, slots=True)
class ReplicaProbe:
    in_recovery: bool
    replay_lsn: int | None
    receive_lsn: int | None
    replay_age: float | None


def assess_replica(probe: ReplicaProbe, primary_lsn: int | None,
                   max_lag: float) -> tuple[bool, str | None, float]:
    """(healthy, reason, lag seconds) of one probe against the primary's LSN."""
    if not probe.in_recovery:
        # A promoted replica is a second primary: reading from it risks split-brain data.
        return False, "not in recovery (promoted?)", 0.0
    targets = [x for x in (primary_lsn, probe.receive_lsn) if x is not None]
    behind = probe.replay_lsn is None or (bool(targets) and probe.replay_lsn < max(targets))
    lag = max(0.0, probe.replay_age or 0.0) if behind else 0.0
    if lag > max_lag:
        return False, f"replay lag {lag:.1f}s > {max_lag:g}s", lag
    return True, None, lag


async def probe_replica(engine: AsyncEngine) -> ReplicaProbe:
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        row = (await conn.execute(_REPLICA_SQL)).one()
    return ReplicaProbe(
        bool(row[0]),
        parse_lsn(row[1]) if row[1] else None,
        parse_lsn(row[2]) if row[2] else None,
        float(row[3]) if row[3] is not None else None,
    )


async def probe_primary(engine: AsyncEngine) -> tuple[bool, int | None]:
    """(in_recovery, current LSN)."""
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        row = (await conn.execute(_PRIMARY_SQL)).one()
    return bool(row[0]), parse_lsn(row[1]) if row[1] else None


async def probe_sqlite(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


class ReplicaMonitor:
    """Runs :meth:`check` every ``interval`` seconds until stopped."""

    def __init__(self, db: MonitoredRouter, *, interval: float, timeout: float) -> None:
        self.db = db
        self.interval = interval
        self.timeout = timeout
        self.checks = 0
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.running:
            self._task = asyncio.create_task(self._run(),
                                             name=f"fleetkit-db-monitor-{self.db.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _run(self) -> None:
        # Database.start() has just checked; the first round is one interval later.
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except Exception:  # the loop must survive anything; each probe logs its own failure
                log.exception("db monitor check failed")

    async def check(self) -> None:
        """One round over the primary and every replica (concurrent callers share a round)."""
        if self._lock.locked():
            async with self._lock:
                return
        async with self._lock:
            primary_lsn = await self._check_primary()
            await asyncio.gather(*(self._check_replica(r, primary_lsn) for r in self.db.replicas))
            self.checks += 1

    async def _check_primary(self) -> int | None:
        node = self.db.primary
        try:
            async with asyncio.timeout(self.timeout):
                if self.db.embedded:
                    await probe_sqlite(node.engine)
                    in_recovery, lsn = False, None
                else:
                    in_recovery, lsn = await probe_primary(node.probe or node.engine)
        except Exception as exc:
            node.checked_at = time.monotonic()
            node.set_state(False, f"unreachable: {type(exc).__name__}: {exc}")
            return None
        node.checked_at = time.monotonic()
        if in_recovery:
            await self.db.primary_read_only("primary is in recovery (demoted)")
            return None
        node.set_state(True, None)
        return lsn

    async def _check_replica(self, node: Node, primary_lsn: int | None) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                probe = await probe_replica(node.probe or node.engine)
                healthy, reason, lag = assess_replica(probe, primary_lsn, self.db.max_replica_lag)
                if not healthy and probe.in_recovery and primary_lsn is not None:
                    # Confirm: a replica that catches up within a moment was just busy.
                    await asyncio.sleep(min(0.5, self.db.max_replica_lag / 2))
                    again = await probe_replica(node.probe or node.engine)
                    if again.replay_lsn is not None and again.replay_lsn >= primary_lsn:
                        probe, healthy, reason, lag = again, True, None, 0.0
        except Exception as exc:
            node.checked_at = time.monotonic()
            node.lag_seconds = None
            if node.set_state(False, f"unreachable: {type(exc).__name__}: {exc}"):
                await self.db.discard_connections(node)
            return
        node.checked_at = time.monotonic()
        node.note_replay(probe.replay_lsn)
        node.lag_seconds = lag
        node.set_state(healthy, reason)
