"""Destination -> source: counted orders, edits and restocks, applied once to the root source
(B1, B15, B16, B17).

An order event is handled in a job (one at a time per order). The domain plans what the
snapshot changes; each change becomes a ledger row under its natural key (a second count is
impossible) in the same transaction as the job that applies it to the root source. That job
sends the adjustment with an idempotency key derived from the ledger row, so that a crash
between the platform call and our commit cannot apply it twice.
"""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from stocksync.domain.codec import CodecError, decode_event
from stocksync.domain.connection import ConnectionSettings
from stocksync.domain.events import OrderEdited, OrderSeen, RefundSeen
from stocksync.domain.graph import CycleError, root_of
from stocksync.domain.levels import MAX_QUANTITY, choose_sale_location
from stocksync.domain.orders import (
    LineState,
    OrderState,
    plan_order,
    refund_natural_key,
    restock_units,
)
from stocksync.domain.ports import AuthError, OrderSnapshot, PermanentPlatformError, Refund
from stocksync.engine import crash, sales, schedule
from stocksync.engine.inventory import mark_source_dirty, shared_locations
from stocksync.engine.records import StoreRecord, find_store, load_store
from stocksync.engine.runtime import Runtime
from stocksync.jobs.queue import PermanentJobError
from stocksync.storage import activity
from stocksync.storage.sql import insert_ignore, upsert
from stocksync.storage.tables import (
    connections,
    inbox,
    ledger,
    order_lines,
    orders_seen,
    product_links,
    store_cursors,
    variant_links,
)


async def _upstream(conn: AsyncConnection, store_id: int, item_id: str) -> tuple[int, str] | None:
    row = (
        await conn.execute(
            select(variant_links.c.source_store_id, variant_links.c.source_item_id)
            .join(connections, connections.c.id == variant_links.c.connection_id)
            .where(
                variant_links.c.destination_store_id == store_id,
                variant_links.c.destination_item_id == item_id,
                variant_links.c.status == "active",
                connections.c.status == "active",
            )
            .limit(1)
        )
    ).first()
    return (row[0], row[1]) if row else None


async def _root(conn: AsyncConnection, store_id: int, item_id: str) -> tuple[int, str]:
    async def upstream(s: int, i: str) -> tuple[int, str] | None:
        return await _upstream(conn, s, i)

    return await root_of((store_id, item_id), upstream)


async def _linked_lines(
    conn: AsyncConnection, store_id: int, snapshot: OrderSnapshot
) -> dict[int, dict[str, tuple[int, int, str]]]:
    """Per connection: line id -> (variant link id, source store id, source item id)."""
    variant_ids = [line.variant_id for line in snapshot.lines if line.variant_id]
    if not variant_ids:
        return {}
    rows = await conn.execute(
        select(
            variant_links.c.connection_id,
            variant_links.c.id,
            variant_links.c.destination_variant_id,
            variant_links.c.source_store_id,
            variant_links.c.source_item_id,
        )
        .join(connections, connections.c.id == variant_links.c.connection_id)
        .outerjoin(product_links, product_links.c.id == variant_links.c.product_link_id)
        .where(
            variant_links.c.destination_store_id == store_id,
            variant_links.c.destination_variant_id.in_(variant_ids),
            variant_links.c.status == "active",
            connections.c.status == "active",
        )
        .where((product_links.c.status.is_(None)) | (product_links.c.status == "active"))
    )
    by_variant: dict[str, tuple[int, int, int, str]] = {
        r[2]: (r[0], r[1], r[3], r[4]) for r in rows
    }
    result: dict[int, dict[str, tuple[int, int, str]]] = {}
    for line in snapshot.lines:
        hit = by_variant.get(line.variant_id or "")
        if hit is not None:
            connection_id, link_id, source_store, source_item = hit
            result.setdefault(connection_id, {})[line.id] = (link_id, source_store, source_item)
    return result


