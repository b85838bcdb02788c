"""reported levels ordered by the platform's time, paced destination writes

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("sync_state", sa.Column("reported_at", sa.BigInteger(), nullable=True))
    op.add_column(
        "sync_state",
        sa.Column("needs_read", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("sync_state", sa.Column("writing", sa.BigInteger(), nullable=True))
    op.add_column(
        "sync_state",
        sa.Column("unconfirmed", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column(
        "source_dirty",
        sa.Column("must_read", sa.Boolean(), nullable=False, server_default=sa.true()),
    )
    op.add_column(
        "connections", sa.Column("flush_not_before", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("connections") as batch:
        batch.drop_column("flush_not_before")
    with op.batch_alter_table("source_dirty") as batch:
        batch.drop_column("must_read")
    with op.batch_alter_table("sync_state") as batch:
        batch.drop_column("unconfirmed")
        batch.drop_column("writing")
        batch.drop_column("needs_read")
        batch.drop_column("reported_at")
