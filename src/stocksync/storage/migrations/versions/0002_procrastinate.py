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
    # procrastinate's schema as the installed version ships it, read from procrastinate itself
    # (as jobs/pg.py does): a migration imports nothing of stocksync above storage. Imported
    # here, on PostgreSQL only, so that SQLite migrations do not load procrastinate.
    from procrastinate.schema import SchemaManager

    bind = op.get_bind()
    exists = bind.exec_driver_sql("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").scalar()
    if not exists:
        # psycopg reads "%" as a placeholder whenever parameters (even none) are passed.
        bind.exec_driver_sql(str(SchemaManager.get_schema()).replace("%", "%%"))


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "DROP TABLE IF EXISTS procrastinate_events, procrastinate_periodic_defers, "
        "procrastinate_jobs, procrastinate_workers CASCADE"
    )