async def _order_state(
    conn: AsyncConnection, store_id: int, order_id: str, connection_id: int
) -> OrderState | None:
    seen = (
        await conn.execute(
            select(orders_seen.c.counted, orders_seen.c.version).where(
                orders_seen.c.destination_store_id == store_id,
                orders_seen.c.order_id == order_id,
                orders_seen.c.connection_id == connection_id,
            )
        )
    ).first()
    if seen is None:
        return None
    lines = await conn.execute(
        select(order_lines.c.line_id, order_lines.c.counted, order_lines.c.restocked).where(
            order_lines.c.destination_store_id == store_id,
            order_lines.c.order_id == order_id,
            order_lines.c.connection_id == connection_id,
        )
    )
    return OrderState(
        counted=bool(seen[0]),
        version=seen[1],
        lines={r[0]: LineState(int(r[1]), int(r[2])) for r in lines},
    )


async def _record_ledger(
    rt: Runtime,
    conn: AsyncConnection,
    *,
    store_id: int,
    kind: str,
    natural_key: str,
    order_id: str,
    line_id: str,
    root: tuple[int, str],
    delta: int,
    location: str | None = None,
) -> bool:
    """Insert one ledger row; False when this natural key was already counted."""
    row = await insert_ignore(
        conn,
        ledger,
        {
            "destination_store_id": store_id,
            "kind": kind,
            "natural_key": natural_key,
            "order_id": order_id,
            "line_id": line_id,
            "root_store_id": root[0],
            "root_item_id": root[1],
            "delta": delta,
            "location": location,
            "status": "pending",
            # Filled from the row id below; the key must be deterministic for retries.
            "idempotency_key": "",
            "created_at": rt.clock(),
        },
        conflict=("destination_store_id", "kind", "natural_key"),
        returning=("id",),
    )
    if row is None:
        return False
    await conn.execute(
        update(ledger)
        .where(ledger.c.id == row[0])
        .values(idempotency_key=f"stocksync-ledger-{row[0]}")
    )
    await schedule.apply_ledger(rt, conn, root[0])
    return True


async def apply_snapshot(
    rt: Runtime, conn: AsyncConnection, store: StoreRecord, snapshot: OrderSnapshot
) -> int:
    """Count, or follow the edits of, one order snapshot; then its refunds. Returns the number
    of ledger rows written."""
    written = 0
    bad = [line for line in snapshot.lines if not 0 <= line.quantity <= MAX_QUANTITY]
    for line in bad:
        await activity.record(
            conn,
            store_id=store.id,
            level="error",
            kind="bad_order_line",
            message=f"order {snapshot.id}: line {line.id} has an impossible quantity "
            f"({line.quantity}); it is not counted",
            details={"order_id": snapshot.id, "line_id": line.id, "quantity": line.quantity},
        )
    linked = await _linked_lines(conn, store.id, snapshot)
    if not linked:
        await activity.record(
            conn,
            store_id=store.id,
            level="info",
            kind="order_ignored",
            message=f"order {snapshot.id} has no linked products; nothing to count",
            details={"order_id": snapshot.id},
        )
    for connection_id, lines in linked.items():
        settings_row = (
            await conn.execute(
                select(connections.c.settings).where(connections.c.id == connection_id)
            )
        ).scalar_one()
        settings = ConnectionSettings.from_json(settings_row)
        state = await _order_state(conn, store.id, snapshot.id, connection_id)
        plan = plan_order(snapshot, state, settings, frozenset(lines))
        if plan.stale:
            continue
        for change in plan.changes:
            link_id, _src, _item = lines[change.line_id]
            dest_item = (
                await conn.execute(
                    select(variant_links.c.destination_item_id).where(variant_links.c.id == link_id)
                )
            ).scalar_one()
            try:
                root = await _root(conn, store.id, dest_item)
            except CycleError as exc:
                await activity.record(
                    conn, store_id=store.id, level="error", kind="link_cycle", message=str(exc)
                )
                continue
            if await _record_ledger(
                rt,
                conn,
                store_id=store.id,
                kind=change.kind,
                natural_key=change.natural_key,
                order_id=snapshot.id,
                line_id=change.line_id,
                root=root,
                delta=change.delta,
            ):
                written += 1
                await upsert(
                    conn,
                    order_lines,
                    [
                        {
                            "destination_store_id": store.id,
                            "order_id": snapshot.id,
                            "line_id": change.line_id,
                            "connection_id": connection_id,
                            "variant_link_id": link_id,
                            "root_store_id": root[0],
                            "root_item_id": root[1],
                            "counted": change.counted_after,
                            "restocked": 0,
                            "version": snapshot.version,
                        }
                    ],
                    conflict=("destination_store_id", "order_id", "line_id"),
                    update={"counted": change.counted_after, "version": snapshot.version},
                )
        await upsert(
            conn,
            orders_seen,
            [
                {
                    "destination_store_id": store.id,
                    "order_id": snapshot.id,
                    "connection_id": connection_id,
                    "financial_status": snapshot.financial_status,
                    "cancelled": snapshot.cancelled,
                    "counted": plan.counted,
                    "version": snapshot.version,
                    "updated_at": rt.clock(),
                }
            ],
            conflict=("destination_store_id", "order_id", "connection_id"),
            update={
                "financial_status": snapshot.financial_status,
                "cancelled": snapshot.cancelled,
                "counted": plan.counted,
                "version": snapshot.version,
                "updated_at": rt.clock(),
            },
        )
    for refund in snapshot.refunds:
        written += await apply_refund(rt, conn, store, snapshot.id, refund)
    await sales.follow_order(rt, conn, store, snapshot)
    return written


