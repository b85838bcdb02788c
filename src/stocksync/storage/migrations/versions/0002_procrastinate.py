"""procrastinate's job tables, on PostgreSQL only (SQLite uses the embedded ``jobs`` table)

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    from stocksync.jobs.pg import procrastinate_schema_sql

    bind = op.get_bind()
    exists = bind.exec_driver_sql("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").scalar()
    if not exists:
        # psycopg reads "%" as a placeholder whenever parameters (even none) are passed.
        bind.exec_driver_sql(procrastinate_schema_sql().replace("%", "%%"))


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "DROP TABLE IF EXISTS procrastinate_events, procrastinate_periodic_defers, "
        "procrastinate_jobs, procrastinate_workers CASCADE"
    )
