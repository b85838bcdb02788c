"""sales in flight and held units lower destination targets; unexplained decreases wait

Revision ID: 0007_reopen
Revises: 0006_ledger
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_reopen"
down_revision = "0006_ledger"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("sync_state", sa.Column("read_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "sync_state",
        sa.Column("unexplained", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
    )
    op.add_column(
        "sync_state",
        sa.Column("explained", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
    )
    op.add_column("sync_state", sa.Column("lowered_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "order_holds",
        sa.Column("destination_store_id", _ID, nullable=False),
        sa.Column("order_id", sa.String(length=255), nullable=False),
        sa.Column("line_id", sa.String(length=255), nullable=False),
        sa.Column("connection_id", _ID, nullable=False),
        sa.Column("variant_link_id", _ID, nullable=False),
        sa.Column("held", sa.BigInteger(), nullable=False),
        sa.Column("taken", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["destination_store_id"],
            ["stores.id"],
            name=op.f("fk_order_holds_destination_store_id_stores"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_order_holds_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["variant_link_id"],
            ["variant_links.id"],
            name=op.f("fk_order_holds_variant_link_id_variant_links"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "destination_store_id", "order_id", "line_id", name=op.f("pk_order_holds")
        ),
    )
    op.create_index("ix_order_holds_link", "order_holds", ["variant_link_id"])
    op.create_index("ix_ledger_root_item", "ledger", ["root_store_id", "root_item_id"])


def downgrade() -> None:
    op.drop_index("ix_ledger_root_item", table_name="ledger")
    op.drop_index("ix_order_holds_link", table_name="order_holds")
    op.drop_table("order_holds")
    with op.batch_alter_table("sync_state") as batch:
        batch.drop_column("lowered_at")
        batch.drop_column("explained")
        batch.drop_column("unexplained")
        batch.drop_column("read_at")
