"""Reconciliation (B19) on a real database, SQLite and PostgreSQL: the periodic one takes the
source's refresh lock like every other source read, and the on-demand one reports exactly what
differed and what it did."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import select

from stocksync.domain.connection import ConnectionSettings
from stocksync.domain.ports import LevelsRead
from stocksync.engine.catalog import import_products
from stocksync.engine.marks import mark_source_dirty
from stocksync.engine.periodic import run_periodic
from stocksync.engine.reconcile import LevelDrift, reconcile
from stocksync.platforms.memory import MemoryStore
from stocksync.storage.tables import SOURCE_LOCATION, ledger, metadata, sync_state
from tests.harness import Harness
from tests.integration.jobs_worker_proc import wait_until


async def _setup(h: Harness, **destinations: ConnectionSettings) -> None:
    """A source with TEE-S and TEE-M (10 units each), imported by each destination."""
    await h.add_store("source", "source")
    h.shop("source").add_product("Tee", ["TEE-S", "TEE-M"], available=10)
    for name, settings in (destinations or {"dest": ConnectionSettings()}).items():
        await h.add_store(name, "destination")
        record = await h.connect(name, "source", settings)
        assert (await import_products(h.rt, record.id)).linked_variants == 2
    h.world.take_outbox()  # creation noise before linking is not under test
    await h.settle()
    h.world.reset_counters()


def _item(shop: MemoryStore, sku: str) -> str:
    return shop.variant_by_sku(sku).item_id


async def _recorded(h: Harness, store: str, item: str) -> int | None:
    async with h.db.connect() as conn:
        value = await conn.scalar(
            select(sync_state.c.last_read).where(
                sync_state.c.store_id == h.stores[store].id,
                sync_state.c.item_id == item,
                sync_state.c.location == SOURCE_LOCATION,
            )
        )
    return None if value is None else int(value)


class HeldRead:
    """The source's ``read_levels``: the first call reads at once, then holds its answer until
    ``release`` is set (a read in flight while the shop changes)."""

    def __init__(self, shop: MemoryStore) -> None:
        self.inner = shop.read_levels
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.calls = 0

    async def __call__(self, item_ids: Sequence[str], location_ids: Sequence[str]) -> LevelsRead:
        self.calls += 1
        answer = await self.inner(item_ids, location_ids)
        if self.calls == 1:
            self.entered.set()
            await self.release.wait()
        return answer


# --- sequence 8: one lock for every source read ----------------------------------------------


async def test_a_periodic_reconciliation_never_overwrites_a_newer_source_read(
    h: Harness,
) -> None:
    await _setup(h)
    src = h.shop("source")
    item = _item(src, "TEE-S")
    held = HeldRead(src)
    src.read_levels = held  # type: ignore[method-assign]
    periodic = asyncio.create_task(run_periodic(h.rt, h.stores["source"].id, timedelta(hours=1)))
    entered = asyncio.create_task(held.entered.wait())
    # No worker yet: whatever reads first is the reconciliation itself (run in the periodic
    # job's body, or in the job it enqueues, which the worker started below takes first).
    await asyncio.wait([periodic, entered], return_when=asyncio.FIRST_COMPLETED)
    worker = asyncio.create_task(h.rt.queue.run_worker(h.registry, concurrency=3))
    try:
        await asyncio.wait_for(entered, 20)  # the reconciliation read 10; its answer is held
        # A sale applied to the source meanwhile, marked for a read as our own adjustments are.
        src.adjust(item, src.primary_location_id, -1)
        h.world.take_outbox()
        async with h.db.begin() as conn:
            await mark_source_dirty(h.rt, conn, h.stores["source"].id, [item])

        async def read_again() -> bool:
            return await _recorded(h, "source", item) == 9

        # A refresh running beside the reconciliation records 9 now; one that waits for the
        # source's refresh lock cannot, and this bound passes.
        with contextlib.suppress(AssertionError):
            await wait_until(read_again, 3.0, "a refresh beside the reconciliation")
        held.release.set()
        await periodic
    finally:
        held.release.set()
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
    await h.settle()
    assert await _recorded(h, "source", item) == 9
    assert h.level("dest", "TEE-S") == 9


# --- on demand (B19): what differed, what was done -------------------------------------------


async def _database(h: Harness) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, and the queue's jobs per status."""
    rows: dict[str, list[tuple[object, ...]]] = {}
    async with h.db.connect() as conn:
        for table in metadata.sorted_tables:
            found = await conn.execute(select(table))
            rows[table.name] = sorted((tuple(r) for r in found), key=repr)
    rows["jobs"] = sorted((await h.rt.queue.counts()).items())
    return rows


