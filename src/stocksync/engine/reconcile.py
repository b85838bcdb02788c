"""Reconciliation (B19): compare every linked level with the source's and repair drift.

``reconcile_source`` enqueues the ``reconcile`` job, which runs under the source's refresh
lock (``refresh:<store>``) like every other read of the source's levels: a read that ran
beside a refresh could record its older answer over the refresh's newer one. The job marks
every linked item of the source for a fresh read, reads it, then marks every linked
destination variant for a forced read; the flush writes only what differs (compare-and-swap,
as always) and records each repair in the activity log (``drift_repaired``, with what it found
and what it set)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from stocksync.engine import schedule
from stocksync.engine.inventory import mark_pending, mark_source_dirty, refresh_source
from stocksync.engine.runtime import Runtime
from stocksync.storage import activity
from stocksync.storage.tables import connections, variant_links


async def _linked(conn: AsyncConnection, store_id: int) -> list[Any]:
    """(connection id, variant link id, destination store id, source item id) of every active
    link from the source."""
    return list(
        (
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
    )


async def reconcile_source(rt: Runtime, store_id: int) -> int:
    """Schedule the source's reconciliation; returns how many linked variants it compares."""
    async with rt.db.begin() as conn:
        rows = await _linked(conn, store_id)
        await activity.record(
            conn,
            store_id=store_id,
            level="info",
            kind="reconciliation",
            message=f"reconciliation started for {len(rows)} linked variants",
        )
        await schedule.reconcile(rt, conn, store_id)
    return len(rows)


async def run_reconcile(rt: Runtime, store_id: int) -> int:
    """The ``reconcile`` job's body; it holds the source's refresh lock (see the module doc).
    Returns how many linked variants were scheduled for comparison."""
    async with rt.db.begin() as conn:
        rows = await _linked(conn, store_id)
        await mark_source_dirty(rt, conn, store_id, sorted({r[3] for r in rows}))
    # Read the source now, then compare every destination, even where the source did not move.
    await refresh_source(rt, store_id)
    async with rt.db.begin() as conn:
        await mark_pending(rt, conn, [(r[0], r[1], r[2]) for r in rows], force_read=True)
    return len(rows)
