"""Level reports taken as levels, ordered by the platform's time of the change, and paced
destination writes, on both databases (B14, B18; engine/levels_reported.py).

The in-memory platform's own webhooks carry no time of change (its levels are read); these
tests deliver reports with one, as Shopify's ``inventory_levels/update`` does."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from stocksync.domain.events import LevelChanged
from stocksync.domain.ports import LevelsRead, LevelWrite, SetOutcome
from stocksync.engine import levels_reported as reported
from stocksync.engine.catalog import import_products
from stocksync.engine.ingest import Inbound, Ingestor
from stocksync.engine.inventory import flush_destination
from stocksync.engine.levels_reported import Report
from stocksync.engine.marks import mark_pending
from stocksync.platforms.memory import TOPIC_LEVEL_UPDATE, Delivery, MemoryStore
from stocksync.storage.tables import (
    connections,
    flush_pending,
    inbox,
    stores,
    sync_state,
    variant_links,
)
from tests.harness import Harness

_ids = itertools.count(1)


async def _setup(h: Harness) -> None:
    """A source with TEE-S and TEE-M (10 units each) imported by one destination."""
    await h.add_store("source", "source")
    h.shop("source").add_product("Tee", ["TEE-S", "TEE-M"], available=10)
    await h.add_store("dest", "destination")
    record = await h.connect("dest", "source")
    await import_products(h.rt, record.id)
    h.world.take_outbox()
    await h.settle()
    h.world.reset_counters()


def _item(shop: MemoryStore, sku: str) -> str:
    return shop.variant_by_sku(sku).item_id


def _report(shop: MemoryStore, sku: str, available: int, at: int) -> Delivery:
    """Shopify's report of a level change, with its time (epoch seconds)."""
    event = LevelChanged(_item(shop, sku), shop.primary_location_id, available, at)
    return Delivery(shop.ref, f"report-{next(_ids)}", TOPIC_LEVEL_UPDATE, event)


async def _change_at_source(h: Harness, sku: str, available: int, at: int) -> Delivery:
    """The source's level changes; its own webhook is held back, the report returned."""
    src = h.shop("source")
    src.set_available(_item(src, sku), src.primary_location_id, available)
    h.world.take_outbox()
    return _report(src, sku, available, at)


async def test_a_source_report_is_taken_without_reading_the_source(h: Harness) -> None:
    await _setup(h)
    report = await _change_at_source(h, "TEE-S", 7, at=1_000)
    await h.deliver([report])
    await h.settle()
    assert h.level("dest", "TEE-S") == 7
    assert h.shop("source").counters.calls["read_levels"] == 0


async def test_reports_out_of_order_end_at_the_newest(h: Harness) -> None:
    await _setup(h)
    first = await _change_at_source(h, "TEE-S", 7, at=1_000)
    second = await _change_at_source(h, "TEE-S", 4, at=1_001)
    await h.deliver([second])
    await h.settle()
    await h.deliver([first])  # late: older than what is known, ignored
    await h.settle()
    assert h.level("dest", "TEE-S") == 4
    assert h.shop("source").counters.calls["read_levels"] == 0


async def test_reports_of_one_second_that_disagree_are_settled_by_a_read(h: Harness) -> None:
    await _setup(h)
    first = await _change_at_source(h, "TEE-S", 7, at=1_000)
    second = await _change_at_source(h, "TEE-S", 4, at=1_000)
    # Delivered newest first: by the reports alone, 7 would look like the last word.
    await h.deliver([second, first])
    await h.settle()
    assert h.level("dest", "TEE-S") == 4
    assert h.shop("source").counters.calls["read_levels"] == 1


async def test_a_report_without_a_time_is_read(h: Harness) -> None:
    await _setup(h)
    src = h.shop("source")
    src.set_available(_item(src, "TEE-S"), src.primary_location_id, 6)
    h.world.take_outbox()
    event = LevelChanged(_item(src, "TEE-S"), src.primary_location_id, 99, None)
    await h.deliver([Delivery(src.ref, "untimed", TOPIC_LEVEL_UPDATE, event)])
    await h.settle()
    assert h.level("dest", "TEE-S") == 6  # what the read found, not the 99 reported
    assert src.counters.calls["read_levels"] == 1


