"""Periodic safety nets, as self-rescheduling jobs (the same on both queue backends).

Each active store has one ``periodic`` job waiting: it first makes sure the store's webhook
subscriptions still exist, then schedules again what the store still owes (pending ledger
rows, orders a backfill found and not yet synced: their jobs may have given up), then for a
destination it backfills orders whose webhooks never came (B17), and for a source it enqueues
its reconciliation (B19), which runs under the source's refresh lock as every read of the
source does. When it runs it schedules its
successor; the queueing lock keeps exactly one waiting per store however many workers start."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from stocksync.domain.ports import PlatformError
from stocksync.engine import schedule
from stocksync.engine.ledger import reschedule_pending
from stocksync.engine.orders import backfill_orders
from stocksync.engine.reconcile import reconcile_source
from stocksync.engine.records import load_store
from stocksync.engine.runtime import Runtime
from stocksync.engine.schedule import PERIODIC
from stocksync.engine.subscriptions import check_subscriptions
from stocksync.storage.tables import stores

__all__ = ["PERIODIC", "ensure_periodic", "run_periodic", "schedule_next"]


async def schedule_next(
    rt: Runtime, conn: AsyncConnection, store_id: int, interval: timedelta
) -> None:
    await schedule.periodic(rt, conn, store_id, rt.clock() + interval)


async def ensure_periodic(rt: Runtime, interval: timedelta) -> int:
    """Make sure every active store has its periodic job waiting; returns stores covered."""
    async with rt.db.begin() as conn:
        ids = [
            r[0] for r in await conn.execute(select(stores.c.id).where(stores.c.status == "active"))
        ]
        for store_id in ids:
            await schedule_next(rt, conn, store_id, interval)
    return len(ids)


async def run_periodic(rt: Runtime, store_id: int, interval: timedelta) -> None:
    async with rt.db.begin() as conn:
        store = await load_store(conn, store_id)
    if store is None or store.status != "active":
        return  # an uninstalled store's chain ends here; reinstalling starts a new one
    try:
        # A failed check is logged; the backfill below still catches up on what was missed.
        with contextlib.suppress(PlatformError):
            await check_subscriptions(rt, store_id)
        # Work whose job gave up (pending ledger rows, orders still to sync) runs again.
        async with rt.db.begin() as conn:
            await reschedule_pending(rt, conn, store_id)
        if store.is_destination:
            await backfill_orders(rt, store_id)
        if store.is_source:
            await reconcile_source(rt, store_id)
    finally:
        async with rt.db.begin() as conn:
            await schedule_next(rt, conn, store_id, interval)
