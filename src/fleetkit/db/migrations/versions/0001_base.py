"""fleetkit base: the fleetkit_meta key/value table.

Revision ID: 0001_base
Revises:
Create Date: 2025-01-01

Later revisions chain on this one: ``0002_audit`` (down_revision "0001_base"), then ``0003_app``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001_base"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "fleetkit_meta",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
    )
    op.bulk_insert(
        sa.table("fleetkit_meta", sa.column("key", sa.String), sa.column("value", sa.Text)),
        [{"key": "schema", "value": "fleetkit"}],
    )


def downgrade() -> None:
    op.drop_table("fleetkit_meta")
