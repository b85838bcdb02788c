"""Reconciliation (B19): compare every linked level with the source's and repair drift.

``reconcile_source`` enqueues the ``reconcile`` job, which runs under the source's refresh
lock (``refresh:<store>``) like every other read of the source's levels: a read that ran
beside a refresh could record its older answer over the refresh's newer one. The job marks
every linked item of the source for a fresh read, reads it, then marks every linked
destination variant for a forced read; the flush writes only what differs (compare-and-swap,
as always) and records each repair in the activity log (``drift_repaired``, with what it found
and what it set)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from stocksync.domain.levels import plausible_quantity, shared_total
from stocksync.domain.sales import sale_target
from stocksync.engine import schedule
from stocksync.engine.inventory import refresh_source, shared_locations
from stocksync.engine.marks import links_of_source_items, mark_pending, mark_source_dirty
from stocksync.engine.orders import scan_orders
from stocksync.engine.records import StoreRecord, load_connection, load_store
from stocksync.engine.runtime import Runtime
from stocksync.engine.sales import end_graces, held_units, in_flight
from stocksync.storage import activity
from stocksync.storage.tables import (
    SOURCE_LOCATION,
    connections,
    product_links,
    stores,
    sync_state,
    variant_links,
)


async def reconcile_source(rt: Runtime, store_id: int) -> int:
    """Schedule the source's reconciliation; returns how many linked variants it compares."""
    async with rt.db.begin() as conn:
        rows = await links_of_source_items(conn, store_id)
        await activity.record(
            conn,
            store_id=store_id,
            level="info",
            kind="reconciliation",
            message=f"reconciliation started for {len(rows)} linked variants",
        )
        await schedule.reconcile(rt, conn, store_id)
    return len(rows)


async def run_reconcile(rt: Runtime, store_id: int) -> int:
    """The ``reconcile`` job's body; it holds the source's refresh lock (see the module doc).
    Returns how many linked variants were scheduled for comparison."""
    async with rt.db.begin() as conn:
        rows = await links_of_source_items(conn, store_id)
        await mark_source_dirty(rt, conn, store_id, sorted({r[3] for r in rows}))
    # Read the source now, then compare every destination, even where the source did not move.
    await refresh_source(rt, store_id)
    async with rt.db.begin() as conn:
        await mark_pending(rt, conn, [(r[0], r[1], r[2]) for r in rows], force_read=True)
    return len(rows)


# --- on demand: ``stocksync reconcile`` --------------------------------------------------------

# What a real run waits for between its steps: the queue's jobs (its own and everyone's) run
# until quiet, under their usual locks. True when quiet within its deadline.
Settle = Callable[[], Awaitable[bool]]
# (phase, done, total): for a progress bar.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class MissedOrder:
    """An order changed on a destination since stocksync last saw it (webhooks lost)."""

    store_id: int
    store: str
    order_id: str
    version: str


@dataclass(frozen=True)
class LevelDrift:
    """One level that differed. For a source, ``found`` is the level stocksync recorded and
    ``expected`` the one the platform reports (summed over the shared locations, ``location``
    ``*``); for a destination, ``found`` is the platform's level at the receiving location and
    ``expected`` the level the source's gives it. ``set`` is what the level is after the
    repair; None in a dry run, or when it still differs."""

    store_id: int
    store: str
    role: str  # "source" or "destination"
    sku: str
    item_id: str
    location: str
    found: int | None
    expected: int
    set: int | None = None

    @property
    def key(self) -> tuple[int, str, str]:
        return (self.store_id, self.item_id, self.location)


@dataclass
class ReconcileReport:
    dry_run: bool
    sources: list[str] = field(default_factory=list)
    orders: list[MissedOrder] = field(default_factory=list)
    drift: list[LevelDrift] = field(default_factory=list)
    compared: int = 0  # levels compared (each source item and each linked destination level)
    remaining: list[LevelDrift] = field(default_factory=list)  # after a real run's re-check
    settled: bool = True  # the queue's work finished within its deadline

    @property
    def agreed(self) -> bool:
        """Everything agrees: after a real run, on the re-check; in a dry run, already."""
        if self.dry_run:
            return not self.drift and not self.orders
        return self.settled and not self.remaining


@dataclass(frozen=True)
class _Link:
    connection_id: int
    source_store_id: int
    destination_store_id: int
    source_item_id: str
    destination_item_id: str
    sku: str
    link_id: int