async def test_a_stale_destination_report_is_ignored(h: Harness) -> None:
    await _setup(h)
    dest = h.shop("dest")
    await h.deliver([_report(dest, "TEE-S", 10, at=2_000)])  # the echo of the import's write
    await h.settle()
    await h.deliver([_report(dest, "TEE-S", 3, at=1_999)])  # from before it: stale
    await h.settle()
    assert dest.counters.total_calls == 0
    assert h.level("dest", "TEE-S") == 10


async def test_a_destination_change_is_set_back_with_the_reported_level_as_compare(
    h: Harness,
) -> None:
    await _setup(h)
    h.rt.sale_grace = timedelta(0)  # a decrease is set back at once (no sale grace)
    dest = h.shop("dest")
    dest.set_available(_item(dest, "TEE-S"), dest.primary_location_id, 3)  # a merchant
    h.world.take_outbox()
    await h.deliver([_report(dest, "TEE-S", 3, at=2_000)])
    await h.settle()
    assert h.level("dest", "TEE-S") == 10
    # Set back in one write compared against the reported 3: no read, no stale compare.
    assert dest.counters.calls["read_levels"] == 0
    assert dest.counters.calls["set_levels"] == 1
    assert dest.counters.stale_batches == 0


async def test_a_report_equal_to_the_target_is_not_taken_for_the_destination_level(
    h: Harness,
) -> None:
    """A late report that happens to show the new target must not stand for a write."""
    await _setup(h)
    dest = h.shop("dest")
    await h.deliver([await _change_at_source(h, "TEE-S", 7, at=1_000)])
    await h.settle()
    assert h.level("dest", "TEE-S") == 7
    back = await _change_at_source(h, "TEE-S", 10, at=1_001)
    # The destination's report of the import's write of 10, delayed until now.
    late = _report(dest, "TEE-S", 10, at=2_000)
    await h.deliver([back, late])
    await h.settle()
    assert h.level("dest", "TEE-S") == 10


async def test_order_and_ties_on_the_recorded_rows(h: Harness) -> None:
    await _setup(h)
    async with h.db.connect() as conn:
        store_id = (
            await conn.execute(select(stores.c.id).where(stores.c.external_id == "source"))
        ).scalar_one()
    loc = "L"
    now = h.rt.clock()

    async def row() -> reported.LocationLevel:
        async with h.db.connect() as conn:
            return (await reported.location_levels(conn, store_id, ["X"], [loc]))[("X", loc)]

    async def put(*reports: Report) -> None:
        async with h.db.begin() as conn:
            await reported.record_reports(conn, [(store_id, r) for r in reports], now)

    await put(Report("X", loc, 5, 10))
    await put(Report("X", loc, 3, 9))  # older
    assert await row() == reported.LocationLevel(5, 10, False)
    await put(Report("X", loc, 7, 11), Report("X", loc, 8, 11))  # one second, two levels
    assert await row() == reported.LocationLevel(7, 11, True)
    await put(Report("X", loc, 7, 11))  # agreeing with the recorded one changes nothing
    assert await row() == reported.LocationLevel(7, 11, True)
    await put(Report("X", loc, 9, 12))  # newer: a level again
    assert await row() == reported.LocationLevel(9, 12, False)

    # A read is stored only if no report came while it was in flight.
    async with h.db.connect() as conn:
        seen = await reported.location_levels(conn, store_id, ["X"], [loc])
    await put(Report("X", loc, 2, 13))
    async with h.db.begin() as conn:
        await reported.record_reads(conn, store_id, seen, {("X", loc): 6}, now)
    assert await row() == reported.LocationLevel(2, 13, False)
    async with h.db.connect() as conn:
        seen = await reported.location_levels(conn, store_id, ["X"], [loc])
    async with h.db.begin() as conn:
        await reported.record_reads(conn, store_id, seen, {("X", loc): 6}, now)
    assert await row() == reported.LocationLevel(6, 13, False)