async def apply_refund(
    rt: Runtime, conn: AsyncConnection, store: StoreRecord, order_id: str, refund: Refund
) -> int:
    written = 0
    for rl in refund.lines:
        key = refund_natural_key(order_id, refund.id, rl)
        row = (
            await conn.execute(
                select(
                    order_lines.c.counted,
                    order_lines.c.restocked,
                    order_lines.c.root_store_id,
                    order_lines.c.root_item_id,
                    order_lines.c.source_location,
                ).where(
                    order_lines.c.destination_store_id == store.id,
                    order_lines.c.order_id == order_id,
                    order_lines.c.line_id == rl.line_id,
                )
            )
        ).first()
        units = restock_units(LineState(int(row[0]), int(row[1])) if row else None, rl)
        if units == 0 or row is None:
            continue
        if await _record_ledger(
            rt,
            conn,
            store_id=store.id,
            kind="refund_line",
            natural_key=key,
            order_id=order_id,
            line_id=rl.line_id,
            root=(row[2], row[3]),
            delta=units,
            location=row[4],
        ):
            written += 1
            await conn.execute(
                update(order_lines)
                .where(
                    order_lines.c.destination_store_id == store.id,
                    order_lines.c.order_id == order_id,
                    order_lines.c.line_id == rl.line_id,
                )
                .values(restocked=order_lines.c.restocked + units)
            )
    return written


async def process_event(rt: Runtime, inbox_id: int) -> None:
    """Handle one stored order, edit or refund event."""
    async with rt.db.begin() as conn:
        row = (
            await conn.execute(
                select(inbox.c.status, inbox.c.event, inbox.c.store_ref, inbox.c.platform).where(
                    inbox.c.id == inbox_id
                )
            )
        ).first()
        if row is None or row[0] != "pending":
            return
        store = await find_store(conn, row[3], row[2])
        try:
            event = decode_event(row[1])
        except CodecError as exc:
            await _finish(conn, inbox_id, "failed", str(exc))
            await activity.record(
                conn,
                store_id=store.id if store else None,
                level="error",
                kind="event_unreadable",
                message=f"a stored event could not be read: {exc}",
                details={"inbox_id": inbox_id},
            )
            return
        if store is None:
            await _finish(conn, inbox_id, "ignored", "unknown store")
            return
    # Decide what to read from the platform outside any transaction.
    snapshot: OrderSnapshot | None = None
    refund: Refund | None = None
    if isinstance(event, OrderSeen):
        snapshot = event.order
    elif isinstance(event, OrderEdited):
        snapshot = await rt.platforms(store).get_order(event.order_id)
    elif isinstance(event, RefundSeen):
        refund = event.refund
        # What the refund gives back is capped by what was counted for its lines, so the
        # order must be known as it stood when refunded: its "paid" webhook may still be on
        # its way (or lost), and so may an edit that added units. Its current state, applied
        # first, settles both.
        snapshot = await rt.platforms(store).get_order(event.order_id)
    crash.point("order.after_fetch")
    async with rt.db.begin() as conn:
        status = (await conn.execute(select(inbox.c.status).where(inbox.c.id == inbox_id))).scalar()
        if status != "pending":
            return
        if snapshot is not None:
            await apply_snapshot(rt, conn, store, snapshot)
        if refund is not None and isinstance(event, RefundSeen):
            await apply_refund(rt, conn, store, event.order_id, refund)
        await _finish(conn, inbox_id, "processed", None)
        crash.point("order.before_commit")


