"""``fleetkit admin create EMAIL``: the first admin, with a password typed or piped in; and
``fleetkit migrate`` with the reference service's own revisions (``fleetkit.app.migrations``)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from typing import Any

import sqlalchemy as sa

from fleetkit.config import Settings

__all__ = ["register"]


def register(sub: Any) -> dict[str, Any]:
    from fleetkit.app.migrations import VERSIONS
    from fleetkit.db import cli as db_cli

    handlers: dict[str, Any] = dict(db_cli.register(sub, version_locations=[VERSIONS]))
    admin = sub.add_parser("admin", help="manage admin users of the reference service")
    admin_sub = admin.add_subparsers(dest="admin_command", metavar="ACTION", required=True)
    create = admin_sub.add_parser("create", help="create an admin (or promote a user)")
    create.add_argument("email")
    create.add_argument("--password-stdin", action="store_true",
                        help="read the password from standard input instead of prompting")
    handlers["admin"] = _admin
    return handlers


def _admin(args: argparse.Namespace, settings: Settings) -> int:
    from fleetkit.app.auth import normalise_email

    try:
        email = normalise_email(args.email)  # the same address the login route will look up
    except ValueError as exc:
        print(f"fleetkit admin: {args.email!r}: {exc}", file=sys.stderr)
        return 2
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {email}: ")
        if password != getpass.getpass("again: "):
            print("fleetkit admin: passwords differ", file=sys.stderr)
            return 2
    if len(password) < 12:
        print("fleetkit admin: an admin password needs at least 12 characters", file=sys.stderr)
        return 2
    created = asyncio.run(_create(settings, email, password))
    print(f"{'created' if created else 'promoted'} admin {email}")
    return 0


async def _create(settings: Settings, email: str, password: str) -> bool:
    from fleetkit.app.migrations import migrate
    from fleetkit.app.models import users
    from fleetkit.app.passwords import hash_password
    from fleetkit.db import Database

    await migrate(settings.database_url)
    db = Database.from_settings(settings)
    try:
        hashed = await hash_password(password)
        async with db.write() as conn:
            found = (await conn.execute(sa.select(users.c.id).where(users.c.email == email))
                     ).one_or_none()
            if found is None:
                await conn.execute(users.insert().values(email=email, password_hash=hashed,
                                                         role="admin"))
                return True
            await conn.execute(users.update().where(users.c.id == found.id)
                               .values(role="admin", password_hash=hashed))
            return False
    finally:
        await db.aclose()
