"""Work marked to be done: source items whose level is to be taken again (``source_dirty``)
and destination variants whose level is to be written (``flush_pending``), each with its job.

Every flow marks work here (intake, orders and sales, catalog, stores, reconciliation, the
inventory jobs themselves), so this module sits below them all and imports none of them.
Rows are upserted and jobs enqueued in key order, whoever calls: two transactions taking the
same rows in different orders deadlock on PostgreSQL."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from stocksync.engine import schedule
from stocksync.engine.runtime import Runtime
from stocksync.storage.sql import upsert
from stocksync.storage.tables import connections, flush_pending, source_dirty, variant_links


async def mark_source_dirty(
    rt: Runtime,
    conn: AsyncConnection,
    store_id: int,
    item_ids: Iterable[str],
    *,
    reported: Collection[str] = (),
) -> None:
    """Schedule the source level of ``item_ids`` to be taken again. Those in ``reported`` may
    be taken from level reports; the others are read (our own adjustments, reconciliation, a
    report we could not trust). A read, once asked for, is not forgotten by later marks."""
    # In key order: two transactions upserting the same rows in different orders deadlock on
    # PostgreSQL.
    rows = [
        {"store_id": store_id, "item_id": i, "seq": 1, "must_read": i not in reported}
        for i in sorted(set(item_ids))
    ]
    if not rows:
        return
    await upsert(
        conn,
        source_dirty,
        rows,
        conflict=("store_id", "item_id"),
        update={
            "seq": source_dirty.c.seq + 1,
            "must_read": lambda s: or_(source_dirty.c.must_read, s.excluded.must_read),
        },
    )
    await schedule.refresh_source(rt, conn, store_id)


async def mark_pending(
    rt: Runtime,
    conn: AsyncConnection,
    links: Sequence[tuple[int, int, int]],
    *,
    force_read: bool = False,
    forced: Collection[tuple[int, int, int]] = (),
) -> None:
    """``links``: (connection id, variant link id, destination store id). The destination
    level is read before writing for all of them with ``force_read``, else for those in
    ``forced``."""
    if not links:
        return
    # Rows and jobs in key order, whoever calls (a webhook's transaction, a worker's): two
    # transactions upserting the same rows, or enqueueing jobs with the same queueing locks,
    # in different orders deadlock on PostgreSQL.
    links = sorted(set(links))
    await upsert(
        conn,
        flush_pending,
        [
            {
                "connection_id": c,
                "variant_link_id": v,
                "seq": 1,
                "force_read": force_read or (c, v, d) in forced,
            }
            for c, v, d in links
        ],
        conflict=("connection_id", "variant_link_id"),
        # A forced read, once asked for, survives later unforced marks.
        update={
            "seq": flush_pending.c.seq + 1,
            "force_read": lambda s: or_(flush_pending.c.force_read, s.excluded.force_read),
        },
    )
    paced = await flush_not_before(conn, {c for c, _, _ in links})
    for connection_id, destination_store_id in sorted({(c, d) for c, _, d in links}):
        await schedule.flush_destination(
            rt, conn, connection_id, destination_store_id, paced.get(connection_id)
        )


async def flush_not_before(
    conn: AsyncConnection, connection_ids: Collection[int]
) -> dict[int, datetime]:
    rows = await conn.execute(
        select(connections.c.id, connections.c.flush_not_before).where(
            connections.c.id.in_(sorted(connection_ids)),
            connections.c.flush_not_before.is_not(None),
        )
    )
    return {r[0]: r[1] for r in rows}


def _active_links_from_source() -> Any:
    return (
        select(
            variant_links.c.connection_id,
            variant_links.c.id,
            variant_links.c.destination_store_id,
            variant_links.c.source_item_id,
        )
        .join(connections, connections.c.id == variant_links.c.connection_id)
        .where(variant_links.c.status == "active", connections.c.status == "active")
    )


async def links_of_source_items(
    conn: AsyncConnection, store_id: int, item_ids: Sequence[str] | None = None
) -> list[tuple[int, int, int, str]]:
    """(connection id, variant link id, destination store id, source item id) of the source's
    active links on active connections: of ``item_ids``, or of every item when None."""
    query = _active_links_from_source().where(variant_links.c.source_store_id == store_id)
    if item_ids is not None:
        query = query.where(variant_links.c.source_item_id.in_(list(item_ids)))
    return [(r[0], r[1], r[2], r[3]) for r in await conn.execute(query)]
