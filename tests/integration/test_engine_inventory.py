"""Source -> destination levels on a real database: compare-and-swap, echoes, manual
corrections, the safety buffer, reconciliation and pausing (B4, B14, B18, B19, B20)."""

from __future__ import annotations

from datetime import timedelta

from stocksync.domain.connection import ConnectionSettings
from stocksync.engine.catalog import import_products
from stocksync.engine.reconcile import reconcile_source
from stocksync.engine.stores import set_connection_paused
from stocksync.platforms.memory import MemoryStore
from tests.harness import Harness
from tests.integration.test_engine_support import (
    activity,
)


async def _setup(h: Harness, **destinations: ConnectionSettings) -> None:
    """A source with TEE-S and TEE-M (10 units each), imported by each destination."""
    await h.add_store("source", "source")
    h.shop("source").add_product("Tee", ["TEE-S", "TEE-M"], available=10)
    for name, settings in (destinations or {"dest": ConnectionSettings()}).items():
        await h.add_store(name, "destination")
        record = await h.connect(name, "source", settings)
        report = await import_products(h.rt, record.id)
        assert report.linked_variants == 2
    h.world.take_outbox()  # creation noise before linking is not under test
    await h.settle()
    h.world.reset_counters()


def _item(shop: MemoryStore, sku: str) -> str:
    return shop.variant_by_sku(sku).item_id


# --- compare-and-swap ------------------------------------------------------------------------


async def test_level_changed_after_our_last_read_is_a_stale_compare_resolved_to_source(
    h: Harness,
) -> None:
    await _setup(h)
    h.rt.sale_grace = timedelta(0)  # a decrease is set back at once (no sale grace)
    src, dest = h.shop("source"), h.shop("dest")
    # A merchant changes the destination and the webhook is lost: what stocksync knows of the
    # level (the 10 it wrote) is out of date when it next writes.
    dest.set_available(_item(dest, "TEE-S"), dest.primary_location_id, 4)
    h.world.take_outbox()
    src.set_available(_item(src, "TEE-S"), src.primary_location_id, 7)
    await h.settle()
    assert dest.counters.stale_batches == 1
    assert dest.counters.calls["set_levels"] == 2  # refused once, then applied
    assert dest.counters.calls["read_levels"] == 1  # the re-read after the stale compare
    assert h.level("dest", "TEE-S") == 7
    assert h.level("dest", "TEE-M") == 10


async def test_level_changed_between_read_and_write_is_resolved_to_source(h: Harness) -> None:
    await _setup(h)
    h.rt.sale_grace = timedelta(0)  # a decrease is set back at once (no sale grace)
    dest = h.shop("dest")
    item = _item(dest, "TEE-S")
    # A customer takes 2 units just after stocksync reads the level and before it writes.
    dest.faults.fail_next("race", delta=-2, item_id=item)
    dest.set_available(item, dest.primary_location_id, 5)  # a manual change: read, then set back
    await h.settle()
    assert dest.faults.armed == 0  # the race happened
    assert dest.faults.pending_race is None
    assert dest.counters.stale_batches == 1
    assert h.level("dest", "TEE-S") == 10
    assert h.level("source", "TEE-S") == 10  # a level change on a destination is no sale


# --- echoes and manual corrections (B15, B18) -------------------------------------------------


async def test_our_own_write_coming_back_is_an_echo(h: Harness) -> None:
    await _setup(h)
    src, dest = h.shop("source"), h.shop("dest")
    src.set_available(_item(src, "TEE-S"), src.primary_location_id, 6)
    await h.settle()  # delivers the destination's webhook of our write as well
    assert h.level("dest", "TEE-S") == 6
    # one write, and the echo caused no re-read and no second write
    assert dest.counters.calls["set_levels"] == 1
    assert dest.counters.calls["read_levels"] == 0
    assert dest.counters.quantities_written == 1
    assert await activity(h, "drift_repaired") == []


