"""``fleetkit migrate``: many processes at once on PostgreSQL (advisory lock) and on SQLite;
the reference service's revisions (``fleetkit.app.migrations``) chained on the library's, as
frozen DDL that matches the models, and databases created by the old chain."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine

import fleetkit.db
from fleetkit.app.migrations import head_revision, migrate
from fleetkit.errors import DatabaseError
from tests.support import PG_PRIMARY_URL, ROOT

ADMIN_URL = PG_PRIMARY_URL.replace("postgresql://", "postgresql+asyncpg://")


def _run_many(url: str, count: int) -> list[subprocess.CompletedProcess[str]]:
    """Start ``count`` ``fleetkit migrate`` processes together and wait for all (bounded)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_")}
    procs = [subprocess.Popen([sys.executable, "-m", "fleetkit.cli", "migrate", "--url", url],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(count)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=90)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


@pytest.fixture
async def scratch_database() -> AsyncIterator[str]:
    """A new, empty PostgreSQL database (dropped afterwards): migrations never touch shared ones."""
    name = f"fk_mig_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f"CREATE DATABASE {name} TEMPLATE template0"))
        yield PG_PRIMARY_URL.rsplit("/", 1)[0] + f"/{name}"
        async with admin.connect() as conn:
            await conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    finally:
        await admin.dispose()


def _check_outcome(results: list[subprocess.CompletedProcess[str]]) -> None:
    assert [r.returncode for r in results] == [0] * len(results), [r.stderr for r in results]
    applied = [r.stdout for r in results if "(applied;" in r.stdout]
    current = [r.stdout for r in results if "(up to date;" in r.stdout]
    # Exactly one process migrated; the others waited for it and found the schema at head.
    assert len(applied) == 1 and len(current) == len(results) - 1, [r.stdout for r in results]
    assert f"base -> {head_revision()}" in applied[0]


async def test_concurrent_migrate_on_postgres(scratch_database: str) -> None:
    results = _run_many(scratch_database, 4)
    _check_outcome(results)
    engine = create_async_engine(scratch_database.replace("postgresql://", "postgresql+asyncpg://"))
    try:
        async with engine.connect() as conn:
            versions = (await conn.execute(text("SELECT version_num FROM alembic_version")))
            assert versions.scalars().all() == [head_revision()]
            meta = (await conn.execute(text("SELECT value FROM fleetkit_meta WHERE key='schema'")))
            assert meta.scalar() == "fleetkit"
    finally:
        await engine.dispose()
    again = await migrate(scratch_database)
    assert not again.applied and again.after == head_revision()


async def test_concurrent_migrate_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    _check_outcome(_run_many(url, 3))
    result = await migrate(url)
    assert result.before == result.after == head_revision()


def test_revision_chain_has_one_head_starting_at_base() -> None:
    from alembic.script import ScriptDirectory

    from fleetkit.app.migrations import VERSIONS
    from fleetkit.db.migrate import alembic_config

    for cfg in (alembic_config(), alembic_config(version_locations=[VERSIONS])):
        script = ScriptDirectory.from_config(cfg)
        assert len(script.get_heads()) == 1
        assert script.get_revision("0001_base").down_revision is None
    assert fleetkit.db.head_revision() == "0002_audit"  # the library alone
    assert head_revision() == "0003_app"  # with the reference service's revisions


def _schema_diff(conn: Connection) -> list[Any]:
    """Differences between the database and the reference service's models (app tables only)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from fleetkit.app.models import metadata

    def only_app(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        table = obj if type_ == "table" else getattr(obj, "table", None)
        return table is None or str(getattr(table, "name", name)).startswith("app_")

    # Server defaults compared on PostgreSQL only: SQLite reflects '' as "''" (a false diff).
    ctx = MigrationContext.configure(conn, opts={
        "include_object": only_app,
        "compare_server_default": conn.dialect.name == "postgresql"})
    return list(compare_metadata(ctx, metadata))


async def _diff(url: str) -> list[Any]:
    engine = create_async_engine(fleetkit.db.normalize_url(url))
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_schema_diff)
    finally:
        await engine.dispose()


async def _tables(url: str) -> set[str]:
    engine = create_async_engine(fleetkit.db.normalize_url(url))
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))
    finally:
        await engine.dispose()


async def test_frozen_app_revision_matches_the_models_on_postgres(scratch_database: str) -> None:
    result = await migrate(scratch_database)
    assert result.applied and result.after == "0003_app"
    # A change to fleetkit/app/models.py without a new revision fails here.
    assert await _diff(scratch_database) == []


async def test_frozen_app_revision_matches_the_models_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    assert (await migrate(url)).after == "0003_app"
    assert await _diff(url) == []


async def test_library_alone_creates_no_app_tables(scratch_database: str) -> None:
    result = await fleetkit.db.migrate(scratch_database)
    assert result.after == "0002_audit"
    tables = await _tables(scratch_database)
    assert "audit_events" in tables and not {t for t in tables if t.startswith("app_")}
    # The app's revisions then chain on the library's head.
    upgraded = await migrate(scratch_database)
    assert (upgraded.before, upgraded.after) == ("0002_audit", "0003_app")
    assert {"app_users", "app_items"} <= await _tables(scratch_database)


async def test_database_made_by_the_old_chain_upgrades_cleanly(scratch_database: str) -> None:
    """The old 0003_app ran ``metadata.create_all`` from the models: a database it made is at
    ``0003_app`` with those tables, and is at head for the new chain (same id, same schema)."""
    from fleetkit.app.models import metadata

    await fleetkit.db.migrate(scratch_database)  # 0001_base, 0002_audit: unchanged revisions
    engine = create_async_engine(fleetkit.db.normalize_url(scratch_database))
    try:
        async with engine.begin() as conn:  # exactly what the old 0003_app did
            await conn.run_sync(metadata.create_all)
            await conn.execute(text("UPDATE alembic_version SET version_num = '0003_app'"))
    finally:
        await engine.dispose()
    result = await migrate(scratch_database)
    assert not result.applied and result.after == "0003_app"
    assert await _diff(scratch_database) == []
    # The library alone finds 0003_app among the registered applications' revisions
    # (entry points "fleetkit.migrations"): the database is at head, nothing to do.
    alone = await fleetkit.db.migrate(scratch_database)
    assert not alone.applied and alone.after == "0003_app"


async def test_unknown_revision_is_a_clear_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    await fleetkit.db.migrate(url)
    engine = create_async_engine(fleetkit.db.normalize_url(url))
    try:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = 'zz_nobody'"))
    finally:
        await engine.dispose()
    with pytest.raises(DatabaseError, match=r"zz_nobody.*version_locations"):
        await fleetkit.db.migrate(url)
