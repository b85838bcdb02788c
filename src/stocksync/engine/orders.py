"""Destination -> source: counted orders, edits and restocks, applied once to the root source
(B1, B15, B16, B17).

An order event is handled in a job (one at a time per order). The domain plans what the
snapshot changes; each change becomes a ledger row under its natural key (a second count is
impossible) in the same transaction as the job that applies it to the root source. That job
sends the row in a recorded batch under the batch's idempotency key (engine/ledger.py), so
that a crash between the platform call and our commit cannot apply it twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from stocksync.domain.codec import CodecError, decode_event
from stocksync.domain.connection import ConnectionSettings
from stocksync.domain.events import OrderEdited, OrderSeen, RefundSeen
from stocksync.domain.graph import CycleError, root_of
from stocksync.domain.ledger import new_key_seed
from stocksync.domain.levels import MAX_QUANTITY
from stocksync.domain.orders import (
    LineState,
    OrderState,
    SeenAt,
    fingerprint,
    order_counts_for_link,
    order_created,
    parse_instant,
    plan_order,
    refund_natural_key,
    restock_unconfirmed,
    restock_units,
    tells_nothing_new,
    version_text,
)
from stocksync.domain.ports import OrderSnapshot, Refund
from stocksync.engine import crash, sales, schedule
from stocksync.engine.records import StoreRecord, find_store, load_store
from stocksync.engine.runtime import Runtime
from stocksync.storage import activity
from stocksync.storage.sql import insert_ignore, upsert
from stocksync.storage.tables import (
    connections,
    inbox,
    ledger,
    order_lines,
    orders_seen,
    orders_to_sync,
    product_links,
    store_cursors,
    stores,
    variant_links,
)

# B4: units sold are gone from the shared stock, so sales of a paused connection or paused
# product still count, and so do those of a connection suspended by an uninstall (applied to
# the source once it is installed again); disconnected connections and unlinked products
# never do.
COUNTING_CONNECTIONS = ("active", "paused", "suspended")
COUNTING_PRODUCT_LINKS = ("active", "paused")


async def _upstream(conn: AsyncConnection, store_id: int, item_id: str) -> tuple[int, str] | None:
    row = (
        await conn.execute(
            select(variant_links.c.source_store_id, variant_links.c.source_item_id)
            .join(connections, connections.c.id == variant_links.c.connection_id)
            .where(
                variant_links.c.destination_store_id == store_id,
                variant_links.c.destination_item_id == item_id,
                variant_links.c.status == "active",
                # B4: a pause stops levels flowing, not sales counting, all the way up
                connections.c.status.in_(COUNTING_CONNECTIONS),
            )
            .limit(1)
        )
    ).first()
    return (row[0], row[1]) if row else None


async def _root(conn: AsyncConnection, store_id: int, item_id: str) -> tuple[int, str]:
    async def upstream(s: int, i: str) -> tuple[int, str] | None:
        return await _upstream(conn, s, i)

    return await root_of((store_id, item_id), upstream)


async def _order_placed(
    rt: Runtime, conn: AsyncConnection, store_id: int, snapshot: OrderSnapshot
) -> datetime:
    """When the order was placed; when the platform does not say, when first seen (recorded
    with the order the first time it was applied)."""
    if snapshot.created_at is None:
        recorded = (
            await conn.execute(
                select(func.min(orders_seen.c.order_created_at)).where(
                    orders_seen.c.destination_store_id == store_id,
                    orders_seen.c.order_id == snapshot.id,
                )
            )
        ).scalar()
        if recorded is not None:
            return order_created(str(recorded), rt.clock())
    return order_created(snapshot.created_at, rt.clock())


async def _linked_lines(
    conn: AsyncConnection, store_id: int, snapshot: OrderSnapshot, placed: datetime
) -> dict[int, dict[str, tuple[int, int, str]]]:
    """Per connection: line id -> (variant link id, source store id, source item id), for the
    lines that may count: their link existed when the order was placed, on a store installed
    then (B15, B16); a line already counted keeps following its order (its count was decided
    under a link that was live; an edit must correct it)."""
    variant_ids = [line.variant_id for line in snapshot.lines if line.variant_id]
    if not variant_ids:
        return {}
    installed = (
        await conn.execute(select(stores.c.created_at).where(stores.c.id == store_id))
    ).scalar()
    counted = set(
        (
            await conn.execute(
                select(order_lines.c.line_id).where(
                    order_lines.c.destination_store_id == store_id,
                    order_lines.c.order_id == snapshot.id,
                )
            )
        ).scalars()
    )
    rows = await conn.execute(
        select(
            variant_links.c.connection_id,
            variant_links.c.id,
            variant_links.c.destination_variant_id,
            variant_links.c.source_store_id,
            variant_links.c.source_item_id,
            variant_links.c.created_at,
        )
        .join(connections, connections.c.id == variant_links.c.connection_id)
        .outerjoin(product_links, product_links.c.id == variant_links.c.product_link_id)
        .where(
            variant_links.c.destination_store_id == store_id,
            variant_links.c.destination_variant_id.in_(variant_ids),
            variant_links.c.status == "active",
            connections.c.status.in_(COUNTING_CONNECTIONS),
        )
        .where(
            (product_links.c.status.is_(None))
            | (product_links.c.status.in_(COUNTING_PRODUCT_LINKS))
        )
    )
    by_variant: dict[str, tuple[int, int, int, str, datetime | None]] = {
        r[2]: (r[0], r[1], r[3], r[4], r[5]) for r in rows
    }
    result: dict[int, dict[str, tuple[int, int, str]]] = {}
    for line in snapshot.lines:
        hit = by_variant.get(line.variant_id or "")
        if hit is None:
            continue
        connection_id, link_id, source_store, source_item, linked_at = hit
        if line.id in counted or order_counts_for_link(placed, linked_at, installed):
            result.setdefault(connection_id, {})[line.id] = (link_id, source_store, source_item)
    return result


async def _order_state(
    conn: AsyncConnection, store_id: int, order_id: str, connection_id: int
) -> OrderState | None:
    seen = (
        await conn.execute(
            select(
                orders_seen.c.counted,
                orders_seen.c.version,
                orders_seen.c.paid_in_full,
                orders_seen.c.fingerprint,
            ).where(
                orders_seen.c.destination_store_id == store_id,
                orders_seen.c.order_id == order_id,
                orders_seen.c.connection_id == connection_id,
            )
        )
    ).first()
    if seen is None:
        return None
    lines = await conn.execute(
        select(
            order_lines.c.line_id,
            order_lines.c.counted,
            order_lines.c.restocked,
            order_lines.c.changes,
        ).where(
            order_lines.c.destination_store_id == store_id,
            order_lines.c.order_id == order_id,
            order_lines.c.connection_id == connection_id,
        )
    )
    return OrderState(
        counted=bool(seen[0]),
        version=seen[1],
        lines={r[0]: LineState(int(r[1]), int(r[2]), int(r[3])) for r in lines},
        paid_in_full=bool(seen[2]),
        fingerprint=seen[3],
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
            # Random, never derived from the row id (ids repeat across a restored backup, a
            # second installation on one shop, a reused SQLite rowid). The source is sent the
            # key of the row's batch (engine/ledger.py).
            "idempotency_key": new_key_seed(),
            "created_at": rt.clock(),
        },
        conflict=("destination_store_id", "kind", "natural_key"),
        returning=("id",),
    )
    if row is None:
        return False
    await schedule.apply_ledger(rt, conn, root[0])
    return True


async def apply_snapshot(
    rt: Runtime,
    conn: AsyncConnection,
    store: StoreRecord,
    snapshot: OrderSnapshot,
    *,
    from_read: bool = False,
) -> int:
    """Count, or follow the edits of, one order snapshot; then its refunds. Returns the number
    of ledger rows written. ``from_read``: the snapshot is the order read from its platform
    now (not a webhook's copy), so it is current."""
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
    placed = await _order_placed(rt, conn, store.id, snapshot)
    linked = await _linked_lines(conn, store.id, snapshot, placed)
    if not linked:
        await activity.record(
            conn,
            store_id=store.id,
            level="info",
            kind="order_ignored",
            message=f"order {snapshot.id} has no linked products; nothing to count",
            details={"order_id": snapshot.id, "placed": version_text(placed)},
        )
    for connection_id, lines in linked.items():
        settings_row = (
            await conn.execute(
                select(connections.c.settings).where(connections.c.id == connection_id)
            )
        ).scalar_one()
        settings = ConnectionSettings.from_json(settings_row)
        state = await _order_state(conn, store.id, snapshot.id, connection_id)
        plan = plan_order(snapshot, state, settings, frozenset(lines), from_read=from_read)
        if plan.needs_read and not from_read:
            # Its quantities are not the order's newest: count what a read of it says.
            await schedule.sync_order(rt, conn, store.id, snapshot.id)
        if plan.stale:
            if state is not None and plan.paid_in_full and not state.paid_in_full:
                await _remember_paid_in_full(conn, store.id, snapshot.id, connection_id)
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
                            "changes": change.changes_after,
                        }
                    ],
                    conflict=("destination_store_id", "order_id", "line_id"),
                    update={
                        "counted": change.counted_after,
                        "version": snapshot.version,
                        "changes": change.changes_after,
                    },
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
                    "paid_in_full": plan.paid_in_full,
                    "fingerprint": fingerprint(snapshot),
                    "updated_at": rt.clock(),
                    "order_created_at": version_text(placed),
                }
            ],
            conflict=("destination_store_id", "order_id", "connection_id"),
            update={
                "financial_status": snapshot.financial_status,
                "cancelled": snapshot.cancelled,
                "counted": plan.counted,
                "version": snapshot.version,
                # sticky: the plan includes what was remembered before
                "paid_in_full": plan.paid_in_full,
                "fingerprint": fingerprint(snapshot),
                "updated_at": rt.clock(),
            },
        )
    for refund in snapshot.refunds:
        written += await apply_refund(rt, conn, store, snapshot.id, refund)
    await sales.follow_order(rt, conn, store, snapshot, linked)
    return written


