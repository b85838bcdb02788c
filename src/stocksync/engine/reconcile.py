"""Reconciliation (B19): compare every linked level with the source's and repair drift.

It marks every linked item of a source for a fresh read and every linked destination variant
for a forced read; the flush then writes only what differs and records each repair in the
activity log (``drift_repaired``, with what it found and what it set)."""

from __future__ import annotations

from sqlalchemy import select

from stocksync.engine.inventory import mark_pending, mark_source_dirty, refresh_source
from stocksync.engine.runtime import Runtime
from stocksync.storage import activity
from stocksync.storage.tables import connections, variant_links


async def reconcile_source(rt: Runtime, store_id: int) -> int:
    """Returns how many linked variants were scheduled for comparison."""
    async with rt.db.begin() as conn:
        rows = (
            await conn.execute(
                select(
                    variant_links.c.connection_id,
                    variant_links.c.id,
                    variant_links.c.destination_store_id,
                    variant_links.c.source_item_id,
                )
                .join(connections, connections.c.id == variant_links.c.connection_id)
                .where(
                    variant_links.c.source_store_id == store_id,
                    variant_links.c.status == "active",
                    connections.c.status == "active",
                )
            )
        ).all()
        await mark_source_dirty(rt, conn, store_id, sorted({r[3] for r in rows}))
        await activity.record(
            conn,
            store_id=store_id,
            level="info",
            kind="reconciliation",
            message=f"reconciliation started for {len(rows)} linked variants",
        )
    # Read the source now, then compare every destination, even where the source did not move.
    await refresh_source(rt, store_id)
    async with rt.db.begin() as conn:
        await mark_pending(rt, conn, [(r[0], r[1], r[2]) for r in rows], force_read=True)
    return len(rows)
