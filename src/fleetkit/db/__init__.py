"""PostgreSQL pools with read/write separation, replica balancing and failover (``fleetkit.db``).

::

    from fleetkit.db import Database
    async with Database(write_url, read_urls=[r1, r2], write_pool_size=40,
                        read_pool_size=60) as db:
        async with db.write() as conn:           # primary, one transaction, committed on exit
            await conn.execute(...)
        token = await db.current_lsn()           # read-your-writes token (after the commit)
        async with db.read(lsn=token) as conn:   # a replica that replayed it, else the primary
            ...
        rows = await db.run_read(fetch)          # same, retried elsewhere if a replica dies
        async with db.session() as session: ...  # routed ORM AsyncSession

``sqlite://`` (aiosqlite) is embedded mode: the same API on one file, no replicas.

Migrations (Alembic)
--------------------
Revisions live in ``fleetkit/db/migrations/versions/``; :func:`migrate` upgrades to head under a
PostgreSQL advisory lock (a file lock on SQLite), so every pod may run it at start-up. Revision
ids are short names chained through ``down_revision``::

    0001_base   (this package: the fleetkit_meta table)
    0002_audit  down_revision = "0001_base"   (audit log, fleetkit.audit)

An application chains its own revisions on the head from a directory of its own, passed as
``migrate(url, version_locations=[path])``: the reference service's ``0003_app``
(``down_revision = "0002_audit"``) lives in ``fleetkit/app/migrations/versions/`` and
``fleetkit migrate`` includes it; this package imports nothing from ``fleetkit.app``.

To add one, copy ``versions/0001_base.py`` to ``versions/<id>.py``, set ``revision = "<id>"`` and
``down_revision`` to the current head, and write ``upgrade()``/``downgrade()`` with
``alembic.op`` as frozen DDL (explicit columns, never ``metadata.create_all``). Keep one head:
two revisions with the same ``down_revision`` make ``migrate`` refuse to run (``alembic heads``
shows them). :func:`head_revision` names the head.
"""

from __future__ import annotations

from fleetkit.db.database import Database
from fleetkit.db.engines import PoolStats, is_connection_error, sqlstate_of
from fleetkit.db.lsn import format_lsn, parse_lsn
from fleetkit.db.migrate import MigrationResult, head_revision, migrate
from fleetkit.db.replicas import Node
from fleetkit.db.urls import normalize_url

__all__ = [
    "Database",
    "MigrationResult",
    "Node",
    "PoolStats",
    "format_lsn",
    "head_revision",
    "is_connection_error",
    "migrate",
    "normalize_url",
    "parse_lsn",
    "sqlstate_of",
]