async def _remember_paid_in_full(
    conn: AsyncConnection, store_id: int, order_id: str, connection_id: int
) -> None:
    """Evidence of payment in full from a snapshot too old for its quantities (B15)."""
    await conn.execute(
        update(orders_seen)
        .where(
            orders_seen.c.destination_store_id == store_id,
            orders_seen.c.order_id == order_id,
            orders_seen.c.connection_id == connection_id,
        )
        .values(paid_in_full=True)
    )


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
        state = LineState(int(row[0]), int(row[1])) if row else None
        if restock_unconfirmed(state, rl):
            # Restocked or not, only the order says (a refund webhook names the type only).
            await schedule.sync_order(rt, conn, store.id, order_id)
            continue
        units = restock_units(state, rl)
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
        if isinstance(event, OrderSeen) and await _applied_already(conn, store.id, event.order):
            # A second webhook with the same order (Shopify sends orders/create and
            # orders/paid for a paid checkout): nothing to count, hold or schedule again.
            await _finish(conn, inbox_id, "processed", None)
            return
        if snapshot is not None:
            await apply_snapshot(
                rt, conn, store, snapshot, from_read=not isinstance(event, OrderSeen)
            )
        read_refunds = {r.id for r in snapshot.refunds} if snapshot is not None else set()
        if refund is not None and isinstance(event, RefundSeen) and refund.id not in read_refunds:
            # Only a refund the read does not show yet (the read says what was restocked).
            await apply_refund(rt, conn, store, event.order_id, refund)
        await _finish(conn, inbox_id, "processed", None)
        crash.point("order.before_commit")


