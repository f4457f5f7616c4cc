"""Reference service tables: app_users, app_items (frozen DDL).

Revision ID: 0003_app
Revises: 0002_audit

It repeats the tables of ``fleetkit.app.models`` on purpose (a duplicate finder pairs the
two files): a migration is frozen DDL and must never import the live models, or the revision
would silently change with them (it once ran ``metadata.create_all`` from the live models, so a
database migrated last year and one migrated today differed). A change to the models needs a
new revision here; tests/db/test_migrate.py compares the migrated schema with the models
(Alembic's ``compare_metadata``) and fails until one is written. Same id as before, so a
database already at ``0003_app`` is at this revision.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003_app"
down_revision: str | None = "0002_audit"
branch_labels: str | None = None
depends_on: str | None = None

# SQLite only autoincrements an INTEGER PRIMARY KEY.
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "app_users",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("email", sa.String(320), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False, server_default="user"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
    )
    op.create_table(
        "app_items",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("owner_id", _ID, sa.ForeignKey("app_users.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False, server_default=""),
        sa.Column("version", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
    )
    op.create_index("ix_app_items_owner_id", "app_items", ["owner_id"])


def downgrade() -> None:
    op.drop_index("ix_app_items_owner_id", table_name="app_items")
    op.drop_table("app_items")
    op.drop_table("app_users")