async def _finish(conn: AsyncConnection, inbox_id: int, status: str, error: str | None) -> None:
    await conn.execute(
        update(inbox)
        .where(inbox.c.id == inbox_id)
        .values(status=status, error=error, processed_at=activity.utcnow())
    )


# --- orders whose webhooks never came ----------------------------------------------------------

BACKFILL_CURSOR = "orders_version"


async def sync_order(rt: Runtime, store_id: int, order_id: str) -> None:
    """Apply an order's current state, as the platform reports it now."""
    async with rt.db.begin() as conn:
        store = await load_store(conn, store_id)
    if store is None or store.status != "active":
        return
    snapshot = await rt.platforms(store).get_order(order_id)
    crash.point("order.after_fetch")
    if snapshot is None:
        return
    async with rt.db.begin() as conn:
        await apply_snapshot(rt, conn, store, snapshot)
        crash.point("order.before_commit")


async def backfill_orders(rt: Runtime, store_id: int) -> int:
    """B17: poll orders changed since the last one seen, so that an order whose webhooks were
    lost is still counted, exactly once (each is applied by ``sync_order`` under its order's
    lock, target-based, so one already counted changes nothing). Returns orders scheduled."""
    async with rt.db.begin() as conn:
        store = await load_store(conn, store_id)
        cursor = (
            await conn.execute(
                select(store_cursors.c.value).where(
                    store_cursors.c.store_id == store_id,
                    store_cursors.c.name == BACKFILL_CURSOR,
                )
            )
        ).scalar()
    if store is None or store.status != "active" or not store.is_destination:
        return 0
    changed = await rt.platforms(store).orders_changed_since(cursor)
    if not changed:
        return 0
    scheduled = 0
    async with rt.db.begin() as conn:
        seen = dict(
            (
                await conn.execute(
                    select(orders_seen.c.order_id, func.max(orders_seen.c.version))
                    .where(
                        orders_seen.c.destination_store_id == store_id,
                        orders_seen.c.order_id.in_([s.id for s in changed]),
                    )
                    .group_by(orders_seen.c.order_id)
                )
            ).all()
        )
        for snapshot in changed:
            # Already applied at this version (its webhooks came): nothing was missed.
            if seen.get(snapshot.id) is not None and seen[snapshot.id] >= snapshot.version:
                continue
            await schedule.sync_order(rt, conn, store_id, snapshot.id)
            scheduled += 1
        await upsert(
            conn,
            store_cursors,
            [{"store_id": store_id, "name": BACKFILL_CURSOR, "value": changed[-1].version}],
            conflict=("store_id", "name"),
            update={"value": changed[-1].version},
        )
    return scheduled


# --- applying the ledger to the root source ---------------------------------------------------