async def _drifted(h: Harness) -> str:
    """Drift injected behind stocksync's back, every webhook lost: a destination level changed
    by hand, a source level changed, and a paid order of 2 on the destination. Returns the
    order's id."""
    await _setup(h)
    src, dest = h.shop("source"), h.shop("dest")
    dest.set_available(_item(dest, "TEE-M"), dest.primary_location_id, 4)
    src.set_available(_item(src, "TEE-M"), src.primary_location_id, 7)
    order = dest.place_order([(dest.variant_by_sku("TEE-S").id, 2)])  # dest TEE-S 10 -> 8
    h.world.take_outbox()
    return order.id


async def _settle(h: Harness) -> bool:
    await h.settle()
    return True


async def test_a_dry_run_lists_each_difference_and_changes_nothing(h: Harness) -> None:
    order_id = await _drifted(h)
    src, dest = h.shop("source"), h.shop("dest")
    levels = (src.all_levels(), dest.all_levels())
    before = await _database(h)
    h.world.reset_counters()

    report = await reconcile(h.rt, dry_run=True)

    assert not report.agreed
    assert report.sources == ["source"]
    assert [(o.store, o.order_id) for o in report.orders] == [("dest", order_id)]
    assert report.compared == 4  # 2 source items, their 2 levels on the destination
    dest_loc = dest.primary_location_id
    assert sorted(report.drift, key=lambda d: (d.role, d.sku)) == [
        LevelDrift(h.stores["dest"].id, "dest", "destination", "TEE-M",
                   _item(dest, "TEE-M"), dest_loc, 4, 7),
        LevelDrift(h.stores["dest"].id, "dest", "destination", "TEE-S",
                   _item(dest, "TEE-S"), dest_loc, 8, 10),
        LevelDrift(h.stores["source"].id, "source", "source", "TEE-M",
                   _item(src, "TEE-M"), "*", 10, 7),
    ]  # fmt: skip
    assert (src.all_levels(), dest.all_levels()) == levels
    assert src.counters.write_calls + dest.counters.write_calls == 0
    assert await _database(h) == before
    assert h.world.take_outbox() == []


async def test_a_real_run_counts_the_missed_order_once_and_repairs_every_level(
    h: Harness,
) -> None:
    order_id = await _drifted(h)
    src, dest = h.shop("source"), h.shop("dest")

    report = await reconcile(h.rt, settle=lambda: _settle(h))

    assert report.agreed, report
    assert [(o.store, o.order_id) for o in report.orders] == [("dest", order_id)]
    # The order was counted before the comparison: TEE-S agrees everywhere at 8 by then.
    dest_loc = dest.primary_location_id
    assert sorted(report.drift, key=lambda d: (d.role, d.sku)) == [
        LevelDrift(h.stores["dest"].id, "dest", "destination", "TEE-M",
                   _item(dest, "TEE-M"), dest_loc, 4, 7, 7),
        LevelDrift(h.stores["source"].id, "source", "source", "TEE-M",
                   _item(src, "TEE-M"), "*", 10, 7, 7),
    ]  # fmt: skip
    assert report.remaining == []
    assert (h.level("source", "TEE-S"), h.level("dest", "TEE-S")) == (8, 8)
    assert (h.level("source", "TEE-M"), h.level("dest", "TEE-M")) == (7, 7)
    async with h.db.connect() as conn:
        counted = (await conn.execute(select(ledger.c.delta))).scalars().all()
    assert counted == [-2]

    again = await reconcile(h.rt, settle=lambda: _settle(h))
    assert again.agreed
    assert (again.orders, again.drift) == ([], [])
    assert h.level("source", "TEE-S") == 8  # not counted twice


async def test_an_order_whose_webhooks_arrive_during_the_reconciliation_counts_once(
    h: Harness,
) -> None:
    await _setup(h)
    dest = h.shop("dest")
    dest.place_order([(dest.variant_by_sku("TEE-S").id, 2)])
    late = h.world.take_outbox()  # the order's webhooks, delivered while it runs
    worker = asyncio.create_task(h.rt.queue.run_worker(h.registry, concurrency=2))

    async def drain() -> bool:
        await h.drain()
        return True

    try:
        report, _ = await asyncio.gather(reconcile(h.rt, settle=drain), h.deliver(late))
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
    await h.settle()
    assert report.settled
    async with h.db.connect() as conn:
        counted = (await conn.execute(select(ledger.c.delta))).scalars().all()
    assert counted == [-2]
    assert (h.level("source", "TEE-S"), h.level("dest", "TEE-S")) == (8, 8)
    assert (await reconcile(h.rt, dry_run=True)).agreed
