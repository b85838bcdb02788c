"""Sales on their way to the source, as destination targets see them (B24; domain/sales.py).

- :func:`link_targets` is every destination's target: the root source's recorded level less
  sales in flight and units held by orders not counted, then the buffer. Flushes (and so
  reconciliation) and level reports use it, so nothing pushes a level that pending ledger
  rows are about to change;
- :func:`observe` records a destination level that is not our own write: a decrease no order
  explains yet (``sync_state.unexplained`` since ``lowered_at``) is held for the sale grace;
- :func:`follow_order` runs with every order snapshot applied: it keeps the order's held and
  taken units per line, lets them explain a decrease seen at its destination, and schedules
  every destination of the items it sold, so that a sale reaches them all at once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from stocksync.domain import sales
from stocksync.domain.connection import ConnectionSettings
from stocksync.domain.ports import OrderSnapshot
from stocksync.engine.marks import links_of_source_items, mark_pending
from stocksync.engine.records import StoreRecord
from stocksync.engine.runtime import Runtime
from stocksync.storage.sql import upsert
from stocksync.storage.tables import (
    SOURCE_LOCATION,
    connections,
    ledger,
    order_holds,
    orders_seen,
    sync_state,
    variant_links,
)

# --- targets ----------------------------------------------------------------------------------


async def in_flight(
    conn: AsyncConnection, source_store_id: int, read_at: dict[str, datetime | None]
) -> dict[str, int]:
    """Units of sales of these source items not in their recorded level (item -> units)."""
    if not read_at:
        return {}
    known = [t for t in read_at.values() if t is not None]
    # Applied rows matter only from the oldest read on; older ones are in every level.
    recent = ledger.c.applied_at >= min(known) if known else None
    not_applied = ledger.c.status != sales.APPLIED
    rows = await conn.execute(
        select(ledger.c.root_item_id, ledger.c.delta, ledger.c.status, ledger.c.applied_at).where(
            ledger.c.root_store_id == source_store_id,
            ledger.c.root_item_id.in_(sorted(read_at)),
            ledger.c.delta < 0,
            ledger.c.status.not_in(sorted(sales.NEVER_APPLIED)),
            or_(not_applied, recent) if recent is not None else not_applied,
        )
    )
    entries: dict[str, list[sales.LedgerEntry]] = defaultdict(list)
    for item, delta, status, applied_at in rows:
        entries[item].append(sales.LedgerEntry(int(delta), status, applied_at))
    return {
        item: sales.units_in_flight(entries[item], read_at[item])
        for item in read_at
        if item in entries
    }


async def held_units(conn: AsyncConnection, link_ids: Sequence[int]) -> dict[int, int]:
    if not link_ids:
        return {}
    rows = await conn.execute(
        select(order_holds.c.variant_link_id, func.sum(order_holds.c.held))
        .where(order_holds.c.variant_link_id.in_(sorted(set(link_ids))), order_holds.c.held > 0)
        .group_by(order_holds.c.variant_link_id)
    )
    return {int(r[0]): int(r[1]) for r in rows}


async def link_targets(conn: AsyncConnection, link_ids: Iterable[int]) -> dict[int, int]:
    """The target of each variant link whose source level is known (link id -> level)."""
    ids = sorted(set(link_ids))
    if not ids:
        return {}
    src = sync_state.alias("src")
    rows = (
        await conn.execute(
            select(
                variant_links.c.id,
                variant_links.c.source_store_id,
                variant_links.c.source_item_id,
                connections.c.settings,
                src.c.last_read,
                src.c.read_at,
            )
            .join(connections, connections.c.id == variant_links.c.connection_id)
            .join(
                src,
                and_(
                    src.c.store_id == variant_links.c.source_store_id,
                    src.c.item_id == variant_links.c.source_item_id,
                    src.c.location == SOURCE_LOCATION,
                ),
            )
            .where(variant_links.c.id.in_(ids), src.c.last_read.is_not(None))
        )
    ).all()
    by_source: dict[int, dict[str, datetime | None]] = defaultdict(dict)
    for r in rows:
        by_source[r[1]][r[2]] = r[5]
    flying = {s: await in_flight(conn, s, items) for s, items in sorted(by_source.items())}
    held = await held_units(conn, [r[0] for r in rows])
    buffers: dict[int, int] = {}
    targets: dict[int, int] = {}
    for link_id, source_id, item, settings, level, _read_at in rows:
        if link_id not in buffers:
            buffers[link_id] = ConnectionSettings.from_json(settings).safety_buffer
        targets[link_id] = sales.sale_target(
            int(level), flying[source_id].get(item, 0), held.get(link_id, 0), buffers[link_id]
        )
    return targets


# --- shortfalls at destinations -----------------------------------------------------------------


@dataclass(frozen=True)
class Observation:
    """A level seen at a destination that is not our own write coming back."""

    store_id: int
    item_id: str
    location: str
    link_id: int
    previous: int | None  # what we knew there before
    level: int


@dataclass(frozen=True)
class Stored:
    """A destination level's shortfall as stored: ``explained`` is added to by order
    snapshots only, so a level observation stores ``explained + units`` as ``unexplained``
    (see tables.sync_state) and an explanation committed meanwhile still counts."""

    shortfall: sales.Shortfall
    explained: int

    def unexplained(self, shortfall: sales.Shortfall) -> int:
        return self.explained + shortfall.units


async def shortfalls(
    conn: AsyncConnection, store_id: int, location: str, items: Iterable[str]
) -> dict[str, Stored]:
    wanted = sorted(set(items))
    if not wanted:
        return {}
    rows = await conn.execute(
        select(
            sync_state.c.item_id,
            sync_state.c.unexplained,
            sync_state.c.explained,
            sync_state.c.lowered_at,
        ).where(
            sync_state.c.store_id == store_id,
            sync_state.c.location == location,
            sync_state.c.item_id.in_(wanted),
        )
    )
    found: dict[str, Stored] = {}
    for item, unexplained, explained, since in rows:
        units = max(0, int(unexplained or 0) - int(explained or 0))
        # Once explained, its time is no one's: a new decrease starts its own grace.
        shortfall = sales.Shortfall(units, since if units else None)
        found[item] = Stored(shortfall, int(explained or 0))
    return found


async def save_shortfalls(
    conn: AsyncConnection,
    store_id: int,
    location: str,
    found: dict[str, tuple[Stored, sales.Shortfall]],
) -> None:
    """Store observed shortfalls: (as loaded, as now) per item."""
    # Key order, as every transaction takes sync_state rows (PostgreSQL deadlocks otherwise).
    for item, (stored, shortfall) in sorted(found.items()):
        await conn.execute(
            update(sync_state)
            .where(
                sync_state.c.store_id == store_id,
                sync_state.c.item_id == item,
                sync_state.c.location == location,
            )
            .values(unexplained=stored.unexplained(shortfall), lowered_at=shortfall.since)
        )


async def end_graces(conn: AsyncConnection, destination_store_ids: Sequence[int]) -> int:
    """Every order of these destinations is known now (a reconciliation on demand backfilled
    them first): a decrease still unexplained was a manual change, set back at once instead
    of when its grace ends. Returns how many levels it concerns."""
    if not destination_store_ids:
        return 0
    keys = (
        await conn.execute(
            select(sync_state.c.store_id, sync_state.c.item_id, sync_state.c.location).where(
                sync_state.c.store_id.in_(sorted(set(destination_store_ids))),
                sync_state.c.unexplained > func.coalesce(sync_state.c.explained, 0),
            )
        )
    ).all()
    # Key order, as every transaction takes sync_state rows (PostgreSQL deadlocks otherwise).
    for store_id, item, location in sorted(keys):
        await conn.execute(
            update(sync_state)
            .where(
                sync_state.c.store_id == store_id,
                sync_state.c.item_id == item,
                sync_state.c.location == location,
            )
            .values(unexplained=func.coalesce(sync_state.c.explained, 0), lowered_at=None)
        )
    return len(keys)


async def observe(rt: Runtime, conn: AsyncConnection, seen: Sequence[Observation]) -> None:
    """Record the shortfall each observed level leaves (in the order given, per level)."""
    if not seen:
        return
    targets = await link_targets(conn, [o.link_id for o in seen])
    now = rt.clock()
    by_level: dict[tuple[int, str], list[Observation]] = defaultdict(list)
    for o in seen:
        by_level[(o.store_id, o.location)].append(o)
    for (store_id, location), group in sorted(by_level.items()):
        found = await shortfalls(conn, store_id, location, [o.item_id for o in group])
        changed: dict[str, tuple[Stored, sales.Shortfall]] = {}
        last: dict[str, int] = {}  # several reports of a level in one batch follow each other
        for o in group:
            target = targets.get(o.link_id)
            previous = last.get(o.item_id, o.previous)
            last[o.item_id] = o.level
            stored = found.get(o.item_id)
            if target is None or stored is None:
                continue
            before = changed[o.item_id][1] if o.item_id in changed else stored.shortfall
            changed[o.item_id] = (
                stored,
                sales.observed(before, target=target, previous=previous, level=o.level, now=now),
            )
        await save_shortfalls(conn, store_id, location, changed)


# --- orders -------------------------------------------------------------------------------------


async def follow_order(
    rt: Runtime,
    conn: AsyncConnection,
    store: StoreRecord,
    snapshot: OrderSnapshot,
    countable: Mapping[int, Collection[str]],
) -> None:
    """After an order snapshot is applied: its held and taken units per linked line, the
    decreases they explain at its destination, and every destination of what it sold marked
    to be written (B24). ``countable``: per connection, the lines that may count (their link
    existed when the order was placed, B16); a line placed before its link was sold from the
    destination's own stock then, and holds nothing now."""
    seen = {
        r[0]: bool(r[1])
        for r in await conn.execute(
            select(orders_seen.c.connection_id, orders_seen.c.counted).where(
                orders_seen.c.destination_store_id == store.id,
                orders_seen.c.order_id == snapshot.id,
                # A snapshot older than what was applied changes nothing.
                orders_seen.c.version == snapshot.version,
            )
        )
    }
    lines = await _linked(conn, store.id, snapshot, sorted(seen), countable)
    before = {
        r[0]: (int(r[1]), int(r[2]))
        for r in await conn.execute(
            select(order_holds.c.line_id, order_holds.c.held, order_holds.c.taken).where(
                order_holds.c.destination_store_id == store.id,
                order_holds.c.order_id == snapshot.id,
            )
        )
    }
    rows: list[dict[str, Any]] = []
    newly_taken: dict[tuple[str, str], int] = defaultdict(int)  # (location, item) -> units
    sold_from: set[tuple[int, str]] = set()
    for connection_id, counted in sorted(seen.items()):
        by_line = lines.get(connection_id, {})
        units = sales.order_units(snapshot, counted, by_line)
        for line_id, u in sorted(units.items()):
            link_id, dest_item, location, source = by_line[line_id]
            held, taken = before.get(line_id, (0, 0))
            if (held, taken) == (u.held, u.taken):
                continue
            rows.append(
                {
                    "destination_store_id": store.id,
                    "order_id": snapshot.id,
                    "line_id": line_id,
                    "connection_id": connection_id,
                    "variant_link_id": link_id,
                    "held": u.held,
                    "taken": u.taken,
                    "version": snapshot.version,
                }
            )
            if location is not None:
                newly_taken[(location, dest_item)] += u.taken - taken
            sold_from.add(source)
    await upsert(
        conn,
        order_holds,
        rows,
        conflict=("destination_store_id", "order_id", "line_id"),
        update={
            "held": lambda s: s.excluded.held,
            "taken": lambda s: s.excluded.taken,
            "version": lambda s: s.excluded.version,
        },
    )
    # Units this destination's orders took explain a decrease seen there (or one still to be
    # seen: the next observation settles against the target, which already counts them).
    for (location, item), took in sorted(newly_taken.items()):
        if took > 0:
            await conn.execute(
                update(sync_state)
                .where(
                    sync_state.c.store_id == store.id,
                    sync_state.c.item_id == item,
                    sync_state.c.location == location,
                )
                .values(explained=sync_state.c.explained + took)
            )
    # Sales of this order not applied yet: each root item's destinations show them now.
    for root_store, root_item in (
        await conn.execute(
            select(ledger.c.root_store_id, ledger.c.root_item_id)
            .where(
                ledger.c.destination_store_id == store.id,
                ledger.c.order_id == snapshot.id,
                ledger.c.status != sales.APPLIED,
                ledger.c.delta < 0,
            )
            .distinct()
        )
    ).all():
        sold_from.add((int(root_store), str(root_item)))
    marks: list[tuple[int, int, int]] = []
    for source_store, item in sorted(sold_from):
        marks.extend(
            (c, v, d) for c, v, d, _ in await links_of_source_items(conn, source_store, [item])
        )
    await mark_pending(rt, conn, marks)