async def _applied_already(conn: AsyncConnection, store_id: int, snapshot: OrderSnapshot) -> bool:
    """Whether this snapshot is one already applied to a counted order: the same version,
    quantities, status and evidence of payment, no refund in it, and no link made since the
    order was placed (one made in its second may count its lines). Applying it again would
    change nothing; this tells so in two reads instead of the whole plan."""
    if snapshot.refunds:
        return False
    seen = (
        await conn.execute(
            select(
                orders_seen.c.counted,
                orders_seen.c.version,
                orders_seen.c.fingerprint,
                orders_seen.c.financial_status,
                orders_seen.c.cancelled,
                orders_seen.c.paid_in_full,
                orders_seen.c.order_created_at,
            ).where(
                orders_seen.c.destination_store_id == store_id,
                orders_seen.c.order_id == snapshot.id,
            )
        )
    ).all()
    if not seen:
        return False
    for counted, version, prior, status, cancelled, paid_in_full, _placed in seen:
        held = SeenAt(version, prior, status, bool(cancelled), bool(paid_in_full))
        if not (counted and version == snapshot.version and tells_nothing_new(snapshot, held)):
            return False
    placed = [str(r[6]) for r in seen if r[6] is not None]
    variant_ids = sorted({line.variant_id for line in snapshot.lines if line.variant_id})
    if not placed or not variant_ids:
        return False
    newer_link = (
        await conn.execute(
            select(variant_links.c.id)
            .where(
                variant_links.c.destination_store_id == store_id,
                variant_links.c.destination_variant_id.in_(variant_ids),
                variant_links.c.created_at >= parse_instant(min(placed)).replace(microsecond=0),
            )
            .limit(1)
        )
    ).first()
    return newer_link is None


