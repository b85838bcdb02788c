"""Inbound events: recorded once in the inbox, their state change and jobs in the same
transaction (the data path's first step, before the platform is answered)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from stocksync.domain.codec import encode_event
from stocksync.domain.events import (
    InboundEvent,
    LevelChanged,
    OrderEdited,
    OrderSeen,
    ProductChanged,
    ProductDeleted,
    RefundSeen,
)
from stocksync.domain.levels import plausible_quantity
from stocksync.engine import crash, schedule
from stocksync.engine.inventory import (
    links_of_source_items,
    mark_destination_drift,
    mark_source_dirty,
)
from stocksync.engine.records import StoreRecord, find_store
from stocksync.engine.runtime import Runtime
from stocksync.storage import activity
from stocksync.storage.sql import insert_ignore
from stocksync.storage.tables import inbox

Outcome = Literal["recorded", "duplicate", "unknown_store", "ignored", "rejected"]


@dataclass(frozen=True)
class IngestResult:
    outcome: Outcome
    inbox_id: int | None = None


async def ingest(
    rt: Runtime,
    *,
    platform: str,
    store_ref: str,
    event_id: str,
    topic: str,
    event: InboundEvent | None,
    payload: str | bytes,
) -> IngestResult:
    """Record one delivery. A repeated ``event_id`` is a duplicate and has no second effect.

    ``event`` is the adapter's reading of ``payload``; None when the payload could not be read
    (it is kept for inspection and reported)."""
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
    async with rt.db.begin() as conn:
        row = await insert_ignore(
            conn,
            inbox,
            {
                "platform": platform,
                "store_ref": store_ref,
                "event_id": event_id,
                "topic": topic,
                "payload": text,
                "event": encode_event(event) if event is not None else None,
                "status": "pending",
                "received_at": rt.clock(),
            },
            conflict=("platform", "store_ref", "event_id"),
            returning=("id",),
        )
        if row is None:
            return IngestResult("duplicate")
        inbox_id: int = row[0]
        store = await find_store(conn, platform, store_ref)
        if store is None:
            await _finish(conn, inbox_id, "ignored", "unknown store")
            await activity.record(
                conn,
                store_id=None,
                level="warning",
                kind="unknown_store",
                message=f"a {topic} event arrived for {store_ref}, which is not installed; "
                "it was ignored",
                details={"platform": platform, "store": store_ref, "event_id": event_id},
            )
            return IngestResult("unknown_store", inbox_id)
        if event is None:
            await _finish(conn, inbox_id, "failed", "unreadable payload")
            await activity.record(
                conn,
                store_id=store.id,
                level="error",
                kind="event_unreadable",
                message=f"a {topic} event could not be read and was not applied",
                details={"event_id": event_id, "inbox_id": inbox_id},
            )
            return IngestResult("rejected", inbox_id)
        outcome = await _dispatch(rt, conn, store, inbox_id, topic, event)
        crash.point("ingest.before_commit")
        return IngestResult(outcome, inbox_id)


async def _dispatch(
    rt: Runtime,
    conn: AsyncConnection,
    store: StoreRecord,
    inbox_id: int,
    topic: str,
    event: InboundEvent,
) -> Outcome:
    if store.status != "active":
        await _finish(conn, inbox_id, "ignored", f"store is {store.status}")
        return "ignored"
    if isinstance(event, LevelChanged):
        return await _level_changed(rt, conn, store, inbox_id, event)
    if isinstance(event, OrderSeen | OrderEdited | RefundSeen):
        order_id = event.order.id if isinstance(event, OrderSeen) else event.order_id
        await schedule.process_event(rt, conn, inbox_id, store.id, order_id)
        return "recorded"
    if isinstance(event, ProductChanged | ProductDeleted):
        # Product detail sync and source deletions are handled by the catalog; until a
        # handler is registered the event is kept, marked, and visible.
        await _finish(conn, inbox_id, "ignored", "product events are not synced yet")
        return "ignored"
    await _finish(conn, inbox_id, "ignored", f"unhandled topic {topic}")
    return "ignored"


async def _level_changed(
    rt: Runtime, conn: AsyncConnection, store: StoreRecord, inbox_id: int, event: LevelChanged
) -> Outcome:
    if event.available is not None and not plausible_quantity(event.available):
        await activity.record(
            conn,
            store_id=store.id,
            level="warning",
            kind="implausible_level",
            message=f"{store.name} reported {event.available} units of item {event.item_id}; "
            "the level will be read again instead of trusted",
            details={"item_id": event.item_id, "location": event.location_id},
        )
    handled = False
    if store.is_source and await links_of_source_items(conn, store.id, [event.item_id]):
        await mark_source_dirty(rt, conn, store.id, [event.item_id])
        handled = True
    if store.is_destination:
        verdict = await mark_destination_drift(
            rt, conn, store.id, event.item_id, event.location_id, event.available
        )
        handled = handled or verdict != "unlinked"
    if not handled:
        await _finish(conn, inbox_id, "ignored", "item not linked")
        await activity.record(
            conn,
            store_id=store.id,
            level="info",
            kind="event_ignored",
            message=f"a stock change of item {event.item_id} was ignored: it is not linked",
            details={"item_id": event.item_id, "location": event.location_id},
        )
        return "ignored"
    await _finish(conn, inbox_id, "processed", None)
    return "recorded"


async def _finish(conn: AsyncConnection, inbox_id: int, status: str, error: str | None) -> None:
    await conn.execute(
        update(inbox)
        .where(inbox.c.id == inbox_id)
        .values(status=status, error=error, processed_at=activity.utcnow())
    )


def payload_of(event: InboundEvent) -> str:
    """A JSON body for events produced without a raw payload (the in-memory platform)."""
    return json.dumps(encode_event(event), separators=(",", ":"))
