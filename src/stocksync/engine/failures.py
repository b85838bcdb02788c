"""A job that fails because a platform did tells the store's activity log why, each time.

The queue retries it with backoff and, after its last attempt, logs it as given up (see
``jobs/retry.py``); until then a merchant whose store cannot be reached would see nothing but
levels that do not move. Each failed attempt is logged against the store the job works for,
with the platform's reason and what happens next (B22)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from stocksync.domain.ports import PlatformError
from stocksync.engine.runtime import Runtime
from stocksync.jobs.queue import Handler, JobContext
from stocksync.storage import activity
from stocksync.storage.tables import connections, inbox, stores

# What each job does, for a merchant reading the log.
DOING = {
    "refresh_source": "reading the source's levels",
    "flush_destination": "writing levels to the destination",
    "process_event": "applying an order change",
    "apply_ledger": "applying sales and restocks to the source",
    "reconcile": "reconciling levels",
    "sync_order": "reading an order",
    "backfill_orders": "looking for orders whose webhooks were missed",
    "refresh_locations": "reading the store's locations",
    "periodic": "running the periodic checks",
}


async def store_of_job(rt: Runtime, args: Mapping[str, Any]) -> int | None:
    """The store a job works for, from its arguments (identities only)."""
    async with rt.db.connect() as conn:
        if "store_id" in args:
            found = await conn.scalar(select(stores.c.id).where(stores.c.id == args["store_id"]))
        elif "connection_id" in args:
            found = await conn.scalar(
                select(connections.c.destination_store_id).where(
                    connections.c.id == args["connection_id"]
                )
            )
        elif "inbox_id" in args:
            found = await conn.scalar(
                select(stores.c.id)
                .join(
                    inbox,
                    (inbox.c.platform == stores.c.platform)
                    & (inbox.c.store_ref == stores.c.external_id),
                )
                .where(inbox.c.id == args["inbox_id"])
            )
        else:
            found = None
    return int(found) if found is not None else None


async def store_of_dead_letter(conn: AsyncConnection, args: Mapping[str, Any]) -> int | None:
    """Whose activity log shows a job given up (``jobs.retry.StoreOfJob``), in the queue's
    transaction: a job naming an existing store (``store_id``) is that store's, one naming a
    connection is its destination's (what it writes to); any other job is system-wide."""
    candidate = args.get("store_id")
    via_connection = args.get("connection_id")
    if isinstance(candidate, int) and not isinstance(candidate, bool):
        found = await conn.scalar(select(stores.c.id).where(stores.c.id == candidate))
    elif isinstance(via_connection, int) and not isinstance(via_connection, bool):
        found = await conn.scalar(
            select(connections.c.destination_store_id).where(connections.c.id == via_connection)
        )
    else:
        found = None
    return int(found) if found is not None else None


def reporting_failures(rt: Runtime, task: str, handler: Handler) -> Handler:
    """``handler``, logging each failed attempt caused by a platform before it is retried."""

    async def run(ctx: JobContext, args: dict[str, Any]) -> None:
        try:
            await handler(ctx, args)
        except PlatformError as exc:
            if ctx.attempt < ctx.max_attempts:  # the last one is logged as given up
                await _record(rt, ctx, task, args, exc)
            raise

    return run


async def _record(
    rt: Runtime, ctx: JobContext, task: str, args: Mapping[str, Any], exc: PlatformError
) -> None:
    store_id = await store_of_job(rt, args)
    async with rt.db.begin() as conn:
        await activity.record(
            conn,
            store_id=store_id,
            level="warning",
            kind="sync_attempt_failed",
            message=f"{DOING.get(task, task)} failed: {exc}; trying again "
            f"(attempt {ctx.attempt} of {ctx.max_attempts})",
            details={
                "task": task,
                "args": dict(args),
                "job_id": ctx.job_id,
                "error": type(exc).__name__,
            },
        )
