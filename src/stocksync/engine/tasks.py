"""The engine's job handlers, registered under their task names."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from stocksync.engine import schedule
from stocksync.engine.failures import reporting_failures
from stocksync.engine.inventory import flush_destination, grace_ended, refresh_source
from stocksync.engine.ledger import apply_ledger
from stocksync.engine.locations import refresh_locations
from stocksync.engine.orders import backfill_orders, process_event, sync_order
from stocksync.engine.periodic import PERIODIC, run_periodic
from stocksync.engine.reconcile import run_reconcile
from stocksync.engine.runtime import Runtime
from stocksync.jobs.queue import Handler, JobContext, TaskRegistry


def build_registry(rt: Runtime, periodic_interval: timedelta | None = None) -> TaskRegistry:
    """Every engine job's handler; ``periodic_interval`` defaults to the runtime's."""
    registry = TaskRegistry()
    interval = periodic_interval or rt.periodic_interval

    async def periodic(_ctx: JobContext, args: dict[str, Any]) -> None:
        await run_periodic(rt, int(args["store_id"]), interval)

    async def refresh(_ctx: JobContext, args: dict[str, Any]) -> None:
        await refresh_source(rt, int(args["store_id"]))

    async def flush(_ctx: JobContext, args: dict[str, Any]) -> None:
        await flush_destination(rt, int(args["connection_id"]))

    async def grace(_ctx: JobContext, args: dict[str, Any]) -> None:
        await grace_ended(rt, int(args["connection_id"]))

    async def process(_ctx: JobContext, args: dict[str, Any]) -> None:
        await process_event(rt, int(args["inbox_id"]))

    async def apply(_ctx: JobContext, args: dict[str, Any]) -> None:
        await apply_ledger(rt, int(args["store_id"]))

    async def reconcile(_ctx: JobContext, args: dict[str, Any]) -> None:
        await run_reconcile(rt, int(args["store_id"]))

    async def order(_ctx: JobContext, args: dict[str, Any]) -> None:
        await sync_order(rt, int(args["store_id"]), str(args["order_id"]))

    async def backfill(_ctx: JobContext, args: dict[str, Any]) -> None:
        await backfill_orders(rt, int(args["store_id"]))

    async def locations(_ctx: JobContext, args: dict[str, Any]) -> None:
        await refresh_locations(rt, int(args["store_id"]))

    handlers: dict[str, Handler] = {
        PERIODIC: periodic,
        schedule.REFRESH_LOCATIONS: locations,
        schedule.SYNC_ORDER: order,
        schedule.BACKFILL_ORDERS: backfill,
        schedule.REFRESH_SOURCE: refresh,
        schedule.FLUSH_DESTINATION: flush,
        schedule.GRACE_ENDED: grace,
        schedule.PROCESS_EVENT: process,
        schedule.APPLY_LEDGER: apply,
        schedule.RECONCILE: reconcile,
    }
    for name, handler in handlers.items():
        registry.register(name, reporting_failures(rt, name, handler))
    return registry