async def apply_ledger(rt: Runtime, store_id: int) -> int:
    """Apply pending ledger rows of one root source; returns how many were applied."""
    applied = 0
    while True:
        async with rt.db.begin() as conn:
            store = await load_store(conn, store_id)
            rows = (
                await conn.execute(
                    select(
                        ledger.c.id,
                        ledger.c.root_item_id,
                        ledger.c.delta,
                        ledger.c.location,
                        ledger.c.idempotency_key,
                    )
                    .where(ledger.c.root_store_id == store_id, ledger.c.status == "pending")
                    .order_by(ledger.c.id)
                    .limit(50)
                )
            ).all()
            locs = await shared_locations(conn, store_id)
        if store is None or not rows:
            return applied
        if not locs:
            async with rt.db.begin() as conn:
                await activity.record(
                    conn,
                    store_id=store_id,
                    level="error",
                    kind="no_shared_location",
                    message=f"{store.name} shares no active location, so destination sales "
                    "cannot be taken from its stock; choose the locations to share",
                    retry={"task": schedule.APPLY_LEDGER, "args": {"store_id": store_id}},
                )
            raise PermanentJobError(f"store {store_id} shares no location")
        platform = rt.platforms(store)
        unplaced = [r for r in rows if r[3] is None]
        chosen: dict[int, str] = {}
        if unplaced:
            items = sorted({r[1] for r in unplaced})
            levels = await platform.read_levels(items, locs)
            priority: list[str] | None = store.settings.get("location_priority")
            for r in unplaced:
                loc = choose_sale_location(
                    {loc: levels.get((r[1], loc)) for loc in locs},
                    units=max(1, -int(r[2])),
                    priority=priority,
                )
                chosen[r[0]] = loc or locs[0]
            async with rt.db.begin() as conn:
                for ledger_id, loc in chosen.items():
                    # Only where still unset: the location is part of the idempotent input.
                    await conn.execute(
                        update(ledger)
                        .where(ledger.c.id == ledger_id, ledger.c.location.is_(None))
                        .values(location=loc)
                    )
            crash.point("apply.after_location")
            async with rt.db.begin() as conn:
                placed = dict(
                    (
                        await conn.execute(
                            select(ledger.c.id, ledger.c.location).where(
                                ledger.c.id.in_([r[0] for r in rows])
                            )
                        )
                    ).all()
                )
        else:
            placed = {r[0]: r[3] for r in rows}
        for ledger_id, item, delta, _loc, key in rows:
            location = placed[ledger_id]
            try:
                await platform.adjust_level(item, location, int(delta), key)
            except PermanentPlatformError as exc:
                if isinstance(exc, AuthError):
                    raise  # the whole store is unreachable: retry later, as before
                # This row can never apply (an item deleted at the source, a location gone):
                # set it aside and report it, or it would block every later change of this
                # source, since rows are applied in order (B22, B23).
                await _set_aside(rt, store, ledger_id, item, int(delta), exc)
                continue
            crash.point("apply.after_adjust")
            async with rt.db.begin() as conn:
                result = await conn.execute(
                    update(ledger)
                    .where(ledger.c.id == ledger_id, ledger.c.status == "pending")
                    .values(status="applied", applied_at=rt.clock())
                )
                if result.rowcount:
                    applied += 1
                if delta < 0:
                    # Restocks of this line go back where its units were taken from.
                    await _remember_sale_location(conn, ledger_id, location)
                await mark_source_dirty(rt, conn, store_id, [item])
                crash.point("apply.before_commit")
        if len(rows) < 50:
            return applied


async def _set_aside(
    rt: Runtime, store: StoreRecord, ledger_id: int, item: str, delta: int, exc: Exception
) -> None:
    change = (
        f"a sale of {-delta} unit{'s' if delta != -1 else ''}"
        if delta < 0
        else f"a restock of {delta} unit{'s' if delta != 1 else ''}"
    )
    async with rt.db.begin() as conn:
        await conn.execute(
            update(ledger)
            .where(ledger.c.id == ledger_id, ledger.c.status == "pending")
            .values(status="failed")
        )
        await activity.record(
            conn,
            store_id=store.id,
            level="error",
            kind="ledger_failed",
            message=f"{change} of item {item} could not be applied to {store.name}: {exc}; "
            "it was set aside so that other changes go on",
            details={"ledger_id": ledger_id, "item_id": item, "delta": delta},
        )


async def _remember_sale_location(conn: AsyncConnection, ledger_id: int, location: str) -> None:
    row = (
        await conn.execute(
            select(ledger.c.destination_store_id, ledger.c.order_id, ledger.c.line_id).where(
                ledger.c.id == ledger_id
            )
        )
    ).first()
    if row is None:
        return
    await conn.execute(
        update(order_lines)
        .where(
            order_lines.c.destination_store_id == row[0],
            order_lines.c.order_id == row[1],
            order_lines.c.line_id == row[2],
            order_lines.c.source_location.is_(None),
        )
        .values(source_location=location)
    )
