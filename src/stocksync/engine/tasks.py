"""The engine's job handlers, registered under their task names."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from stocksync.engine import schedule
from stocksync.engine.inventory import flush_destination, refresh_source
from stocksync.engine.locations import refresh_locations
from stocksync.engine.orders import apply_ledger, backfill_orders, process_event, sync_order
from stocksync.engine.periodic import PERIODIC, run_periodic
from stocksync.engine.reconcile import reconcile_source
from stocksync.engine.runtime import Runtime
from stocksync.jobs.queue import JobContext, TaskRegistry


def build_registry(
    rt: Runtime, periodic_interval: timedelta = timedelta(minutes=10)
) -> TaskRegistry:
    registry = TaskRegistry()

    async def periodic(_ctx: JobContext, args: dict[str, Any]) -> None:
        await run_periodic(rt, int(args["store_id"]), periodic_interval)

    registry.register(PERIODIC, periodic)

    async def refresh(_ctx: JobContext, args: dict[str, Any]) -> None:
        await refresh_source(rt, int(args["store_id"]))

    async def flush(_ctx: JobContext, args: dict[str, Any]) -> None:
        await flush_destination(rt, int(args["connection_id"]))

    async def process(_ctx: JobContext, args: dict[str, Any]) -> None:
        await process_event(rt, int(args["inbox_id"]))

    async def apply(_ctx: JobContext, args: dict[str, Any]) -> None:
        await apply_ledger(rt, int(args["store_id"]))

    async def reconcile(_ctx: JobContext, args: dict[str, Any]) -> None:
        await reconcile_source(rt, int(args["store_id"]))

    async def order(_ctx: JobContext, args: dict[str, Any]) -> None:
        await sync_order(rt, int(args["store_id"]), str(args["order_id"]))

    async def backfill(_ctx: JobContext, args: dict[str, Any]) -> None:
        await backfill_orders(rt, int(args["store_id"]))

    async def locations(_ctx: JobContext, args: dict[str, Any]) -> None:
        await refresh_locations(rt, int(args["store_id"]))

    registry.register(schedule.REFRESH_LOCATIONS, locations)
    registry.register(schedule.SYNC_ORDER, order)
    registry.register(schedule.BACKFILL_ORDERS, backfill)
    registry.register(schedule.REFRESH_SOURCE, refresh)
    registry.register(schedule.FLUSH_DESTINATION, flush)
    registry.register(schedule.PROCESS_EVENT, process)
    registry.register(schedule.APPLY_LEDGER, apply)
    registry.register(schedule.RECONCILE, reconcile)
    return registry
