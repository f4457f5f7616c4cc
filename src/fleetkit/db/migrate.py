"""``fleetkit migrate``: Alembic upgrade under a lock, safe when many pods start at once.

On PostgreSQL the whole upgrade runs in one transaction that first takes
``pg_advisory_xact_lock``: the first pod migrates, the others wait, then find the schema at head
and do nothing. The lock is released by the commit (or by the server if the pod dies). SQLite
(embedded mode, one host) uses an ``flock`` on a file next to the database instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib.metadata
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from fleetkit.db.urls import is_sqlite, normalize_url
from fleetkit.errors import DatabaseError

__all__ = ["ENTRY_POINT_GROUP", "LOCK_KEY", "MIGRATIONS", "MigrationResult", "alembic_config",
           "head_revision", "migrate", "registered_version_locations"]

log = logging.getLogger("fleetkit.db")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: Advisory lock key: "fleetkit" as a 64-bit integer, shared by every fleetkit process.
LOCK_KEY = int.from_bytes(b"fleetkit", "big")
#: Entry points naming applications' revision directories (``fleetkit.app.migrations:VERSIONS``).
ENTRY_POINT_GROUP = "fleetkit.migrations"


@dataclass(frozen=True, slots=True)
class MigrationResult:
    before: str | None
    after: str | None
    lock_wait_seconds: float

    @property
    def applied(self) -> bool:
        return self.before != self.after


def alembic_config(url: str | URL | None = None, *,
                   version_locations: Sequence[str | Path] = ()) -> Config:
    """An Alembic ``Config`` for fleetkit's migrations (no ``alembic.ini`` needed).

    ``version_locations``: more revision directories chained on fleetkit's own (an
    application's tables, e.g. ``fleetkit.app.migrations.VERSIONS``), run in one upgrade.
    """
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    locations = [MIGRATIONS / "versions", *(Path(p) for p in version_locations)]
    cfg.set_main_option("version_locations",
                        os.pathsep.join(str(p) for p in locations).replace("%", "%%"))
    if url is not None:
        rendered = normalize_url(url).render_as_string(hide_password=False)
        cfg.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return cfg


def head_revision(*, version_locations: Sequence[str | Path] = ()) -> str | None:
    """The single head revision id (Alembic raises if the chain has several heads)."""
    cfg = alembic_config(version_locations=version_locations)
    return ScriptDirectory.from_config(cfg).get_current_head()


def registered_version_locations() -> list[Path]:
    """Revision directories that installed applications declare (entry points
    ``fleetkit.migrations``); one whose package cannot be imported is skipped."""
    found = []
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            found.append(Path(entry.load()))
        except ImportError as exc:
            log.debug("migrations of %s unavailable: %s", entry.name, exc)
    return found


def _knows(cfg: Config, rev: str) -> bool:
    try:
        return ScriptDirectory.from_config(cfg).get_revision(rev) is not None
    except CommandError:
        return False


def _upgrade(conn: Connection, cfg: Config, revision: str,
             locations: Sequence[str | Path]) -> tuple[str | None, str | None]:
    before = MigrationContext.configure(conn).get_current_revision()
    if before is not None and not _knows(cfg, before):
        # Already at an application's revision (the reference service's 0003_app, say):
        # include the registered applications' revisions, so "head" is theirs.
        given = {Path(p).resolve() for p in locations}
        extra = [p for p in registered_version_locations() if p.resolve() not in given]
        if extra:
            cfg = alembic_config(version_locations=[*locations, *extra])
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, revision)
    after = MigrationContext.configure(conn).get_current_revision()
    return before, after


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


async def migrate(url: str | URL, *, revision: str = "head", lock_timeout: float = 300.0,
                  version_locations: Sequence[str | Path] = ()) -> MigrationResult:
    """Upgrade the database at ``url`` to ``revision`` under the migration lock.

    ``version_locations``: extra revision directories (see :func:`alembic_config`). A database
    already at a revision none of them has (e.g. ``0003_app``, made by ``fleetkit migrate``) is
    upgraded with the :func:`registered_version_locations` too; if none has it either, a
    :class:`DatabaseError` names the revision.
    """
    sa_url = normalize_url(url)
    cfg = alembic_config(sa_url, version_locations=version_locations)
    engine = create_async_engine(sa_url, poolclass=NullPool)
    try:
        if is_sqlite(sa_url):
            db_file = sa_url.database
            lock = (_file_lock(Path(f"{db_file}.migrate.lock"))
                    if db_file and db_file != ":memory:" else contextlib.nullcontext())
            start = time.monotonic()
            # flock blocks: take it in a thread so the event loop stays responsive.
            await asyncio.to_thread(lock.__enter__)
            try:
                waited = time.monotonic() - start
                async with engine.begin() as conn:
                    before, after = await conn.run_sync(_upgrade, cfg, revision, version_locations)
            finally:
                lock.__exit__(None, None, None)
        else:
            async with engine.begin() as conn:
                await conn.execute(text(f"SET LOCAL lock_timeout = '{int(lock_timeout * 1000)}ms'"))
                start = time.monotonic()
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
                waited = time.monotonic() - start
                await conn.execute(text("SET LOCAL lock_timeout TO DEFAULT"))
                before, after = await conn.run_sync(_upgrade, cfg, revision, version_locations)
    except SQLAlchemyError as exc:
        raise DatabaseError(f"migration failed: {type(exc).__name__}: {exc}") from exc
    except CommandError as exc:  # e.g. "Can't locate revision identified by '0003_app'"
        raise DatabaseError(
            f"migration failed: {exc} (a revision of an application's own migrations? pass "
            "its directory in version_locations=, e.g. fleetkit.app.migrations.VERSIONS)"
        ) from exc
    finally:
        await engine.dispose()
    return MigrationResult(before, after, waited)