async def _linked(
    conn: AsyncConnection,
    store_id: int,
    snapshot: OrderSnapshot,
    connection_ids: list[int],
    countable: Mapping[int, Collection[str]],
) -> dict[int, dict[str, tuple[int, str, str | None, tuple[int, str]]]]:
    """Per connection: line id -> (variant link id, destination item, receiving location,
    (source store, source item)), for the lines of ``countable``."""
    variant_ids = sorted({line.variant_id for line in snapshot.lines if line.variant_id})
    if not variant_ids or not connection_ids:
        return {}
    rows = await conn.execute(
        select(
            variant_links.c.connection_id,
            variant_links.c.id,
            variant_links.c.destination_variant_id,
            variant_links.c.destination_item_id,
            connections.c.receiving_location,
            variant_links.c.source_store_id,
            variant_links.c.source_item_id,
        )
        .join(connections, connections.c.id == variant_links.c.connection_id)
        .where(
            variant_links.c.destination_store_id == store_id,
            variant_links.c.destination_variant_id.in_(variant_ids),
            variant_links.c.connection_id.in_(connection_ids),
            variant_links.c.status == "active",
        )
    )
    by_variant: dict[tuple[int, str], Any] = {(r[0], r[2]): r for r in rows}
    result: dict[int, dict[str, tuple[int, str, str | None, tuple[int, str]]]] = {}
    for connection_id in connection_ids:
        eligible = countable.get(connection_id, ())
        for line in snapshot.lines:
            r = by_variant.get((connection_id, line.variant_id or ""))
            if r is not None and line.id in eligible:
                result.setdefault(connection_id, {})[line.id] = (r[1], r[3], r[4], (r[5], r[6]))
    return result


async def newly_shown(
    conn: AsyncConnection, source_store_id: int, since: dict[str, datetime | None]
) -> set[str]:
    """Items with a sale applied since their last read started: a new read shows it, so their
    targets must be computed again even if the level did not move."""
    known = {i: t for i, t in since.items() if t is not None}
    if not known:
        return set()
    rows = await conn.execute(
        select(ledger.c.root_item_id, ledger.c.applied_at).where(
            ledger.c.root_store_id == source_store_id,
            ledger.c.root_item_id.in_(sorted(known)),
            ledger.c.status == sales.APPLIED,
            ledger.c.delta < 0,
            ledger.c.applied_at >= min(known.values()),
        )
    )
    return {item for item, at in rows if at is not None and at >= known[item]}
