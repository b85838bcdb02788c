"""orders remember evidence of payment in full and the quantities of their version; order
lines count their edits

Revision ID: 0005_orders_paid
Revises: 0004_orders_history
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_orders_paid"
down_revision = "0004_orders_history"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "orders_seen",
        sa.Column("paid_in_full", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("orders_seen", sa.Column("fingerprint", sa.String(64), nullable=True))
    op.add_column(
        "order_lines",
        sa.Column("changes", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
    )


def downgrade() -> None:
    with op.batch_alter_table("order_lines") as batch:
        batch.drop_column("changes")
    with op.batch_alter_table("orders_seen") as batch:
        batch.drop_column("fingerprint")
        batch.drop_column("paid_in_full")