async def _links_in_scope(conn: AsyncConnection, store_id: int | None) -> list[_Link]:
    """Active links of active connections between active stores; with ``store_id``, those
    whose source or destination it is."""
    src, dst = stores.alias("src"), stores.alias("dst")
    query = (
        select(
            variant_links.c.connection_id,
            variant_links.c.source_store_id,
            variant_links.c.destination_store_id,
            variant_links.c.source_item_id,
            variant_links.c.destination_item_id,
            variant_links.c.sku,
            variant_links.c.id,
        )
        .join(connections, connections.c.id == variant_links.c.connection_id)
        .outerjoin(product_links, product_links.c.id == variant_links.c.product_link_id)
        .join(src, src.c.id == variant_links.c.source_store_id)
        .join(dst, dst.c.id == variant_links.c.destination_store_id)
        .where(
            variant_links.c.status == "active",
            connections.c.status == "active",
            func.coalesce(product_links.c.status, "active") == "active",
            src.c.status == "active",
            dst.c.status == "active",
        )
        .order_by(
            variant_links.c.source_store_id, variant_links.c.connection_id, variant_links.c.id
        )
    )
    if store_id is not None:
        query = query.where(
            or_(
                variant_links.c.source_store_id == store_id,
                variant_links.c.destination_store_id == store_id,
            )
        )
    return [_Link(*r) for r in await conn.execute(query)]


async def _missed_orders(rt: Runtime, store: StoreRecord) -> list[MissedOrder]:
    """Orders changed since the backfill cursor that were not applied as they stand: what
    ``backfill_orders`` would schedule. Reads only."""
    scan = await scan_orders(rt, store)
    return [MissedOrder(store.id, store.name, s.id, s.version) for s in scan.unapplied]


async def _read(
    rt: Runtime, store: StoreRecord, items: Sequence[str], locations: Sequence[str]
) -> dict[tuple[str, str], int | None]:
    levels: dict[tuple[str, str], int | None] = {}
    platform = rt.platforms(store)
    for start in range(0, len(items), rt.batch_size):
        levels.update(await platform.read_levels(items[start : start + rt.batch_size], locations))
    return levels


async def _compare(
    rt: Runtime, links: Sequence[_Link], progress: Progress | None
) -> tuple[list[LevelDrift], int, dict[tuple[int, str, str], int | None]]:
    """Every linked level against what the source's platform level gives it. Reads only:
    nothing is recorded, so these reads need no lock (the repair reads again under it)."""
    drift: list[LevelDrift] = []
    # Every compared level as found (a source's: as recorded), by ``LevelDrift.key``.
    found_at: dict[tuple[int, str, str], int | None] = {}
    compared = 0
    total = len(links) + len({(k.source_store_id, k.source_item_id) for k in links})
    by_source: dict[int, list[_Link]] = {}
    for link in links:
        by_source.setdefault(link.source_store_id, []).append(link)
    for source_id, source_links in sorted(by_source.items()):
        async with rt.db.connect() as conn:
            source = await load_store(conn, source_id)
            locs = await shared_locations(conn, source_id)
            items = sorted({k.source_item_id for k in source_links})
            recorded = dict(
                (
                    await conn.execute(
                        select(sync_state.c.item_id, sync_state.c.last_read).where(
                            sync_state.c.store_id == source_id,
                            sync_state.c.location == SOURCE_LOCATION,
                            sync_state.c.item_id.in_(items),
                        )
                    )
                ).all()
            )
            records = {
                c: await load_connection(conn, c) for c in {k.connection_id for k in source_links}
            }
            # Sales counted and not applied yet will come off the level read below, and units
            # held by orders not counted stay off their store: the flush's own target (B24).
            flying = await in_flight(conn, source_id, dict.fromkeys(items, rt.clock()))
            held = await held_units(conn, [k.link_id for k in source_links])
        if source is None or not locs:
            continue  # nothing can be synced from it; its refresh reports why
        levels = await _read(rt, source, items, locs)
        sku_of = {k.source_item_id: k.sku for k in source_links}
        totals: dict[str, int] = {}
        for item in items:
            level = shared_total({loc: levels.get((item, loc)) for loc in locs})
            compared += 1
            found_at[(source.id, item, "*")] = recorded.get(item)
            if not plausible_quantity(level):
                continue  # the refresh reports an implausible level; nothing is synced
            totals[item] = level
            if recorded.get(item) != level:
                drift.append(
                    LevelDrift(
                        source.id,
                        source.name,
                        "source",
                        sku_of[item],
                        item,
                        "*",
                        recorded.get(item),
                        level,
                    )
                )
        if progress is not None:
            progress("comparing", compared, total)
        for connection_id, record in sorted(records.items()):
            if record is None or record.receiving_location is None:
                continue
            async with rt.db.connect() as conn:
                dest = await load_store(conn, record.destination_store_id)
            if dest is None:
                continue
            mine = [k for k in source_links if k.connection_id == connection_id]
            location = record.receiving_location
            found = await _read(rt, dest, sorted({k.destination_item_id for k in mine}), [location])
            for link in mine:
                compared += 1
                if link.source_item_id not in totals:
                    continue
                # The engine's own target (B20, B24), as the flush computes it.
                expected = sale_target(
                    totals[link.source_item_id],
                    flying.get(link.source_item_id, 0),
                    held.get(link.link_id, 0),
                    record.settings.safety_buffer,
                )
                current = found.get((link.destination_item_id, location))
                found_at[(dest.id, link.destination_item_id, location)] = current
                if current != expected:
                    drift.append(
                        LevelDrift(
                            dest.id,
                            dest.name,
                            "destination",
                            link.sku,
                            link.destination_item_id,
                            location,
                            current,
                            expected,
                        )
                    )
            if progress is not None:
                progress("comparing", compared, total)
    return drift, compared, found_at


