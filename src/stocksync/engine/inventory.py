"""Source -> destinations: levels read in bulk, written as absolute quantities with
compare-and-swap, in batches (B14, B18, B20).

Two jobs, both coalesced:

- ``refresh_source(store)`` sums every dirty source item's level over the shared locations,
  from the levels reported per location (newest report first, see ``levels_reported``) or,
  where a report is missing, disagrees with another of the same second or cannot be trusted,
  from a read; records it, and marks the linked destination variants whose target moved as
  pending;
- ``flush_destination(connection)`` computes each pending variant's target from the recorded
  source level and writes the changed ones in batches, comparing against the level it last
  read or wrote there. A stale compare is read again and retried.

Taking the source's level once per burst, rather than once per destination, keeps a fan-out
to N destinations at (at most) one read plus N writes per batch of changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, delete, func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from stocksync.domain import inventory as level_rules
from stocksync.domain import sales as sale_rules
from stocksync.domain.levels import plausible_quantity, shared_total
from stocksync.domain.ports import (
    LevelWrite,
    LocationInactiveError,
    StorePlatform,
    TransientPlatformError,
)
from stocksync.engine import crash, sales, schedule
from stocksync.engine import levels_reported as reported
from stocksync.engine.marks import (
    flush_not_before,
    links_of_source_items,
    mark_pending,
    mark_source_dirty,
)
from stocksync.engine.records import StoreRecord, load_connection, load_store
from stocksync.engine.runtime import Runtime
from stocksync.storage import activity
from stocksync.storage.sql import excluded, upsert
from stocksync.storage.tables import (
    SOURCE_LOCATION,
    connections,
    flush_pending,
    locations,
    product_links,
    source_dirty,
    sync_state,
    variant_links,
)


class StaleLevelsError(TransientPlatformError):
    """Compare-and-swap kept failing: the destination is changing under us; retry later."""


# --- clearing marked work (marked in engine/marks.py) ------------------------------------------


async def _delete_in_key_order(
    conn: AsyncConnection, table: Table, key: ColumnElement[Any], where: ColumnElement[bool]
) -> None:
    """Delete rows of ``source_dirty`` or ``flush_pending``, locking them in key order first.

    A DELETE locks rows in the order its scan meets them (heap order under a sequential or
    bitmap scan, which PostgreSQL picks for these small tables), while every upsert of the same
    rows takes them in key order: the two deadlock on PostgreSQL. SQLite runs one writing
    transaction at a time and has no row locks to order."""
    if conn.dialect.name == "postgresql":
        await conn.execute(select(key).where(where).order_by(key).with_for_update())
    await conn.execute(delete(table).where(where))


async def grace_ended(rt: Runtime, connection_id: int) -> None:
    """The grace of a held destination decrease ended: flush the connection (its held
    variants are still pending), at its pace."""
    async with rt.db.begin() as conn:
        connection = await load_connection(conn, connection_id)
        if connection is None:
            return
        paced = await flush_not_before(conn, [connection_id])
        await schedule.flush_destination(
            rt, conn, connection_id, connection.destination_store_id, paced.get(connection_id)
        )


# --- refresh_source ---------------------------------------------------------------------------


async def shared_locations(conn: AsyncConnection, store_id: int) -> list[str]:
    rows = await conn.execute(
        select(locations.c.external_id)
        .where(
            locations.c.store_id == store_id,
            locations.c.shared.is_(True),
            locations.c.active.is_(True),
        )
        .order_by(locations.c.priority.is_(None), locations.c.priority, locations.c.external_id)
    )
    return [r[0] for r in rows]


async def refresh_source(rt: Runtime, store_id: int) -> int:
    """Take the level of dirty source items in batches; returns how many items were done."""
    total = 0
    while True:
        async with rt.db.begin() as conn:
            store = await load_store(conn, store_id)
            dirty = (
                await conn.execute(
                    select(source_dirty.c.item_id, source_dirty.c.seq, source_dirty.c.must_read)
                    .where(source_dirty.c.store_id == store_id)
                    .order_by(source_dirty.c.item_id)
                    .limit(rt.batch_size)
                )
            ).all()
            locs = await shared_locations(conn, store_id)
            if store is None or not dirty:
                return total
            if not locs:
                await _delete_in_key_order(
                    conn, source_dirty, source_dirty.c.item_id, source_dirty.c.store_id == store_id
                )
                await activity.record(
                    conn,
                    store_id=store_id,
                    level="error",
                    kind="no_shared_location",
                    message=(
                        f"{store.name} shares no active location, so its stock cannot be sent "
                        "to destinations; choose the locations to share"
                    ),
                )
                return total
            items = [d[0] for d in dirty]
            previous_rows = (
                await conn.execute(
                    select(
                        sync_state.c.item_id, sync_state.c.last_read, sync_state.c.read_at
                    ).where(
                        sync_state.c.store_id == store_id,
                        sync_state.c.location == SOURCE_LOCATION,
                        sync_state.c.item_id.in_(items),
                    )
                )
            ).all()
            previous = {r[0]: r[1] for r in previous_rows}
            previous_read = {r[0]: r[2] for r in previous_rows}
            known = await reported.location_levels(conn, store_id, items, locs)
        to_read = [d[0] for d in dirty if d[2] or reported.known_levels(known, d[0], locs) is None]
        levels: dict[tuple[str, str], int | None] = {}
        # Sales applied before this instant are in what the read returns (domain/sales.py).
        read_started = rt.clock()
        if to_read:
            levels = await rt.platforms(store).read_levels(to_read, locs)
            crash.point("refresh.after_read")
        now = rt.clock()
        async with rt.db.begin() as conn:
            stored = await reported.record_reads(
                conn,
                store_id,
                {(i, loc): known.get((i, loc)) for i in to_read for loc in locs},
                levels,
                now,
            )
            # Again after the reads are stored: a report that arrived meanwhile may stand.
            known = await reported.location_levels(conn, store_id, items, locs)
            # Items whose level is the read's own: no report (perhaps from before a sale was
            # applied) replaced it meanwhile.
            read_items = {i for i in to_read if all((i, loc) in stored for loc in locs)}
            shown_now = await sales.newly_shown(
                conn, store_id, {i: previous_read.get(i) for i in read_items}
            )
            state_rows: list[dict[str, Any]] = []
            moved: list[str] = []
            bad: list[tuple[str, int]] = []
            done: list[tuple[str, int]] = []
            for item, seq, _must_read in dirty:
                by_location = reported.known_levels(known, item, locs)
                if by_location is None:
                    # Flagged again by a report of the same second while we read: that report
                    # also marked the item dirty again, so the next refresh reads it.
                    continue
                done.append((item, seq))
                level = shared_total(by_location)
                if not plausible_quantity(level):
                    bad.append((item, level))
                    continue
                state_rows.append(
                    {
                        "store_id": store_id,
                        "item_id": item,
                        "location": SOURCE_LOCATION,
                        "last_read": level,
                        "read_version": 1,
                        "updated_at": now,
                        "read_at": read_started if item in read_items else None,
                    }
                )
                # A sale the level now shows leaves the target where it was only if the
                # level moved by as much: look again either way.
                if previous.get(item) != level or item in shown_now:
                    moved.append(item)
            await upsert(
                conn,
                sync_state,
                state_rows,
                conflict=("store_id", "item_id", "location"),
                update={
                    "last_read": excluded("last_read"),
                    "read_version": sync_state.c.read_version + 1,
                    "updated_at": excluded("updated_at"),
                    "read_at": lambda s: func.coalesce(s.excluded.read_at, sync_state.c.read_at),
                },
            )
            for item, level in bad:
                await activity.record(
                    conn,
                    store_id=store_id,
                    level="error",
                    kind="implausible_level",
                    message=f"the source reported {level} units of item {item}; not synced",
                    details={"item_id": item, "level": level},
                )
            # source_dirty before flush_pending, in the order a webhook's transaction takes
            # them: opposite orders deadlock on PostgreSQL.
            if done:
                await _delete_in_key_order(
                    conn,
                    source_dirty,
                    source_dirty.c.item_id,
                    and_(
                        source_dirty.c.store_id == store_id,
                        tuple_(source_dirty.c.item_id, source_dirty.c.seq).in_(done),
                    ),
                )
            if len(done) < len(dirty):
                await schedule.refresh_source(rt, conn, store_id)
            if moved:
                links = await links_of_source_items(conn, store_id, moved)
                await mark_pending(rt, conn, [(c, v, d) for c, v, d, _ in links])
            crash.point("refresh.before_commit")
        total += len(done)
        if len(dirty) < rt.batch_size:
            return total


# --- flush_destination ------------------------------------------------------------------------


@dataclass
class _Pending:
    link_id: int
    seq: int
    force_read: bool
    item_id: str
    source_level: int | None
    known: int | None  # what we last read or wrote at the destination, or a report said
    last_written: int | None
    unconfirmed: bool  # ``known`` came from a report: write over it even if it is the target
    reported_at: int | None  # of the last report taken at the destination, when loaded
    active: bool
    downstream: bool  # the destination is itself a source (a hub)


async def _load_pending(
    conn: AsyncConnection, connection_id: int, destination_store_id: int, location: str, limit: int
) -> list[_Pending]:
    src = sync_state.alias("src")
    dst = sync_state.alias("dst")
    query = (
        select(
            flush_pending.c.variant_link_id,
            flush_pending.c.seq,
            flush_pending.c.force_read,
            variant_links.c.destination_item_id,
            src.c.last_read,
            dst.c.last_read,
            dst.c.last_written,
            dst.c.unconfirmed,
            dst.c.reported_at,
            and_(
                variant_links.c.status == "active",
                func.coalesce(product_links.c.status, "active") == "active",
            ),
        )
        .select_from(flush_pending)
        .join(variant_links, variant_links.c.id == flush_pending.c.variant_link_id)
        .outerjoin(product_links, product_links.c.id == variant_links.c.product_link_id)
        .outerjoin(
            src,
            and_(
                src.c.store_id == variant_links.c.source_store_id,
                src.c.item_id == variant_links.c.source_item_id,
                src.c.location == SOURCE_LOCATION,
            ),
        )
        .outerjoin(
            dst,
            and_(
                dst.c.store_id == destination_store_id,
                dst.c.item_id == variant_links.c.destination_item_id,
                dst.c.location == location,
            ),
        )
        .where(flush_pending.c.connection_id == connection_id)
        .order_by(flush_pending.c.variant_link_id)
        .limit(limit)
    )
    rows = (await conn.execute(query)).all()
    return [
        _Pending(
            link_id=r[0],
            seq=r[1],
            force_read=bool(r[2]),
            item_id=r[3],
            source_level=r[4],
            known=r[5],
            last_written=r[6],
            unconfirmed=bool(r[7]),
            reported_at=r[8],
            active=bool(r[9]),
            downstream=False,
        )
        for r in rows
    ]


async def _clear_pending(conn: AsyncConnection, connection_id: int, done: list[_Pending]) -> None:
    if done:
        await _delete_in_key_order(
            conn,
            flush_pending,
            flush_pending.c.variant_link_id,
            and_(
                flush_pending.c.connection_id == connection_id,
                tuple_(flush_pending.c.variant_link_id, flush_pending.c.seq).in_(
                    [(p.link_id, p.seq) for p in done]
                ),
            ),
        )


async def _lock_reported_at(
    conn: AsyncConnection, store_id: int, location: str, items: Sequence[str]
) -> dict[str, int | None]:
    """The report time of each of ``items``' rows now, the rows locked (in key order, as every
    transaction takes sync_state rows) until the transaction ends, so that no report slips in
    between this look and the write's record. A row that does not exist has no report."""
    if not items:
        return {}
    query = (
        select(sync_state.c.item_id, sync_state.c.reported_at)
        .where(
            sync_state.c.store_id == store_id,
            sync_state.c.location == location,
            sync_state.c.item_id.in_(list(items)),
        )
        .order_by(sync_state.c.item_id)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return {r[0]: r[1] for r in await conn.execute(query)}


async def _settle_pending(
    rt: Runtime,
    conn: AsyncConnection,
    connection_id: int,
    destination_store_id: int,
    done: list[_Pending],
    reread: list[_Pending],
) -> None:
    """Clear the pending rows of ``done``; leave ``reread``'s pending with a forced read and
    schedule the flush that does it. All rows are locked in one key-ordered pass first:
    a delete and an update taking them in two passes could deadlock with an upsert."""
    if not reread:
        await _clear_pending(conn, connection_id, done)
        return
    links = sorted({p.link_id for p in done} | {p.link_id for p in reread})
    if conn.dialect.name == "postgresql":
        await conn.execute(
            select(flush_pending.c.variant_link_id)
            .where(
                flush_pending.c.connection_id == connection_id,
                flush_pending.c.variant_link_id.in_(links),
            )
            .order_by(flush_pending.c.variant_link_id)
            .with_for_update()
        )
    await _clear_pending(conn, connection_id, done)
    await conn.execute(
        update(flush_pending)
        .where(
            flush_pending.c.connection_id == connection_id,
            flush_pending.c.variant_link_id.in_(sorted(p.link_id for p in reread)),
        )
        .values(force_read=True, seq=flush_pending.c.seq + 1)
    )
    paced = await flush_not_before(conn, [connection_id])
    await schedule.flush_destination(
        rt, conn, connection_id, destination_store_id, paced.get(connection_id)
    )


async def _clear_connection(conn: AsyncConnection, connection_id: int) -> None:
    await _delete_in_key_order(
        conn,
        flush_pending,
        flush_pending.c.variant_link_id,
        flush_pending.c.connection_id == connection_id,
    )


async def _write_with_cas(
    rt: Runtime,
    platform: StorePlatform,
    location: str,
    targets: dict[str, int],
    known: dict[str, int | None],
    retarget: Callable[[str, int | None, int | None], int] | None = None,
) -> tuple[dict[str, int], dict[str, int], dict[str, int | None]]:
    """Bring the destination to ``targets``. Returns (written, observed, written_at): the levels
    we set, the levels we found already right when re-reading after a stale compare, and the
    platform's time of each write when it gave one (``SetOutcome.changed_at``). ``retarget``
    (item, level known before, level found) gives an item's target again after a stale
    compare: what changed it may have been a sale, whose units must not be shown again."""
    written: dict[str, int] = {}
    observed: dict[str, int] = {}
    written_at: dict[str, int | None] = {}
    todo = dict(targets)
    for _round in range(rt.stale_retries + 1):
        if not todo:
            break
        stale_items: list[str] = []
        items = sorted(todo)
        for start in range(0, len(items), rt.batch_size):
            chunk = items[start : start + rt.batch_size]
            outcome = await platform.set_levels(
                [LevelWrite(i, location, todo[i], known.get(i)) for i in chunk]
            )
            crash.point("flush.after_set")
            if outcome.applied:
                for i in chunk:
                    written[i] = todo[i]
                    written_at[i] = outcome.changed_at
            else:
                stale_items.extend(chunk)
        todo = {i: todo[i] for i in stale_items}
        if not todo:
            break
        # Someone (a sale, a merchant) changed these since we last looked: look again.
        fresh = await platform.read_levels(sorted(todo), [location])
        for i in list(todo):
            now_level = fresh.get((i, location))
            before = known.get(i)
            known[i] = now_level
            if retarget is not None:
                todo[i] = retarget(i, before, now_level)
            if now_level == todo[i]:
                observed[i] = now_level
                del todo[i]
    if todo:
        raise StaleLevelsError(f"{len(todo)} levels kept changing during the write; will retry")
    return written, observed, written_at


async def _note_writing(rt: Runtime, store_id: int, location: str, targets: dict[str, int]) -> None:
    """Record the levels about to be written: the platform may send their echo before the
    write's outcome is recorded, and it must still be recognised as ours."""
    now = rt.clock()
    async with rt.db.begin() as conn:
        await upsert(
            conn,
            sync_state,
            [
                {
                    "store_id": store_id,
                    "item_id": item,
                    "location": location,
                    "writing": target,
                    "updated_at": now,
                }
                for item, target in sorted(targets.items())
            ],
            conflict=("store_id", "item_id", "location"),
            update={"writing": excluded("writing")},
        )


@dataclass
class _Batch:
    """One batch of a connection's pending variants, as its first transaction loaded it."""

    connection_id: int
    dest: StoreRecord
    location: str
    pending: list[_Pending]
    work: list[_Pending]  # the pending variants whose source level is known
    by_link: dict[int, int]  # each link's target: the source's level less sales and holds
    stored: dict[str, sales.Stored]  # each item's shortfall as stored


@dataclass
class _Outcome:
    """What a batch's platform calls did: the levels read, the plan, the writes."""

    must_read: list[str]
    read_at: dict[str, int | None]  # the platform's time of each level read
    plan: level_rules.FlushPlan
    drift: dict[str, tuple[int | None, int]]
    written: dict[str, int]
    observed: dict[str, int]
    written_at: dict[str, int | None]


async def flush_destination(rt: Runtime, connection_id: int) -> int:
    """Write pending levels of one connection; returns the number of levels written.

    Paced: a job starts writing at most once per ``rt.flush_interval`` (marks schedule it at
    ``connections.flush_not_before``), then writes everything pending, batch after batch."""
    written_total = 0
    first = True
    while True:
        batch = await _load_batch(rt, connection_id, first=first)
        if batch is None:
            return written_total
        first = False
        outcome = await _plan_and_write(rt, batch)
        if outcome is None:
            return written_total
        now = rt.clock()
        async with rt.db.begin() as conn:
            await _record_flush(rt, conn, batch, outcome, now)
            crash.point("flush.before_commit")
        written_total += len(outcome.written)
        holding = outcome.plan.holding
        if len(batch.pending) < rt.batch_size or all(p.item_id in holding for p in batch.pending):
            return written_total


async def _load_batch(rt: Runtime, connection_id: int, *, first: bool) -> _Batch | None:
    """The next batch to write, with its targets; None when the job ends here (nothing
    pending, nowhere to write, or not its turn yet: then it is scheduled at its pace)."""
    async with rt.db.begin() as conn:
        connection = await load_connection(conn, connection_id)
        if connection is None:
            return None
        dest = await load_store(conn, connection.destination_store_id)
        if connection.status != "active" or dest is None or dest.status != "active":
            # Paused or disconnected: nothing to write. Resuming marks everything again.
            await _clear_connection(conn, connection_id)
            return None
        location = connection.receiving_location
        if location is None:
            await _clear_connection(conn, connection_id)
            await activity.record(
                conn,
                store_id=dest.id,
                level="error",
                kind="no_receiving_location",
                message=f"{dest.name} has no receiving location for this connection; "
                "choose one so that stock can be synced",
                details={"connection_id": connection_id},
            )
            return None
        pending = await _load_pending(conn, connection_id, dest.id, location, rt.batch_size)
        if not pending:
            return None
        started = rt.clock()
        if first:
            not_before = (await flush_not_before(conn, [connection_id])).get(connection_id)
            if not_before is not None and not_before > started:
                # Marked while the last flush was setting its pace: wait for the turn.
                await schedule.flush_destination(rt, conn, connection_id, dest.id, not_before)
                return None
        if rt.flush_interval:
            await conn.execute(
                update(connections)
                .where(connections.c.id == connection_id)
                .values(flush_not_before=started + rt.flush_interval)
            )
        missing_source = [p for p in pending if p.active and p.source_level is None]
        if missing_source:
            ids = [p.link_id for p in missing_source]
            rows = await conn.execute(
                select(variant_links.c.source_item_id).where(variant_links.c.id.in_(ids))
            )
            await mark_source_dirty(rt, conn, connection.source_store_id, [r[0] for r in rows])
        # The source's level less sales in flight and units held (engine/sales.py).
        by_link = await sales.link_targets(
            conn, [p.link_id for p in pending if p.active and p.source_level is not None]
        )
        work = [p for p in pending if p.link_id in by_link]
        short = await sales.shortfalls(conn, dest.id, location, [p.item_id for p in work])
    # Items with no level known there yet have no shortfall (nothing seen to go down).
    stored = {
        p.item_id: short.get(p.item_id, sales.Stored(sale_rules.Shortfall(), 0)) for p in work
    }
    return _Batch(connection_id, dest, location, pending, work, by_link, stored)


async def _plan_and_write(rt: Runtime, batch: _Batch) -> _Outcome | None:
    """Read what must be read, plan the flush (domain/inventory.py) and write it with
    compare-and-swap; None when the receiving location turned out to be inactive (logged)."""
    dest, location = batch.dest, batch.location
    items = [
        level_rules.FlushItem(
            item_id=p.item_id,
            target=batch.by_link[p.link_id],
            shortfall=batch.stored[p.item_id].shortfall,
            known=p.known,
            unconfirmed=p.unconfirmed,
            last_written=p.last_written,
            force_read=p.force_read,
        )
        for p in batch.work
    ]
    must_read = level_rules.to_read(items)
    platform = rt.platforms(dest)
    read: dict[str, int | None] = {}
    read_at: dict[str, int | None] = {}  # the platform's time of each level read
    if must_read:
        fresh = await platform.read_levels(must_read, [location])
        crash.point("flush.after_read")
        read = {i: fresh.get((i, location)) for i in must_read}
        read_at = {i: fresh.updated_at.get((i, location)) for i in must_read}
    # A decrease no order explains yet is not raised within the grace (B24).
    plan = level_rules.plan_flush(items, read, rt.clock(), rt.sale_grace)
    drift = plan.drift
    if plan.changed:
        await _note_writing(rt, dest.id, location, plan.changed)
    try:
        # plan.known is the compare value of each write, updated by a stale compare's read.
        written, observed, written_at = await _write_with_cas(
            rt, platform, location, plan.changed, plan.known, plan.after_stale_compare
        )
    except LocationInactiveError as exc:
        async with rt.db.begin() as conn:
            await _clear_connection(conn, batch.connection_id)
            await activity.record(
                conn,
                store_id=dest.id,
                level="error",
                kind="location_inactive",
                message=f"the receiving location {exc.location_id} of {dest.name} is "
                "deactivated or deleted; choose another receiving location",
                details={"connection_id": batch.connection_id, "location": exc.location_id},
                retry={
                    "task": schedule.FLUSH_DESTINATION,
                    "args": {"connection_id": batch.connection_id},
                },
            )
        return None
    return _Outcome(must_read, read_at, plan, drift, written, observed, written_at)


async def _record_flush(
    rt: Runtime, conn: AsyncConnection, batch: _Batch, outcome: _Outcome, now: datetime
) -> None:
    """Record a batch's levels, settle its pending rows, schedule what follows and log it."""
    dest, connection_id = batch.dest, batch.connection_id
    written, holding = outcome.written, outcome.plan.holding
    reread = await _save_levels(conn, batch, outcome, now)
    if written and dest.is_source:
        # A hub: what we wrote is its stock too, to be sent further down the chain.
        # (source_dirty before flush_pending, as everywhere: see refresh_source.)
        await mark_source_dirty(rt, conn, dest.id, sorted(written))
    # Held decreases stay pending, looked at again when their grace ends; levels
    # that must be read stay pending with a forced read.
    by_item = {p.item_id: p for p in batch.work}
    await _settle_pending(
        rt,
        conn,
        connection_id,
        dest.id,
        [p for p in batch.pending if p.item_id not in holding and p.item_id not in reread],
        [by_item[i] for i in reread],
    )
    if holding:
        await schedule.grace_ended(rt, conn, connection_id, min(holding.values()))
    if written:
        await activity.record(
            conn,
            store_id=dest.id,
            level="info",
            kind="levels_written",
            message=f"updated {len(written)} stock levels on {dest.name}",
            details={"connection_id": connection_id, "count": len(written)},
        )
    if outcome.drift:
        await activity.record(
            conn,
            store_id=dest.id,
            level="warning",
            kind="drift_repaired",
            message=f"{len(outcome.drift)} levels on {dest.name} differed from the source's "
            "and were set back",
            details={
                "connection_id": connection_id,
                "items": {i: {"found": f, "set": t} for i, (f, t) in outcome.drift.items()},
            },
        )


async def _save_levels(
    conn: AsyncConnection, batch: _Batch, outcome: _Outcome, now: datetime
) -> list[str]:
    """Store the levels a batch wrote, read or kept, each ordered against the reports taken
    meanwhile; returns the items written whose level must be read before the next write."""
    dest, location = batch.dest, batch.location
    written, observed, must_read = outcome.written, outcome.observed, outcome.must_read
    plan = outcome.plan
    loaded_at = {p.item_id: p.reported_at for p in batch.work}
    # A report the engine took but never saw confirmed stays unconfirmed: a held decrease
    # is not written over within its grace, and must be once the grace ends.
    unsettled = {
        p.item_id
        for p in batch.work
        if p.unconfirmed
        and p.item_id not in must_read
        and p.item_id not in observed
        and p.item_id not in written
    }
    # Levels we wrote or read, ordered against the reports taken meanwhile.
    only_read = {i for i in must_read if i not in written}
    reported_now = await _lock_reported_at(
        conn, dest.id, location, sorted(set(written) | only_read)
    )
    ours_at = {**outcome.read_at, **outcome.written_at}
    standing = {
        i: level_rules.against_reports(loaded_at.get(i), reported_now.get(i), ours_at[i])
        for i in sorted(set(written) | only_read)
    }
    state_rows: list[dict[str, Any]] = []
    for item in sorted(plan.targets):
        level = written.get(item, observed.get(item, plan.known.get(item)))
        if level is None:
            continue
        ours = standing.get(item) is level_rules.Standing.OURS
        state_rows.append(
            {
                "store_id": dest.id,
                "item_id": item,
                "location": location,
                "last_read": level,
                "read_version": 1,
                "last_written": written.get(item),
                "write_version": 1 if item in written else 0,
                "writing": None,
                "unconfirmed": item in unsettled,
                "reported_at": (
                    level_rules.time_after_ours(reported_now.get(item), ours_at[item])
                    if ours
                    else loaded_at.get(item)
                ),
                "updated_at": now,
                "unexplained": batch.stored[item].unexplained(plan.shortfall[item]),
                "lowered_at": plan.shortfall[item].since,
            }
        )
    await upsert(
        conn,
        sync_state,
        [
            r
            for r in state_rows
            if r["item_id"] in written and standing[r["item_id"]] is level_rules.Standing.OURS
        ],
        conflict=("store_id", "item_id", "location"),
        update={
            "last_read": excluded("last_read"),
            "last_written": excluded("last_written"),
            "write_version": sync_state.c.write_version + 1,
            "writing": None,
            "unconfirmed": False,
            "reported_at": excluded("reported_at"),
            "updated_at": excluded("updated_at"),
            "unexplained": excluded("unexplained"),
            "lowered_at": excluded("lowered_at"),
        },
    )
    # A report taken while the write was in flight: ours is recorded (its echo is
    # recognised), the level is the report's if it is later; if the two cannot be
    # ordered, the level is read before the next write (unconfirmed, forced read).
    reread = sorted(
        i for i, st in standing.items() if i in written and st is level_rules.Standing.UNKNOWN
    )
    for item, st in sorted(standing.items()):
        if item not in written or st is level_rules.Standing.OURS:
            continue
        await conn.execute(
            update(sync_state)
            .where(
                sync_state.c.store_id == dest.id,
                sync_state.c.item_id == item,
                sync_state.c.location == location,
            )
            .values(
                last_written=written[item],
                write_version=sync_state.c.write_version + 1,
                writing=None,
                updated_at=now,
                **({"unconfirmed": True} if item in reread else {}),
            )
        )
    # Levels read and left alone: stored where the read stands against the reports
    # taken meanwhile, with the read's time (a report that stands marked the variant
    # pending again).
    await upsert(
        conn,
        sync_state,
        [
            r
            for r in state_rows
            if r["item_id"] in only_read and standing[r["item_id"]] is level_rules.Standing.OURS
        ],
        conflict=("store_id", "item_id", "location"),
        update={
            "last_read": excluded("last_read"),
            "read_version": sync_state.c.read_version + 1,
            "unconfirmed": excluded("unconfirmed"),
            "reported_at": excluded("reported_at"),
            "updated_at": excluded("updated_at"),
            "unexplained": excluded("unexplained"),
            "lowered_at": excluded("lowered_at"),
        },
    )
    # The others: stored unless a report arrived meanwhile.
    await upsert(
        conn,
        sync_state,
        [r for r in state_rows if r["item_id"] not in written and r["item_id"] not in only_read],
        conflict=("store_id", "item_id", "location"),
        update={
            "last_read": excluded("last_read"),
            "read_version": sync_state.c.read_version + 1,
            "unconfirmed": excluded("unconfirmed"),
            "updated_at": excluded("updated_at"),
            "unexplained": excluded("unexplained"),
            "lowered_at": excluded("lowered_at"),
        },
        where=lambda s: sync_state.c.reported_at.is_not_distinct_from(s.excluded.reported_at),
    )
    return reread
