"""Reference service tables: app_users, app_items.

Revision ID: 0003_app
Revises: 0002_audit
"""

from __future__ import annotations

from alembic import op

revision: str = "0003_app"
down_revision: str | None = "0002_audit"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    from fleetkit.app.models import metadata

    metadata.create_all(op.get_bind())


def downgrade() -> None:
    from fleetkit.app.models import metadata

    metadata.drop_all(op.get_bind())
