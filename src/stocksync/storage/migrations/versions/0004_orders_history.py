"""orders placed before a link never count; reinstalling restores suspended connections

Revision ID: 0004_orders_history
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_orders_history"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("variant_links", sa.Column("created_at", sa.DateTime(timezone=True)))
    # Existing links take the creation time of their product link (made in the same import
    # or mapping), else of their connection: the closest record there is of when each was
    # made. Lines already counted keep following their orders whatever these times say.
    op.execute(
        "UPDATE variant_links SET created_at = (SELECT product_links.created_at "
        "FROM product_links WHERE product_links.id = variant_links.product_link_id)"
    )
    op.execute(
        "UPDATE variant_links SET created_at = (SELECT connections.created_at "
        "FROM connections WHERE connections.id = variant_links.connection_id) "
        "WHERE created_at IS NULL"
    )
    # Connections suspended before this column existed resume as active when their store is
    # installed again, as the uninstall's message promised; a pause made before is not known.
    op.add_column("connections", sa.Column("suspended_from", sa.String(16)))
    op.add_column("orders_seen", sa.Column("order_created_at", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("orders_seen") as batch:
        batch.drop_column("order_created_at")
    with op.batch_alter_table("connections") as batch:
        batch.drop_column("suspended_from")
    with op.batch_alter_table("variant_links") as batch:
        batch.drop_column("created_at")
