"""Tables of the reference service (SQLAlchemy Core: same code on PostgreSQL and SQLite)."""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ["items", "metadata", "users"]

metadata = sa.MetaData()

users = sa.Table(
    "app_users", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("role", sa.String(16), nullable=False, server_default="user"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
              server_default=sa.func.now()),
)

items = sa.Table(
    "app_items", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("owner_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
              sa.ForeignKey("app_users.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("body", sa.Text(), nullable=False, server_default=""),
    sa.Column("version", sa.Integer(), nullable=False, server_default="1"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
              server_default=sa.func.now()),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
              server_default=sa.func.now()),
)