async def test_destination_writes_are_paced(h: Harness) -> None:
    await _setup(h)
    h.rt.flush_interval = timedelta(seconds=30)
    async with h.db.connect() as conn:
        (connection_id,) = (await conn.execute(select(connections.c.id))).one()
        links = (
            await conn.execute(
                select(variant_links.c.id, variant_links.c.destination_store_id).order_by(
                    variant_links.c.id
                )
            )
        ).all()
    src = h.shop("source")
    src.set_available(_item(src, "TEE-S"), src.primary_location_id, 7)
    src.set_available(_item(src, "TEE-M"), src.primary_location_id, 8)
    h.world.take_outbox()
    async with h.db.begin() as conn:
        await mark_pending(h.rt, conn, [(connection_id, links[0][0], links[0][1])])
    await h.rt.queue.drain(h.registry, 30)
    # Not written: the source's level was not taken again. What matters is the pace.
    async with h.db.connect() as conn:
        not_before = (
            await conn.execute(
                select(connections.c.flush_not_before).where(connections.c.id == connection_id)
            )
        ).scalar_one()
    assert not_before is not None
    # A second mark within the interval waits for its turn: the job is not due yet.
    async with h.db.begin() as conn:
        await mark_pending(h.rt, conn, [(connection_id, links[1][0], links[1][1])])
    await h.rt.queue.drain(h.registry, 5)
    async with h.db.connect() as conn:
        waiting = (
            await conn.execute(
                select(flush_pending.c.variant_link_id).where(
                    flush_pending.c.connection_id == connection_id
                )
            )
        ).all()
    assert [w[0] for w in waiting] == [links[1][0]]
    # Run by hand (as the queue will at its time), it writes.
    h.rt.flush_interval = timedelta(0)
    async with h.db.begin() as conn:
        await conn.execute(connections.update().values(flush_not_before=None))
    await flush_destination(h.rt, connection_id)
    async with h.db.connect() as conn:
        left = (await conn.execute(select(flush_pending.c.variant_link_id))).all()
    assert left == []


async def test_echoes_are_answered_without_being_stored(h: Harness) -> None:
    await _setup(h)
    dest = h.shop("dest")
    ingestor = Ingestor(h.rt)

    async def submit(available: int, event_id: str) -> str:
        event = LevelChanged(_item(dest, "TEE-S"), dest.primary_location_id, available, 2_000)
        inbound = Inbound("memory", dest.ref, event_id, TOPIC_LEVEL_UPDATE, event, "{}")
        return (await ingestor.submit(inbound)).outcome

    assert await submit(10, "echo") == "echo"  # the level the import wrote
    assert await submit(4, "sale") == "recorded"  # anything else takes the full path
    async with h.db.connect() as conn:
        kept = (await conn.execute(select(inbox.c.event_id))).scalars().all()
    assert "echo" not in kept
    assert "sale" in kept
    await h.settle()
    assert h.level("dest", "TEE-S") == 10


def _during_first_write(shop: MemoryStore, act: Callable[[], Awaitable[None]]) -> None:
    """Run ``act`` inside the store's next level write, before the write is applied: what the
    engine learns while its call is in flight."""
    original = shop.set_levels
    done = False

    async def racing(batch: Sequence[LevelWrite]) -> SetOutcome:
        nonlocal done
        if not done:
            done = True
            await act()
        return await original(batch)

    shop.set_levels = racing  # type: ignore[method-assign,assignment]


async def _dest_row(h: Harness, sku: str) -> Any:
    dest = h.shop("dest")
    async with h.db.connect() as conn:
        return (
            await conn.execute(
                select(sync_state).where(
                    sync_state.c.item_id == _item(dest, sku),
                    sync_state.c.location == dest.primary_location_id,
                )
            )
        ).one()


async def test_a_write_whose_call_saw_a_report_arrive_is_still_known(h: Harness) -> None:
    """A destination report delivered while our write is in flight may be older or newer than
    the write: the write must not be forgotten either way, or a later change equal to what
    the report said is taken as already there."""
    await _setup(h)
    dest = h.shop("dest")

    async def report_arrives() -> None:
        # The destination's level before our write lands (10), reported late with a time.
        await h.deliver([_report(dest, "TEE-S", 10, at=2_000)])

    _during_first_write(dest, report_arrives)
    await h.deliver([await _change_at_source(h, "TEE-S", 7, at=1_000)])
    await h.settle()
    assert h.level("dest", "TEE-S") == 7
    await h.deliver([await _change_at_source(h, "TEE-S", 10, at=1_001)])
    await h.settle()
    assert h.level("dest", "TEE-S") == 10, await _dest_row(h, "TEE-S")


