"""The reference service's Alembic revisions, chained on fleetkit's own (``fleetkit.db``).

``versions/`` is an extra Alembic version location: :func:`migrate` runs the library's revisions
(``0001_base``, ``0002_audit``) and these (``0003_app`` ...) in one chain, under the same lock.
``fleetkit migrate`` (the reference service's CLI) runs this; the library alone
(``fleetkit.db.migrate``) knows nothing of these tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL

from fleetkit.db.migrate import MigrationResult
from fleetkit.db.migrate import head_revision as _head_revision
from fleetkit.db.migrate import migrate as _migrate

__all__ = ["VERSIONS", "head_revision", "migrate"]

VERSIONS = Path(__file__).resolve().parent / "versions"


async def migrate(url: str | URL, **options: Any) -> MigrationResult:
    """``fleetkit.db.migrate`` with the reference service's revisions included."""
    return await _migrate(url, version_locations=[VERSIONS], **options)


def head_revision() -> str | None:
    """The head of the library + reference service chain."""
    return _head_revision(version_locations=[VERSIONS])