async def reconcile(
    rt: Runtime,
    store_id: int | None = None,
    *,
    dry_run: bool = False,
    settle: Settle | None = None,
    progress: Progress | None = None,
) -> ReconcileReport:
    """B19 on demand, for every source (or the links of one store, source or destination).

    First the orders whose webhooks were lost: each destination's ``backfill_orders`` job is
    enqueued (under its lock, as the periodic one runs) and schedules their ``sync_order``
    jobs (under each order's lock, target-based, so an order already counted changes
    nothing); ``settle`` waits for them and for the ledger, refresh and flush jobs they lead
    to. Then every linked level is compared with what the
    source's level gives it; each source with a difference is reconciled by its
    ``reconcile`` job (under the source's refresh lock, destinations written with
    compare-and-swap as every flush), ``settle`` waits again, and everything is compared
    again. A dry run only reads: no platform write, ledger row, job or cursor."""
    if not dry_run and settle is None:
        raise ValueError("a real reconciliation needs ``settle`` to wait for its jobs")
    report = ReconcileReport(dry_run=dry_run)
    async with rt.db.connect() as conn:
        links = await _links_in_scope(conn, store_id)
        destinations = [
            s
            for s in [
                await load_store(conn, d) for d in sorted({k.destination_store_id for k in links})
            ]
            if s is not None and s.is_destination
        ]
        sources = [await load_store(conn, s) for s in sorted({k.source_store_id for k in links})]
    report.sources = [s.name for s in sources if s is not None]
    for n, dest in enumerate(destinations, 1):
        report.orders.extend(await _missed_orders(rt, dest))
        if progress is not None:
            progress("orders", n, len(destinations))
    if not dry_run and destinations:
        assert settle is not None
        async with rt.db.begin() as conn:
            for dest in destinations:
                await schedule.backfill_orders(rt, conn, dest.id)
        report.settled = await settle()
        if report.settled:
            # Every order is known now: a destination decrease that none explains was a
            # manual change, and is repaired now rather than when its sale grace ends.
            async with rt.db.begin() as conn:
                await end_graces(conn, [d.id for d in destinations])
    report.drift, report.compared, _ = await _compare(rt, links, progress)
    if dry_run or not report.drift:
        return report
    assert settle is not None
    by_key = {(k.destination_store_id, k.destination_item_id): k.source_store_id for k in links}
    to_repair = sorted(
        {
            d.store_id if d.role == "source" else by_key[(d.store_id, d.item_id)]
            for d in report.drift
        }
    )
    for attempt in range(2):
        for source_id in to_repair:
            await reconcile_source(rt, source_id)
        report.settled = await settle() and report.settled
        remaining, _, after = await _compare(rt, links, progress)
        lowered = [
            d
            for d in remaining
            if d.role == "destination" and d.found is not None and d.found < d.expected
        ]
        if attempt or not lowered or not report.settled:
            break
        # A decrease the repair's own reads found is held for the sale grace, as any
        # decrease no order explains yet; every order is known here, so it was a manual
        # change: set it back now.
        async with rt.db.begin() as conn:
            await end_graces(conn, sorted({d.store_id for d in lowered}))
        to_repair = sorted({by_key[(d.store_id, d.item_id)] for d in lowered})
    report.remaining = remaining
    still = {d.key for d in remaining}
    # What the level is now, as read again: the expected level, unless it still differs.
    report.drift = [d if d.key in still else replace(d, set=after.get(d.key)) for d in report.drift]
    return report
