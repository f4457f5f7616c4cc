"""Audit log storage: partitioned audit_events, audit_batches hash chain, append-only triggers.

Revision ID: 0002_audit
Revises: 0001_base
Create Date: 2025-01-01

The DDL lives in ``fleetkit.audit.schema`` (one source for migrations and tests). On SQLite
(embedded mode) the same tables are created without partitions.
"""

from __future__ import annotations

from alembic import op

revision: str = "0002_audit"
down_revision: str | None = "0001_base"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        from fleetkit.audit.schema import ddl_statements, default_months, partition_ddl

        for stmt in ddl_statements("public"):
            bind.exec_driver_sql(stmt)
        for month in default_months():
            bind.exec_driver_sql(partition_ddl(month, "public"))
    else:
        from fleetkit.audit.sink import SQLITE_DDL

        for stmt in SQLITE_DDL:
            bind.exec_driver_sql(stmt)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        from fleetkit.audit.schema import drop_statements

        for stmt in drop_statements("public"):
            bind.exec_driver_sql(stmt)
    else:
        for table in ("audit_events", "audit_batches"):
            bind.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
