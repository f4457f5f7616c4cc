"""Engine construction and driver-error classification.

Every pool has a size, no overflow and an acquire timeout, so a burst waits at most
``pool_timeout`` seconds for a connection instead of opening more than PostgreSQL allows.
"""

from __future__ import annotations

import uuid
import weakref
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool, StaticPool

from fleetkit.db.urls import is_sqlite

__all__ = ["READ_ONLY_SQLSTATES", "UNAVAILABLE_SQLSTATES", "PoolStats", "discard_connections",
           "is_connection_error", "is_pool_timeout", "is_read_only_error", "make_engine",
           "pool_stats", "sqlstate_of"]


@dataclass(frozen=True, slots=True)
class PoolStats:
    name: str
    size: int
    in_use: int


def _unique_statement_name() -> str:
    # Behind PgBouncer (transaction mode) a server connection is shared by many clients, so
    # asyncpg's default sequential names (__asyncpg_stmt_1__) would collide.
    return f"__asyncpg_{uuid.uuid4().hex}__"


class _Generations:
    """Which connections of one engine may still be handed out, through public pool events.

    Every new DBAPI connection is stamped (``connect``) with the engine's current generation;
    :func:`discard_connections` starts a new one, and a checkout of an older connection raises
    ``DisconnectionError``, which makes the pool invalidate it and connect afresh on the same
    checkout (SQLAlchemy's documented pessimistic-disconnect hook). Connections checked out at
    that moment finish their work and are replaced at their next checkout: none is orphaned.
    """

    __slots__ = ("current",)

    def __init__(self) -> None:
        self.current = 0

    def on_connect(self, dbapi_connection: Any, record: Any) -> None:
        record.info["fleetkit_generation"] = self.current

    def on_checkout(self, dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if record.info.get("fleetkit_generation") != self.current:
            raise DisconnectionError("pooled connection was discarded (server failed over)")
        # A server that stopped (replica restart, failover) closes idle pooled connections; the
        # driver notices without a round trip, so drop them at checkout instead of failing the
        # first statement of the next request.
        raw = getattr(dbapi_connection, "_connection", None)
        if raw is not None and raw.is_closed():
            raise DisconnectionError("pooled connection was closed by the server")


_GENERATIONS: weakref.WeakKeyDictionary[Any, _Generations] = weakref.WeakKeyDictionary()


def discard_connections(engine: AsyncEngine) -> None:
    """Never hand out a connection of ``engine`` made before now (not a graceful shutdown:
    idle ones are replaced at their next checkout, busy ones after they are returned)."""
    generations = _GENERATIONS.get(engine.sync_engine)
    if generations is not None:
        generations.current += 1


def _sqlite_pragmas(dbapi_connection: Any, record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run while one writer commits; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: URL, *, pool_size: int, pool_timeout: float, connect_timeout: float,
                statement_cache_size: int, application_name: str,
                engine_options: dict[str, Any] | None = None, probe: bool = False) -> AsyncEngine:
    """An ``AsyncEngine`` with a bounded pool for ``url`` (already normalised).

    ``probe=True``: no pool, for the health monitor's checks.
    """
    options: dict[str, Any] = dict(engine_options or {})
    if is_sqlite(url):
        memory = url.database in (None, "", ":memory:")
        if memory:
            options.setdefault("poolclass", StaticPool)
        else:
            options.setdefault("pool_size", pool_size)
            options.setdefault("max_overflow", 0)
            options.setdefault("pool_timeout", pool_timeout)
        # SQLite's busy timeout: how long a writer waits for the file lock.
        options.setdefault("connect_args", {"timeout": pool_timeout})
        engine = create_async_engine(url, **options)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    connect_args: dict[str, Any] = {
        "timeout": connect_timeout,
        "statement_cache_size": statement_cache_size,           # asyncpg's own cache
        "prepared_statement_cache_size": statement_cache_size,  # SQLAlchemy's asyncpg cache
        "server_settings": {"application_name": application_name},
    }
    if statement_cache_size == 0:
        connect_args["prepared_statement_name_func"] = _unique_statement_name
    connect_args.update(options.pop("connect_args", {}))
    if probe:
        # The monitor connects afresh each check: it must not wait behind a busy request pool,
        # and a new connection is the real test of "is this server back".
        options = {"poolclass": NullPool}
    else:
        options.setdefault("pool_size", pool_size)
        options.setdefault("max_overflow", 0)
        options.setdefault("pool_timeout", pool_timeout)
    engine = create_async_engine(url, connect_args=connect_args, **options)
    generations = _GENERATIONS[engine.sync_engine] = _Generations()
    event.listen(engine.sync_engine, "connect", generations.on_connect)
    event.listen(engine.sync_engine, "checkout", generations.on_checkout)
    return engine


def pool_stats(name: str, engine: AsyncEngine) -> PoolStats:
    pool = engine.sync_engine.pool
    size = getattr(pool, "size", None)
    checked_out = getattr(pool, "checkedout", None)
    return PoolStats(
        name,
        int(size()) if callable(size) else 1,
        int(checked_out()) if callable(checked_out) else 0,
    )


def sqlstate_of(exc: BaseException) -> str | None:
    """The PostgreSQL SQLSTATE behind a (wrapped) driver error, if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        code = getattr(current, "sqlstate", None)
        if isinstance(code, str):
            return code
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return None


def is_pool_timeout(exc: BaseException) -> bool:
    return isinstance(exc, PoolTimeout)


#: SQLSTATEs (exact codes or class prefixes) that mean "this server cannot serve now; another
#: one may": the read is retried on another replica or the primary, a write answers 503
#: (DatabaseUnavailable), exactly like a refused connection.
#:
#: - ``08``: connection exceptions (08000, 08003, 08006 ...; PgBouncer's "no more connections"
#:   is 08P01);
#: - ``53``: insufficient resources (53300 too_many_connections, 53200 out_of_memory, 53100
#:   disk_full, 53400 configuration_limit_exceeded);
#: - ``57P``: operator intervention on the server process: 57P01 admin_shutdown, 57P02
#:   crash_shutdown, 57P03 cannot_connect_now (starting up or shutting down), 57P04
#:   database_dropped, 57P05 idle_session_timeout. Not 57014 query_canceled: that was the
#:   statement, not the server.
#:
#: ``25006`` read_only_sql_transaction (a write on a demoted primary) and ``55000`` from
#: ``pg_current_wal_insert_lsn()`` during recovery are handled where writes run
#: (:data:`READ_ONLY_SQLSTATES`): they mean the *primary* cannot serve writes now.
UNAVAILABLE_SQLSTATES: tuple[str, ...] = ("08", "53", "57P")
#: A write reached a server that is (now) a standby: 25006 read_only_sql_transaction.
READ_ONLY_SQLSTATES: frozenset[str] = frozenset({"25006"})


def is_connection_error(exc: BaseException) -> bool:
    """True when the server is unreachable, dropped the connection or cannot serve now
    (:data:`UNAVAILABLE_SQLSTATES`): retry elsewhere, or answer 503."""
    if isinstance(exc, PoolTimeout):
        return False
    if isinstance(exc, OSError | TimeoutError | DisconnectionError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    code = sqlstate_of(exc)
    if code is not None and code.startswith(UNAVAILABLE_SQLSTATES):
        return True
    name = type(getattr(exc, "orig", None) or exc).__name__
    return name in {"ConnectionDoesNotExistError", "InterfaceError", "ConnectionFailureError"} \
        and "closed" in str(exc).lower()


def is_read_only_error(exc: BaseException) -> bool:
    """True when a write was refused because the server is a standby (a demoted primary)."""
    return sqlstate_of(exc) in READ_ONLY_SQLSTATES
