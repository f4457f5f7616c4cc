"""``fleetkit migrate``: apply Alembic migrations (advisory-locked, safe from every pod).

The reference service's CLI registers it with its own revisions included
(``fleetkit.app.cli``: ``register(sub, version_locations=[fleetkit.app.migrations.VERSIONS])``),
so this module imports nothing from the app.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from fleetkit.config import Settings, redact_url
from fleetkit.errors import FleetkitError

__all__ = ["register"]


def _migrate(args: argparse.Namespace, settings: Settings, *,
             version_locations: Sequence[str | Path] = ()) -> int:
    from fleetkit.db.migrate import migrate

    url = args.url or settings.database_url
    try:
        result = asyncio.run(migrate(url, revision=args.revision, lock_timeout=args.lock_timeout,
                                     version_locations=version_locations))
    except FleetkitError as exc:
        print(f"fleetkit migrate: {exc}", file=sys.stderr)
        return 1
    state = "applied" if result.applied else "up to date"
    print(f"fleetkit migrate: {redact_url(url)} {result.before or 'base'} -> "
          f"{result.after or 'base'} ({state}; "
          f"waited {result.lock_wait_seconds:.2f}s for the lock)")
    return 0


def register(sub: Any, *, version_locations: Sequence[str | Path] = ()
             ) -> dict[str, Callable[[argparse.Namespace, Settings], int]]:
    """The ``migrate`` command; ``version_locations``: an application's revisions too."""
    parser = sub.add_parser("migrate", help="apply database migrations (Alembic upgrade head)")
    parser.add_argument("--url", default=None, help="database URL (default DATABASE_URL)")
    parser.add_argument("--revision", default="head", help="target revision (default head)")
    parser.add_argument("--lock-timeout", type=float, default=300.0,
                        help="seconds to wait for another pod's migration (default 300)")
    return {"migrate": partial(_migrate, version_locations=version_locations)}
