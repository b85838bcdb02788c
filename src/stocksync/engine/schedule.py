"""The engine's jobs: their names, their locks, and how they are enqueued.

Every job carries identities only. Locks serialise what must not run concurrently; queueing
locks coalesce bursts (a waiting job already covers the new work, since it reads the current
state when it runs)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from stocksync.engine.runtime import Runtime

REFRESH_SOURCE = "refresh_source"
FLUSH_DESTINATION = "flush_destination"
PROCESS_EVENT = "process_event"
APPLY_LEDGER = "apply_ledger"
RECONCILE = "reconcile"
SYNC_ORDER = "sync_order"
BACKFILL_ORDERS = "backfill_orders"
PERIODIC = "periodic"
REFRESH_LOCATIONS = "refresh_locations"
GRACE_ENDED = "grace_ended"


async def refresh_source(rt: Runtime, conn: AsyncConnection, store_id: int) -> None:
    """Read the source's dirty items again, after the debounce window."""
    await rt.queue.enqueue(
        conn,
        REFRESH_SOURCE,
        {"store_id": store_id},
        lock=f"refresh:{store_id}",
        queueing_lock=f"refresh:{store_id}",
        schedule_at=rt.clock() + rt.debounce,
    )


async def flush_destination(
    rt: Runtime,
    conn: AsyncConnection,
    connection_id: int,
    destination_store_id: int,
    not_before: datetime | None = None,
) -> None:
    """Write the connection's pending levels, not before ``not_before`` (writes are paced).
    One writer per destination store at a time, so that compare-and-swap values are not raced
    by ourselves."""
    await rt.queue.enqueue(
        conn,
        FLUSH_DESTINATION,
        {"connection_id": connection_id},
        lock=f"dest:{destination_store_id}",
        queueing_lock=f"flush:{connection_id}",
        schedule_at=not_before if not_before is not None and not_before > rt.clock() else None,
    )


async def grace_ended(rt: Runtime, conn: AsyncConnection, connection_id: int, at: datetime) -> None:
    """Look again at held destination decreases when their grace ends: a job of its own that
    then schedules the flush. A flush job waiting that long would hold back every flush of
    the connection (its queueing lock) and of the store (its lock) until then."""
    await rt.queue.enqueue(
        conn,
        GRACE_ENDED,
        {"connection_id": connection_id},
        queueing_lock=f"grace:{connection_id}",
        schedule_at=at if at > rt.clock() else None,
    )


async def process_event(
    rt: Runtime, conn: AsyncConnection, inbox_id: int, store_id: int, subject: str
) -> None:
    """Handle an order or refund event; events of one order run one at a time, in order."""
    await rt.queue.enqueue(
        conn,
        PROCESS_EVENT,
        {"inbox_id": inbox_id},
        lock=f"order:{store_id}:{subject}",
    )


async def apply_ledger(rt: Runtime, conn: AsyncConnection, root_store_id: int) -> None:
    """Apply the root source's pending ledger rows after the linger: the sales recorded
    meanwhile coalesce into this job, and so into one adjustment call."""
    await rt.queue.enqueue(
        conn,
        APPLY_LEDGER,
        {"store_id": root_store_id},
        lock=f"apply:{root_store_id}",
        queueing_lock=f"apply:{root_store_id}",
        schedule_at=rt.clock() + rt.apply_linger if rt.apply_linger else None,
    )


async def reconcile(rt: Runtime, conn: AsyncConnection, source_store_id: int) -> None:
    await rt.queue.enqueue(
        conn,
        RECONCILE,
        {"store_id": source_store_id},
        lock=f"refresh:{source_store_id}",
        queueing_lock=f"reconcile:{source_store_id}",
    )


async def sync_order(rt: Runtime, conn: AsyncConnection, store_id: int, order_id: str) -> None:
    """Read one order's current state from its platform and apply it."""
    await rt.queue.enqueue(
        conn,
        SYNC_ORDER,
        {"store_id": store_id, "order_id": order_id},
        lock=f"order:{store_id}:{order_id}",
        queueing_lock=f"sync-order:{store_id}:{order_id}",
    )


async def backfill_orders(rt: Runtime, conn: AsyncConnection, store_id: int) -> None:
    await rt.queue.enqueue(
        conn,
        BACKFILL_ORDERS,
        {"store_id": store_id},
        lock=f"backfill:{store_id}",
        queueing_lock=f"backfill:{store_id}",
    )


async def periodic(rt: Runtime, conn: AsyncConnection, store_id: int, at: datetime) -> None:
    """The store's safety nets (see ``engine/periodic.py``); exactly one waits per store."""
    await rt.queue.enqueue(
        conn,
        PERIODIC,
        {"store_id": store_id},
        lock=f"periodic:{store_id}",
        queueing_lock=f"periodic:{store_id}",
        schedule_at=at,
    )


async def refresh_locations(rt: Runtime, conn: AsyncConnection, store_id: int) -> None:
    """Read the store's locations again; a burst of location webhooks is one read."""
    await rt.queue.enqueue(
        conn,
        REFRESH_LOCATIONS,
        {"store_id": store_id},
        lock=f"locations:{store_id}",
        queueing_lock=f"locations:{store_id}",
    )