async def _finish(conn: AsyncConnection, inbox_id: int, status: str, error: str | None) -> None:
    await conn.execute(
        update(inbox)
        .where(inbox.c.id == inbox_id)
        .values(status=status, error=error, processed_at=activity.utcnow())
    )


# --- orders whose webhooks never came ----------------------------------------------------------

BACKFILL_CURSOR = "orders_version"

# Shopify's order search (the ``updated_at`` filter the backfill uses) is an index updated
# after the write, so an order changed just before a backfill may not be listed yet; a cursor
# moved past it would lose it for good. Shopify documents no bound for that lag; five minutes
# is far beyond the seconds it is seen to take, and costs only re-reading the orders of the
# last five minutes on each run (those already applied at their version are skipped).
BACKFILL_MARGIN = timedelta(minutes=5)


async def start_backfill_cursor(conn: AsyncConnection, store_id: int, at: datetime) -> None:
    """The order backfill of a newly installed store starts at its install: orders placed
    before never count (B15), so its history is never read. A store installed again keeps the
    cursor it had, so that what changed while it was uninstalled is still found."""
    # From the install's instant, fraction included: Shopify's order times have whole
    # seconds, so an order of the install's second cannot be told before or after it. The
    # backfill leaves such orders out (an order placed just before the install must never
    # count); one placed just after is counted by its webhooks.
    await insert_ignore(
        conn,
        store_cursors,
        {"store_id": store_id, "name": BACKFILL_CURSOR, "value": version_text(at)},
        conflict=("store_id", "name"),
    )


async def sync_order(rt: Runtime, store_id: int, order_id: str) -> None:
    """Apply an order's current state, as the platform reports it now."""
    async with rt.db.begin() as conn:
        store = await load_store(conn, store_id)
    if store is None or store.status != "active":
        return
    snapshot = await rt.platforms(store).get_order(order_id)
    crash.point("order.after_fetch")
    async with rt.db.begin() as conn:
        if snapshot is not None:
            await apply_snapshot(rt, conn, store, snapshot, from_read=True)
        # Synced (or gone): the periodic job need not schedule it again.
        await conn.execute(
            delete(orders_to_sync).where(
                orders_to_sync.c.store_id == store_id, orders_to_sync.c.order_id == order_id
            )
        )
        crash.point("order.before_commit")


