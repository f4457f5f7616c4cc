"""The read path of :class:`~fleetkit.db.Database`: choosing a node, acquiring a connection
(with the read-your-writes check), taking a failed replica out, and wrapping driver errors.

A base class, so ``database.py`` keeps the public API and this module the mechanics.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy.exc import EmulatedDBAPIException, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.util.concurrency import greenlet_spawn

from fleetkit.db import metrics
from fleetkit.db.engines import discard_connections, is_connection_error, is_pool_timeout
from fleetkit.db.lsn import parse_lsn
from fleetkit.db.replicas import Node, ReplicaMonitor, least_busy
from fleetkit.errors import DatabaseError, DatabaseUnavailable, NoHealthyDatabase

__all__ = ["DRIVER_ERRORS", "ReadPath", "close_quietly"]


# EmulatedDBAPIException: what AsyncEngine.raw_connection() (fetch_all's path) raises when a
# new connection is refused, e.g. 57P03 "the database system is shutting down": not wrapped in
# a SQLAlchemyError there, so it must be listed or it escapes as a 500.
DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    SQLAlchemyError, EmulatedDBAPIException, OSError, TimeoutError, asyncpg.PostgresError,
    asyncpg.InterfaceError,
)
_REPLAY_SQL = "SELECT pg_last_wal_replay_lsn()::text"


async def close_quietly(conn: Any) -> None:
    """Return a connection to its pool: an ``AsyncConnection``, or a pooled driver connection
    from ``AsyncEngine.raw_connection()`` (whose sync ``close`` must run in a greenlet)."""
    with contextlib.suppress(Exception):
        if isinstance(conn, AsyncConnection):
            await conn.close()
        else:
            await greenlet_spawn(conn.close)



class ReadPath:
    """Node choice, read acquisition and failover (see :class:`fleetkit.db.Database`)."""

    name: str
    embedded: bool
    pool_timeout: float
    primary: Node
    replicas: list[Node]
    monitor: ReplicaMonitor
    _next: int
    _closed: bool
    _replica_reads: Any
    _replica_ryw_reads: Any

    def _pick(self, token: int | None, tried: set[int]) -> Node | None:
        node, self._next = least_busy(self.replicas, self._next, token, tried)
        return node

    @asynccontextmanager
    async def _reading(self, lsn: str | None, *, raw: bool) -> AsyncIterator[tuple[Any, Node]]:
        """A read connection and its node, counted in ``node.outstanding`` until returned."""
        conn, node = await self._acquire_read(lsn, raw=raw)
        with node.busy():
            try:
                yield conn, node
            finally:
                await close_quietly(conn)

    async def _acquire_read(self, lsn: str | None, *, raw: bool = False) -> tuple[Any, Node]:
        """A read connection and its node: an ``AsyncConnection``, or with ``raw`` the pooled
        driver connection (``AsyncEngine.raw_connection()``; release with _close_quietly)."""
        if self.replicas and not self._closed and not self.monitor.running:
            self.monitor.start()
        token = parse_lsn(lsn) if lsn and not self.embedded else None
        tried: set[int] = set()
        reason = "no_replicas" if not self.replicas else "no_healthy_replica"
        while (node := self._pick(token, tried)) is not None:
            tried.add(id(node))
            with node.busy():  # counted while connecting too: concurrent picks see it
                try:
                    conn: Any = await (node.engine.raw_connection() if raw
                                       else node.engine.connect())
                except DRIVER_ERRORS as exc:
                    if is_pool_timeout(exc):
                        metrics.ACQUIRE_TIMEOUTS.labels(self.name, node.name).inc()
                    elif is_connection_error(exc):
                        await self._fail_replica(node, exc)
                        reason = "failover"
                    else:
                        raise self._wrap(exc, f"read on replica {node.name}") from exc
                    continue
                if token is not None and (node.replay_lsn or 0) < token:
                    try:
                        # Straight on the driver: outside a transaction, one round trip.
                        pooled = conn if raw else await conn.get_raw_connection()
                        value = await pooled.driver_connection.fetchval(_REPLAY_SQL)
                    except DRIVER_ERRORS as exc:
                        await close_quietly(conn)
                        if not is_connection_error(exc):
                            raise self._wrap(exc, f"read on replica {node.name}") from exc
                        await self._fail_replica(node, exc)
                        reason = "failover"
                        continue
                    node.note_replay(parse_lsn(value) if value else None)
                    if (node.replay_lsn or 0) < token:
                        await close_quietly(conn)
                        reason = "read_your_writes" if reason != "failover" else reason
                        continue
            (self._replica_reads if token is None else self._replica_ryw_reads).inc()
            return conn, node
        primary = self.primary
        with primary.busy():
            try:
                conn = await (primary.engine.raw_connection() if raw
                              else primary.engine.connect())
            except DRIVER_ERRORS as exc:
                if is_pool_timeout(exc):
                    metrics.ACQUIRE_TIMEOUTS.labels(self.name, "write").inc()
                    raise self._wrap(exc, "read on primary") from exc
                raise NoHealthyDatabase(
                    f"no replica and not the primary can serve the read: "
                    f"{type(exc).__name__}: {exc}") from exc
        metrics.READS.labels(self.name, "primary", reason).inc()
        return conn, primary

    async def _fail_replica(self, node: Node, exc: BaseException) -> None:
        """Take a replica out at once and drop its (dead) pooled connections."""
        if node.set_state(False, f"connection failed: {type(exc).__name__}: {exc}"):
            node.failovers += 1
            metrics.FAILOVERS.labels(self.name, node.name).inc()
            await self.discard_connections(node)

    async def discard_connections(self, node: Node) -> None:
        """Never hand out a connection of ``node`` made before now (after a failure: they may
        be dead, or reach a server that is no longer what ``node`` means). Not a graceful
        shutdown: idle ones are replaced at their next checkout, busy ones once returned."""
        discard_connections(node.engine)

    def _wrap(self, exc: BaseException, what: str) -> DatabaseError:
        if is_pool_timeout(exc):
            return DatabaseUnavailable(f"{what}: no pooled connection within {self.pool_timeout}s")
        if is_connection_error(exc):
            return DatabaseUnavailable(f"{what}: {type(exc).__name__}: {exc}")
        return DatabaseError(f"{what}: {type(exc).__name__}: {exc}")

