"""The engine end to end on the in-memory platform, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from stocksync.engine.catalog import import_products
from tests.harness import Harness


@pytest.fixture
async def h(db_url: str) -> AsyncIterator[Harness]:
    harness = await Harness.create(db_url)
    yield harness
    await harness.close()


async def _two_destinations(h: Harness) -> None:
    await h.add_store("source", "source")
    await h.add_store("dest-a", "destination")
    await h.add_store("dest-b", "destination")
    h.shop("source").add_product("Linen shirt", ["SHIRT-S", "SHIRT-M"], available=10)
    h.shop("source").add_product("Hidden", ["HID-1"], available=3, tags=["stocksync-hidden"])
    for dest in ("dest-a", "dest-b"):
        record = await h.connect(dest, "source")
        report = await import_products(h.rt, record.id)
        assert report.linked_variants == 2
    h.world.take_outbox()  # creation noise before linking is not under test
    await h.settle()


async def test_import_sets_levels_and_hides_tagged_products(h: Harness) -> None:
    await _two_destinations(h)
    for dest in ("dest-a", "dest-b"):
        assert h.level(dest, "SHIRT-S") == 10
        assert h.level(dest, "SHIRT-M") == 10
        assert [p.title for p in await h.shop(dest).list_products()] == ["Linen shirt"]


async def test_source_change_fans_out_and_sale_is_counted_once(h: Harness) -> None:
    await _two_destinations(h)
    src = h.shop("source")
    shirt_s = src.variant_by_sku("SHIRT-S")
    src.set_available(shirt_s.item_id, src.primary_location_id, 7)
    await h.settle()
    assert [h.level(d, "SHIRT-S") for d in ("dest-a", "dest-b")] == [7, 7]

    dest_a = h.shop("dest-a")
    order = dest_a.place_order([(dest_a.variant_by_sku("SHIRT-S").id, 2)], financial_status="paid")
    deliveries = h.world.take_outbox()
    # Every webhook delivered twice, in reverse order.
    await h.deliver(list(reversed(deliveries)) * 2)
    await h.settle()
    assert h.level("source", "SHIRT-S") == 5
    assert [h.level(d, "SHIRT-S") for d in ("dest-a", "dest-b")] == [5, 5]

    # A restocking refund of one unit gives it back, once.
    dest_a.refund(order.id, [(order.lines[0].id, 1)], restock=True)
    deliveries = h.world.take_outbox()
    await h.deliver(deliveries + deliveries)
    await h.settle()
    assert h.level("source", "SHIRT-S") == 6
    assert [h.level(d, "SHIRT-S") for d in ("dest-a", "dest-b")] == [6, 6]


async def test_import_links_a_product_an_earlier_attempt_created_without_duplicating(
    h: Harness,
) -> None:
    await h.add_store("source", "source")
    await h.add_store("dest-a", "destination")
    h.shop("source").add_product("Linen shirt", ["SHIRT-S", "SHIRT-M"], available=10)
    h.shop("dest-a").add_product("Other", ["OTHER-1"], available=1)
    # Created on the destination by an attempt that died before recording its link.
    earlier = h.shop("dest-a").add_product("Linen shirt", ["SHIRT-S", "SHIRT-M"], available=0)
    record = await h.connect("dest-a", "source")
    h.shop("dest-a").counters.reset()
    report = await import_products(h.rt, record.id)
    assert report.linked_variants == 2
    calls = h.shop("dest-a").counters.calls
    assert calls["create_product"] == 0
    # The owning product came with the SKU lookup: the catalog was not listed to find it.
    assert calls["list_products"] == 0
    titles = sorted(p.title for p in await h.shop("dest-a").list_products())
    assert titles == ["Linen shirt", "Other"]
    h.world.take_outbox()
    await h.settle()
    assert h.level("dest-a", "SHIRT-S") == 10
    assert h.shop("dest-a").variant_by_sku("SHIRT-S").id == earlier.variants[0].id
