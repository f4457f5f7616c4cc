"""``fleetkit migrate``: many processes at once on PostgreSQL (advisory lock) and on SQLite."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from fleetkit.db import head_revision, migrate
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

    from fleetkit.db.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1
    assert script.get_revision("0001_base").down_revision is None