async def test_manual_correction_on_a_destination_is_set_back_to_source(h: Harness) -> None:
    await _setup(h)
    dest = h.shop("dest")
    item = _item(dest, "TEE-M")
    dest.set_available(item, dest.primary_location_id, 42)
    await h.settle()
    assert h.level("dest", "TEE-M") == 10
    assert h.level("source", "TEE-M") == 10  # never changes the source
    assert dest.counters.calls["set_levels"] == 1
    (entry,) = await activity(h, "drift_repaired")
    assert entry["store_id"] == h.stores["dest"].id
    assert entry["message"] == ("1 levels on dest differed from the source's and were set back")
    assert entry["details"]["items"] == {item: {"found": 42, "set": 10}}


# --- safety buffer (B20) ------------------------------------------------------------------------


async def test_safety_buffer_shows_source_minus_buffer_never_below_zero(h: Harness) -> None:
    await _setup(h, plain=ConnectionSettings(), buffered=ConnectionSettings(safety_buffer=3))
    src = h.shop("source")
    assert (h.level("plain", "TEE-S"), h.level("buffered", "TEE-S")) == (10, 7)
    for level, plain, buffered in [(2, 2, 0), (3, 3, 0), (5, 5, 2), (-1, 0, 0)]:
        src.set_available(_item(src, "TEE-S"), src.primary_location_id, level)
        await h.settle()
        assert (h.level("plain", "TEE-S"), h.level("buffered", "TEE-S")) == (plain, buffered)
    assert h.level("buffered", "TEE-M") == 7


# --- reconciliation (B19) -----------------------------------------------------------------------


async def test_reconciliation_repairs_a_lost_webhook_and_reports_it(h: Harness) -> None:
    await _setup(h)
    h.rt.sale_grace = timedelta(0)  # a decrease is set back at once (no sale grace)
    dest = h.shop("dest")
    item = _item(dest, "TEE-M")
    dest.set_available(item, dest.primary_location_id, 1)
    h.world.take_outbox()  # the webhook is lost
    await h.settle()
    assert h.level("dest", "TEE-M") == 1  # nothing knew

    scheduled = await reconcile_source(h.rt, h.stores["source"].id)
    await h.settle()
    assert scheduled == 2
    assert h.level("dest", "TEE-M") == 10
    assert h.level("dest", "TEE-S") == 10
    assert dest.counters.quantities_written == 1  # only what differed was written
    (started,) = await activity(h, "reconciliation")
    assert started["message"] == "reconciliation started for 2 linked variants"
    (repaired,) = await activity(h, "drift_repaired")
    assert repaired["store_id"] == h.stores["dest"].id
    assert repaired["level"] == "warning"
    assert "differed from the source's and were set back" in repaired["message"]
    assert repaired["details"]["items"] == {item: {"found": 1, "set": 10}}


# --- pause and resume (B4) ---------------------------------------------------------------------


async def test_paused_connection_gets_no_writes_and_resuming_catches_up(h: Harness) -> None:
    await _setup(h)
    src, dest = h.shop("source"), h.shop("dest")
    connection_id = h.connections["dest"].id
    async with h.db.begin() as conn:
        await set_connection_paused(h.rt, conn, connection_id, True)
    src.set_available(_item(src, "TEE-S"), src.primary_location_id, 3)
    src.set_available(_item(src, "TEE-M"), src.primary_location_id, 8)
    await h.settle()
    assert dest.counters.write_calls == 0
    assert (h.level("dest", "TEE-S"), h.level("dest", "TEE-M")) == (10, 10)

    async with h.db.begin() as conn:
        await set_connection_paused(h.rt, conn, connection_id, False)
    await h.settle()
    assert (h.level("dest", "TEE-S"), h.level("dest", "TEE-M")) == (3, 8)
    # one batch with the levels of now, never first the levels from before the pause
    assert dest.counters.calls["set_levels"] == 1
    assert dest.counters.quantities_written == 2
    assert [e["message"] for e in await activity(h, "paused")] == ["sync paused"]
    assert [e["message"] for e in await activity(h, "resumed")] == ["sync resumed"]