@dataclass(frozen=True)
class OrderScan:
    """What a poll of a destination's orders found: the cursor it read from, every order
    changed since, and those not yet applied as they stand now."""

    cursor: str | None
    changed: list[OrderSnapshot]
    unapplied: list[OrderSnapshot]


async def scan_orders(rt: Runtime, store: StoreRecord) -> OrderScan:
    """Orders changed since the backfill cursor, and which of them were missed. Reads only:
    the order backfill acts on it, and a dry-run reconciliation reports it."""
    async with rt.db.connect() as conn:
        cursor = (
            await conn.execute(
                select(store_cursors.c.value).where(
                    store_cursors.c.store_id == store.id,
                    store_cursors.c.name == BACKFILL_CURSOR,
                )
            )
        ).scalar()
        if cursor is None:
            # Installed before the cursor was set at install: start from the install too.
            installed = (
                await conn.execute(select(stores.c.created_at).where(stores.c.id == store.id))
            ).scalar()
            cursor = version_text(installed) if installed is not None else None
    changed = await rt.platforms(store).orders_changed_since(cursor)
    if not changed:
        return OrderScan(cursor, [], [])
    seen: dict[str, list[SeenAt]] = {}
    async with rt.db.connect() as conn:
        for order_id, version, print_, status, cancelled, paid_in_full in await conn.execute(
            select(
                orders_seen.c.order_id,
                orders_seen.c.version,
                orders_seen.c.fingerprint,
                orders_seen.c.financial_status,
                orders_seen.c.cancelled,
                orders_seen.c.paid_in_full,
            ).where(
                orders_seen.c.destination_store_id == store.id,
                orders_seen.c.order_id.in_([s.id for s in changed]),
            )
        ):
            held = SeenAt(version, print_, status, bool(cancelled), bool(paid_in_full))
            seen.setdefault(order_id, []).append(held)
    unapplied = []
    for snapshot in changed:
        # Already applied (its webhooks came): nothing was missed.
        known = seen.get(snapshot.id)
        if known and all(tells_nothing_new(snapshot, held) for held in known):
            continue
        unapplied.append(snapshot)
    return OrderScan(cursor, changed, unapplied)


async def backfill_orders(rt: Runtime, store_id: int) -> int:
    """B17: poll orders changed since the last one seen, so that an order whose webhooks were
    lost is still counted, exactly once (each is applied by ``sync_order`` under its order's
    lock, target-based, so one already counted changes nothing). Returns orders scheduled."""
    async with rt.db.begin() as conn:
        store = await load_store(conn, store_id)
    if store is None or store.status != "active" or not store.is_destination:
        return 0
    scan = await scan_orders(rt, store)
    if not scan.changed:
        return 0
    async with rt.db.begin() as conn:
        for snapshot in scan.unapplied:
            await schedule.sync_order(rt, conn, store_id, snapshot.id)
            # Remembered until synced: the cursor moves past it below, so if this job gives
            # up, only the periodic job (reading this table) schedules it again.
            await insert_ignore(
                conn,
                orders_to_sync,
                {"store_id": store_id, "order_id": snapshot.id, "created_at": rt.clock()},
                conflict=("store_id", "order_id"),
            )
        # Never past now minus the margin (the search may not list the latest changes yet),
        # and never back (versions and the margin only move forward).
        ahead = min(scan.changed[-1].version, version_text(rt.clock() - BACKFILL_MARGIN))
        if scan.cursor is not None:
            ahead = max(ahead, scan.cursor)
        await upsert(
            conn,
            store_cursors,
            [{"store_id": store_id, "name": BACKFILL_CURSOR, "value": ahead}],
            conflict=("store_id", "name"),
            update={"value": ahead},
        )
    return len(scan.unapplied)