async def test_a_late_report_from_before_our_write_does_not_hide_it(h: Harness) -> None:
    """Our write's echo is recognised and dropped; a report of the level from before the
    write, delivered after it, must not be taken for the destination's level (it would make
    the engine believe the destination agrees with a source that fell to that level)."""
    await _setup(h)
    # The report looks like a decrease no order explains: held for a grace (short here, so
    # that draining the queue runs the job at its end).
    h.rt.sale_grace = timedelta(seconds=0.2)
    dest = h.shop("dest")
    await h.deliver([await _change_at_source(h, "TEE-S", 2, at=1_000)])
    await h.settle()
    assert h.level("dest", "TEE-S") == 2
    # A sale elsewhere takes the source to 0; meanwhile a report from before our write of 2
    # (the destination at 0 for a moment, say) is delivered late.
    await h.deliver([_report(dest, "TEE-S", 0, at=2_000)])
    await h.deliver([await _change_at_source(h, "TEE-S", 0, at=1_002)])
    await h.settle()
    assert h.level("dest", "TEE-S") == 0, await _dest_row(h, "TEE-S")


def _writes_stamped(shop: MemoryStore, times: Iterator[int]) -> None:
    """The store's writes carry the platform's time of the change, as Shopify's adjustment
    group does (``createdAt``), on the clock of its level reports."""
    original = shop.set_levels

    async def stamped(batch: Sequence[LevelWrite]) -> SetOutcome:
        outcome = await original(batch)
        return replace(outcome, changed_at=next(times)) if outcome.applied else outcome

    shop.set_levels = stamped  # type: ignore[method-assign,assignment]


async def test_a_report_older_than_our_write_is_stale(h: Harness) -> None:
    """With the write's own time known, a report from before it is ignored: it is not taken
    for the level, nor held as a decrease no order explains (which would leave the level we
    wrote standing above a source that fell to the report's level, for the whole grace)."""
    await _setup(h)
    dest = h.shop("dest")
    _writes_stamped(dest, itertools.count(2_001))
    await h.deliver([await _change_at_source(h, "TEE-S", 2, at=1_000)])
    await h.settle()  # written at 2001
    assert h.level("dest", "TEE-S") == 2
    await h.deliver([_report(dest, "TEE-S", 0, at=2_000)])  # from before the write
    await h.deliver([await _change_at_source(h, "TEE-S", 0, at=1_002)])
    await h.settle()
    assert h.level("dest", "TEE-S") == 0, await _dest_row(h, "TEE-S")
    row = await _dest_row(h, "TEE-S")
    assert (row.last_read, row.last_written, row.unexplained, row.reported_at) == (0, 0, 0, 2_002)


async def test_a_report_of_the_write_s_own_second_is_settled_by_a_read(h: Harness) -> None:
    await _setup(h)
    dest = h.shop("dest")
    _writes_stamped(dest, itertools.repeat(2_000))

    async def report_arrives() -> None:
        await h.deliver([_report(dest, "TEE-S", 10, at=2_000)])

    _during_first_write(dest, report_arrives)
    await h.deliver([await _change_at_source(h, "TEE-S", 7, at=1_000)])
    await h.settle()
    assert h.level("dest", "TEE-S") == 7
    assert dest.counters.calls["read_levels"] == 1
    await h.deliver([await _change_at_source(h, "TEE-S", 10, at=1_001)])
    await h.settle()
    assert h.level("dest", "TEE-S") == 10


def _reads_stamped(shop: MemoryStore, at: int) -> None:
    """The store's reads give each level's time of change, as Shopify's
    ``InventoryLevel.updatedAt`` does, on the clock of its level reports."""
    original = shop.read_levels

    async def stamped(items: Sequence[str], locations: Sequence[str]) -> LevelsRead:
        levels = await original(items, locations)
        return LevelsRead(levels, {key: at for key, level in levels.items() if level is not None})

    shop.read_levels = stamped  # type: ignore[method-assign,assignment]


async def test_a_report_older_than_a_read_is_stale(h: Harness) -> None:
    """A source level read with its time of change: a report from before it, delivered after
    the read, must not bring back the older level (it would show sold stock again)."""
    await _setup(h)
    src = h.shop("source")
    _reads_stamped(src, 3_000)
    src.set_available(_item(src, "TEE-S"), src.primary_location_id, 7)
    h.world.take_outbox()
    untimed = LevelChanged(_item(src, "TEE-S"), src.primary_location_id, 7, None)
    await h.deliver([Delivery(src.ref, "untimed", TOPIC_LEVEL_UPDATE, untimed)])  # read
    await h.settle()
    assert h.level("dest", "TEE-S") == 7
    await h.deliver([_report(src, "TEE-S", 10, at=2_999)])  # from before the read
    await h.settle()
    assert h.level("dest", "TEE-S") == 7
