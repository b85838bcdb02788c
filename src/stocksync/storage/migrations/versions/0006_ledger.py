"""ledger applied in recorded batches with random idempotency keys; orders still to sync

Revision ID: 0006_ledger
Revises: 0005_orders_paid
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_ledger"
down_revision = "0005_orders_paid"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_batches",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "root_store_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("key_seed", sa.String(64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("idempotency_key", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default=sa.text("'open'")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["root_store_id"],
            ["stores.id"],
            name="fk_ledger_batches_root_store_id_stores",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_batches"),
        sa.UniqueConstraint("idempotency_key", name="uq_ledger_batches_idempotency_key"),
    )
    op.create_index(
        "ix_ledger_batches_open", "ledger_batches", ["root_store_id", "status"], unique=False
    )
    op.add_column("ledger", sa.Column("batch_id", sa.BigInteger(), nullable=True))
    op.create_index("ix_ledger_batch", "ledger", ["batch_id"], unique=False)
    op.create_table(
        "orders_to_sync",
        sa.Column("store_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("order_id", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["store_id"],
            ["stores.id"],
            name="fk_orders_to_sync_store_id_stores",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("store_id", "order_id", name="pk_orders_to_sync"),
    )


def downgrade() -> None:
    op.drop_table("orders_to_sync")
    op.drop_index("ix_ledger_batch", table_name="ledger")
    with op.batch_alter_table("ledger") as batch:
        batch.drop_column("batch_id")
    op.drop_index("ix_ledger_batches_open", table_name="ledger_batches")
    op.drop_table("ledger_batches")
