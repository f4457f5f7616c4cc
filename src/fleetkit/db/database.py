"""The database router: one write pool on the primary, one read pool per replica.

Reads go to the healthy replica with the fewest outstanding connections; writes always go to the
primary. A replica whose connection fails is taken out at once (the read is retried elsewhere
when possible) and put back by the monitor once a check succeeds again. With no healthy replica,
reads go to the primary.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from fleetkit.config import redact_url
from fleetkit.db import health, metrics
from fleetkit.db.compiled import StatementCache
from fleetkit.db.engines import (
    PoolStats,
    is_connection_error,
    is_pool_timeout,
    is_read_only_error,
    make_engine,
    sqlstate_of,
)
from fleetkit.db.lsn import parse_lsn
from fleetkit.db.reads import DRIVER_ERRORS as _DRIVER_ERRORS
from fleetkit.db.reads import ReadPath
from fleetkit.db.reads import close_quietly as _close_quietly
from fleetkit.db.replicas import Node, ReplicaMonitor
from fleetkit.db.urls import is_sqlite, normalize_url, server_name
from fleetkit.errors import ConfigError, DatabaseUnavailable, NoHealthyDatabase
from fleetkit.health import ComponentStatus

if TYPE_CHECKING:
    from fleetkit.config import Settings

__all__ = ["Database"]

log = logging.getLogger("fleetkit.db")
T = TypeVar("T")
# The insert position, not pg_current_wal_lsn() (the write position): with
# synchronous_commit=off a commit returns before its record is written, so only the insert
# position is guaranteed to be past it.
_CURRENT_SQL = text("SELECT pg_current_wal_insert_lsn()::text")


class Database(ReadPath):
    """Routes reads to replicas and writes to the primary over SQLAlchemy async engines.

    ``write_url``/``read_urls`` accept ``postgresql://`` or ``postgresql+asyncpg://``; a
    ``sqlite://`` write URL is embedded mode (aiosqlite, same API, no replicas). Pools never
    overflow and every checkout waits at most ``pool_timeout`` seconds. Use as
    ``async with Database(...) as db`` (or ``await db.start()`` / ``await db.aclose()``) so the
    health monitor runs; reads start it lazily otherwise.
    """

    def __init__(self, write_url: str, *, read_urls: Sequence[str] = (),
                 write_pool_size: int = 40, read_pool_size: int = 60,
                 pool_timeout: float = 5.0, connect_timeout: float = 5.0,
                 health_interval: float = 30.0, max_replica_lag: float = 5.0,
                 statement_cache_size: int = 100, name: str = "default",
                 application_name: str = "fleetkit",
                 engine_options: dict[str, Any] | None = None) -> None:
        if write_pool_size < 1 or read_pool_size < 1:
            raise ConfigError("pool sizes must be >= 1")
        if pool_timeout <= 0 or connect_timeout <= 0 or health_interval <= 0:
            raise ConfigError("pool_timeout, connect_timeout and health_interval must be > 0")
        url = normalize_url(write_url)
        self.name = name
        self.embedded = is_sqlite(url)
        if self.embedded and read_urls:
            raise ConfigError("embedded mode (SQLite) has no replicas: leave read_urls empty")
        self.pool_timeout = pool_timeout
        self.max_replica_lag = max_replica_lag
        common: dict[str, Any] = dict(
            pool_timeout=pool_timeout, connect_timeout=connect_timeout,
            statement_cache_size=statement_cache_size, application_name=application_name,
            engine_options=engine_options,
        )
        self.primary = Node(server_name(url), "primary", url,
                            make_engine(url, pool_size=write_pool_size, **common),
                            write_pool_size, reason=None,
                            probe=None if self.embedded else make_engine(
                                url, pool_size=1, probe=True, **common))
        self.replicas: list[Node] = []
        for read_url in read_urls:
            rurl = normalize_url(read_url)
            if is_sqlite(rurl):
                raise ConfigError("read_urls must be PostgreSQL URLs")
            label = server_name(rurl)
            if any(r.name == label for r in self.replicas):
                label = f"{label}#{len(self.replicas)}"
            # Replicas only serve reads: autocommit skips the BEGIN/ROLLBACK round trips that a
            # transaction per read would cost (3 round trips become 1).
            read_common = {**common, "engine_options": {**(engine_options or {}),
                                                         "isolation_level": "AUTOCOMMIT"}}
            self.replicas.append(Node(label, "replica", rurl,
                                      make_engine(rurl, pool_size=read_pool_size,
                                                  **read_common),
                                      read_pool_size,
                                      probe=make_engine(rurl, pool_size=1, probe=True, **common)))
        self.monitor = ReplicaMonitor(self, interval=health_interval,
                                      timeout=min(connect_timeout, health_interval) + 1.0)
        self._next = 0
        self._closed = False
        self._compiled = StatementCache()  # see fetch_all()
        # Bound once: labels() takes a lock and a dict lookup on every call.
        self._replica_reads = metrics.READS.labels(name, "replica", "balanced")
        self._replica_ryw_reads = metrics.READS.labels(name, "replica", "read_your_writes")
        metrics.track(self)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> Database:
        """Build from ``DATABASE_*`` settings; sizes are capped by ``DATABASE_CONNECTION_LIMIT``."""
        write, read = settings.pool_sizes
        options: dict[str, Any] = dict(
            read_urls=settings.database_read_urls, write_pool_size=write, read_pool_size=read,
            pool_timeout=settings.database_pool_timeout,
            health_interval=settings.database_health_interval,
            max_replica_lag=settings.database_max_replica_lag,
            statement_cache_size=settings.database_statement_cache_size,
            application_name=f"fleetkit:{settings.instance_id}"[:63],
        )
        options.update(overrides)
        return cls(settings.database_url, **options)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Run one check now, then keep the monitor running in the background."""
        await self.monitor.check()
        self.monitor.start()

    async def aclose(self) -> None:
        """Stop the monitor and close every pooled connection."""
        self._closed = True
        await self.monitor.stop()
        for node in (self.primary, *self.replicas):
            await node.engine.dispose()
            if node.probe is not None:
                await node.probe.dispose()

    async def __aenter__(self) -> Database:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def check(self) -> None:
        """Check the primary and every replica now (what the monitor does each interval)."""
        await self.monitor.check()

    @property
    def engine(self) -> AsyncEngine:
        """The primary's engine (DDL, ``metadata.create_all``, Alembic)."""
        return self.primary.engine

    # ------------------------------------------------------------------ reads

    @asynccontextmanager
    async def read(self, lsn: str | None = None) -> AsyncIterator[AsyncConnection]:
        """A connection on a healthy replica, or on the primary when none can serve.

        With ``lsn`` (a token from :meth:`current_lsn`) only a replica whose replay position has
        reached it is used, else the primary: the caller sees its own writes.
        """
        async with self._reading(lsn, raw=False) as (conn, node):
            try:
                yield conn
            except _DRIVER_ERRORS as exc:
                if node.role == "replica" and is_connection_error(exc):
                    await self._fail_replica(node, exc)
                raise self._wrap(exc, f"read on {node.role} {node.name}") from exc

    async def run_read(self, fn: Callable[[AsyncConnection], Awaitable[T]], *,
                       lsn: str | None = None) -> T:
        """Run ``fn(conn)`` on a read connection, retried elsewhere if the replica fails.

        Unlike ``async with db.read()``, whose body cannot be replayed, a replica that drops the
        connection in the middle of ``fn`` costs no error: ``fn`` runs again on another replica
        or the primary. ``fn`` must therefore be safe to repeat (reads are).
        """
        return await self._run_read(fn, lsn, raw=False)

    async def _run_read(self, fn: Callable[[Any], Awaitable[T]], lsn: str | None, *,
                        raw: bool) -> T:
        for _ in range(len(self.replicas) + 1):
            async with self._reading(lsn, raw=raw) as (conn, node):
                try:
                    return await fn(conn)
                except _DRIVER_ERRORS as exc:
                    error = self._wrap(exc, f"read on {node.role} {node.name}")
                    if node.role == "replica" and is_connection_error(exc):
                        await self._fail_replica(node, exc)
                        continue
                    raise error from exc
        raise NoHealthyDatabase("every replica failed during the read")

    async def fetch_all(self, statement: Any, params: Mapping[str, Any] | None = None, *,
                        lsn: str | None = None) -> list[Mapping[str, Any]]:
        """Rows of a SQLAlchemy Core ``statement`` read like :meth:`run_read` (replica, retried).

        On PostgreSQL the statement is compiled once (cached) and run on the driver directly:
        asyncpg's ``fetch`` costs this process about half the CPU of ``conn.execute`` through
        SQLAlchemy (tests/db, bench/http_load.py). Rows are mappings (``row["email"]``).
        Build statements once, at import: the cache is keyed by the statement object.
        """
        if self.embedded:
            async def via_sqlalchemy(conn: AsyncConnection) -> list[Mapping[str, Any]]:
                result = await conn.execute(statement, dict(params or {}))
                return [cast(Mapping[str, Any], row._mapping) for row in result]

            return await self.run_read(via_sqlalchemy, lsn=lsn)
        sql, args = self._compiled.sql_and_args(statement, params)

        async def via_driver(pooled: Any) -> list[Mapping[str, Any]]:
            rows: list[Mapping[str, Any]] = await pooled.driver_connection.fetch(sql, *args)
            return rows

        # raw: a pooled driver connection without SQLAlchemy's AsyncConnection around it
        # (~35 us less per read, same pool, same checkout events).
        return await self._run_read(via_driver, lsn, raw=True)

    async def fetch_one(self, statement: Any, params: Mapping[str, Any] | None = None, *,
                        lsn: str | None = None) -> Mapping[str, Any] | None:
        """The first row of :meth:`fetch_all`, or None."""
        rows = await self.fetch_all(statement, params, lsn=lsn)
        return rows[0] if rows else None

    async def drain(self, node: Node) -> None:
        """Deprecated alias of :meth:`discard_connections` (it never drained gracefully)."""
        warnings.warn("Database.drain() is deprecated: use discard_connections()",
                      DeprecationWarning, stacklevel=2)
        await self.discard_connections(node)

    # ------------------------------------------------------------------ writes

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A connection on the primary inside a transaction, committed when the block exits."""
        node = self.primary
        with node.busy():
            try:
                conn = await node.engine.connect()
            except _DRIVER_ERRORS as exc:
                if is_pool_timeout(exc):
                    metrics.ACQUIRE_TIMEOUTS.labels(self.name, "write").inc()
                raise self._wrap(exc, f"write on primary {node.name}") from exc
            try:
                async with conn.begin():
                    yield conn
            except _DRIVER_ERRORS as exc:
                if is_read_only_error(exc):
                    await _close_quietly(conn)
                    await self.primary_read_only(f"write refused as read-only: {exc}")
                    raise DatabaseUnavailable(
                        f"write on primary {node.name}: the server is read-only (demoted?): "
                        f"{type(exc).__name__}: {exc}") from exc
                raise self._wrap(exc, f"write on primary {node.name}") from exc
            finally:
                await _close_quietly(conn)

    async def primary_read_only(self, reason: str) -> None:
        """The primary was demoted: mark it and discard its connections so new ones are made
        (through DNS, a VIP or PgBouncer they reach whichever server is primary now)."""
        node = self.primary
        if node.healthy or node.reason != reason:
            metrics.PRIMARY_READ_ONLY.labels(self.name).inc()
        node.set_state(False, reason)
        await self.discard_connections(node)

    async def current_lsn(self) -> str | None:
        """A read-your-writes token: the primary's WAL insert position *after* your commit.

        Call it once the ``write()`` block has exited (committed), then pass it to
        ``read(lsn=...)``. ``None`` in embedded mode or without replicas (reads use the primary).
        """
        if self.embedded or not self.replicas:
            return None
        try:
            async with self.primary.engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                value = (await conn.execute(_CURRENT_SQL)).scalar()
        except _DRIVER_ERRORS as exc:
            if sqlstate_of(exc) == "55000":  # "recovery is in progress"
                await self.primary_read_only("primary is in recovery (demoted)")
            raise self._wrap(exc, "current_lsn on primary") from exc
        return str(value)

    # ------------------------------------------------------------------ ORM

    def session(self, *, lsn: str | None = None, primary: bool = False,
                **options: Any) -> AsyncSession:
        """A routed ``AsyncSession``: queries on a replica, flushes and DML on the primary.

        Once the session has written, or for ``SELECT ... FOR UPDATE``/raw ``text()``, it stays
        on the primary; ``primary=True`` pins it there from the start.
        """
        from fleetkit.db.session import RoutedSession

        options.setdefault("expire_on_commit", False)
        return AsyncSession(sync_session_class=RoutedSession, router=self,
                            token=parse_lsn(lsn) if lsn and not self.embedded else None,
                            pinned=primary, **options)

    def pick_replica(self, token: int | None) -> Node | None:
        """A healthy replica for a synchronous caller (the ORM session), no live LSN check."""
        node = self._pick(token, set())
        if node is None or (token is not None and (node.replay_lsn or 0) < token):
            return None
        return node

    # ------------------------------------------------------------------ health

    def pools(self) -> list[PoolStats]:
        return health.pools(self.primary, self.replicas)

    async def health(self) -> ComponentStatus:
        """Overall status from the monitor's last check (runs one if none is recent)."""
        return await health.overall_health(self.primary, self.replicas,
                                           interval=self.monitor.interval,
                                           timeout=self.monitor.timeout, check=self.monitor.check)

    def health_checks(self) -> dict[str, ComponentStatus]:
        """One status per pool: ``write`` and ``read:<host:port>`` (cached state, no I/O)."""
        return health.health_checks(self.primary, self.replicas)

    # ------------------------------------------------------------------ errors

    def __repr__(self) -> str:
        return (f"Database({redact_url(self.primary.url.render_as_string(False))!r}, "
                f"replicas={[r.name for r in self.replicas]})")
