"""Stores, hubs, keys, connections and plans on a real database (B1, B2, B3, B4)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from stocksync.domain.graph import CycleError
from stocksync.engine.catalog import PlanLimitError, import_products
from stocksync.engine.records import ConnectionRecord
from stocksync.engine.stores import (
    RateLimitedError,
    StoreError,
    WrongKeyError,
    connect_by_key,
    disconnect,
    rotate_key,
    show_key,
)
from stocksync.storage.tables import connections, product_links, variant_links
from tests.harness import Harness
from tests.integration.test_engine_support import (
    activity,
)


async def _key(h: Harness, store: str) -> str:
    async with h.db.connect() as conn:
        return await show_key(conn, h.vault, h.stores[store].id)


async def _connect_with(h: Harness, destination: str, key: str) -> ConnectionRecord:
    """A destination enters a key on its dashboard."""
    return await connect_by_key(
        h.rt,
        destination_store_id=h.stores[destination].id,
        key=key,
        receiving_location=h.shop(destination).primary_location_id,
    )


async def _import(h: Harness, destination: str, source: str) -> None:
    record = await h.connect(destination, source)
    await import_products(h.rt, record.id)


async def _source_with_destination(h: Harness) -> None:
    await h.add_store("source", "source")
    await h.add_store("dest", "destination")
    h.shop("source").add_product("Tee", ["TEE-S", "TEE-M"], available=10)
    await _import(h, "dest", "source")
    h.world.take_outbox()
    await h.settle()
    h.world.reset_counters()


def _set_source(h: Harness, store: str, sku: str, level: int) -> None:
    shop = h.shop(store)
    shop.set_available(shop.variant_by_sku(sku).item_id, shop.primary_location_id, level)


# --- hubs (B1) --------------------------------------------------------------------------------


async def test_hub_chain_applies_a_sale_once_to_the_root_and_flows_down(h: Harness) -> None:
    await h.add_store("supplier", "source")
    await h.add_store("hub", "hub", hub_enabled=True)
    await h.add_store("retailer", "destination")
    h.shop("supplier").add_product("Lamp", ["LAMP"], available=10)
    await _import(h, "hub", "supplier")
    await h.settle()
    await _import(h, "retailer", "hub")
    h.world.take_outbox()
    await h.settle()
    assert [h.level(s, "LAMP") for s in ("supplier", "hub", "retailer")] == [10, 10, 10]

    h.world.reset_counters()
    retailer = h.shop("retailer")
    retailer.place_order([(retailer.variant_by_sku("LAMP").id, 3)], financial_status="paid")
    await h.settle()
    assert [h.level(s, "LAMP") for s in ("supplier", "hub", "retailer")] == [7, 7, 7]
    # applied once, to the root source only
    assert h.shop("supplier").counters.calls["adjust_levels"] == 1
    assert h.shop("supplier").counters.units_adjusted == 3
    assert h.shop("hub").counters.calls["adjust_levels"] == 0

    # a sale on the hub itself also goes to the root, and reaches the retailer
    hub = h.shop("hub")
    hub.place_order([(hub.variant_by_sku("LAMP").id, 2)], financial_status="paid")
    await h.settle()
    assert [h.level(s, "LAMP") for s in ("supplier", "hub", "retailer")] == [5, 5, 5]

    _set_source(h, "supplier", "LAMP", 20)
    await h.settle()
    assert [h.level(s, "LAMP") for s in ("supplier", "hub", "retailer")] == [20, 20, 20]
    assert h.shop("supplier").counters.calls["adjust_levels"] == 2


async def test_a_hub_needs_the_operator_to_enable_it(h: Harness) -> None:
    with pytest.raises(StoreError, match="only when hubs are enabled"):
        await h.add_store("hub", "hub")


async def test_a_connection_closing_a_cycle_is_refused(h: Harness) -> None:
    for name in ("a", "b", "c"):
        await h.add_store(name, "hub", hub_enabled=True)
    await h.connect("b", "a")
    await h.connect("c", "b")
    with pytest.raises(CycleError) as info:
        await _connect_with(h, "a", await _key(h, "c"))
    assert str(info.value) == (
        "this connection would close a cycle: the source already receives stock, directly "
        "or through other stores, from this destination"
    )
    with pytest.raises(CycleError):
        await _connect_with(h, "b", await _key(h, "b"))  # a store connecting to itself
    async with h.db.connect() as conn:
        count = (await conn.execute(select(func.count()).select_from(connections))).scalar_one()
    assert count == 2


# --- keys (B2) --------------------------------------------------------------------------------


async def test_rotating_the_key_keeps_existing_connections(h: Harness) -> None:
    await _source_with_destination(h)
    old = await _key(h, "source")
    async with h.db.begin() as conn:
        new = await rotate_key(h.rt, conn, h.vault, h.stores["source"].id)
    assert new != old
    assert await _key(h, "source") == new
    _set_source(h, "source", "TEE-S", 4)
    await h.settle()
    assert h.level("dest", "TEE-S") == 4  # the existing connection still syncs

    await h.add_store("late", "destination")
    with pytest.raises(StoreError) as info:
        await _connect_with(h, "late", old)
    assert str(info.value) == (
        "this key does not match any source store; check it on the source's dashboard "
        "(it may have been rotated)"
    )
    record = await _connect_with(h, "late", new)
    assert record.source_store_id == h.stores["source"].id


async def test_wrong_keys_are_rate_limited(h: Harness) -> None:
    await h.add_store("source", "source")
    await h.add_store("dest", "destination")
    for attempt in range(5):
        with pytest.raises(WrongKeyError, match="does not match any source store"):
            await _connect_with(h, "dest", f"ssk_wrong-key-number-{attempt}-xxxxxxxx")
    # the sixth attempt is refused, even with the right key
    with pytest.raises(RateLimitedError) as info:
        await _connect_with(h, "dest", await _key(h, "source"))
    assert str(info.value).startswith("too many wrong keys; try again in ")
    assert timedelta(minutes=14) < info.value.retry_after <= timedelta(minutes=15)
    # another destination is not limited by this one's mistakes
    await h.add_store("other", "destination")
    await _connect_with(h, "other", await _key(h, "source"))


async def test_a_key_that_is_not_a_key_gets_the_same_clear_error(h: Harness) -> None:
    await h.add_store("source", "source")
    await h.add_store("dest", "destination")
    for text in ("", "hello", "ssk_", "x" * 500):
        with pytest.raises(StoreError, match="does not match any source store"):
            await _connect_with(h, "dest", text)


async def test_disconnect_keeps_products_unlinked_and_stops_writes(h: Harness) -> None:
    await _source_with_destination(h)
    record = h.connections["dest"]
    async with h.db.begin() as conn:
        await disconnect(conn, record.id, by_store_id=h.stores["source"].id)
    async with h.db.connect() as conn:
        statuses = (
            await conn.execute(
                select(variant_links.c.status).where(variant_links.c.connection_id == record.id)
            )
        ).all()
        products = (
            await conn.execute(
                select(product_links.c.status).where(product_links.c.connection_id == record.id)
            )
        ).all()
    assert [r[0] for r in statuses] == ["unlinked", "unlinked"]
    assert [r[0] for r in products] == ["unlinked"]
    assert [p.title for p in await h.shop("dest").list_products()] == ["Tee"]

    _set_source(h, "source", "TEE-S", 2)
    dest = h.shop("dest")
    dest.place_order([(dest.variant_by_sku("TEE-M").id, 1)], financial_status="paid")
    await h.settle()
    assert h.shop("dest").counters.write_calls == 0
    assert h.level("dest", "TEE-S") == 10
    assert h.level("source", "TEE-M") == 10  # its sales no longer count either
    messages = {e["message"] for e in await activity(h, "disconnected")}
    assert messages == {"connection ended; the destination keeps its products, unlinked"}


# --- plans (B3) -------------------------------------------------------------------------------


async def test_import_past_the_plan_limit_is_refused_and_creates_nothing(h: Harness) -> None:
    await h.add_store("source", "source")
    await h.add_store("dest", "destination", plan_product_limit=2)
    src = h.shop("source")
    products = [src.add_product(f"P{i}", [f"SKU-{i}"], available=5) for i in range(3)]
    record = await h.connect("dest", "source")
    with pytest.raises(PlanLimitError) as info:
        await import_products(h.rt, record.id)
    message = (
        "dest's plan syncs at most 2 products; 0 are synced and this import would add 3. "
        "Choose fewer products or change plan."
    )
    assert str(info.value) == message
    assert await h.shop("dest").list_products() == []
    assert h.shop("dest").counters.write_calls == 0
    (entry,) = await activity(h, "plan_limit")
    assert (entry["store_id"], entry["message"]) == (h.stores["dest"].id, message)

    report = await import_products(h.rt, record.id, [products[0].id, products[1].id])
    assert report.linked_variants == 2
    with pytest.raises(PlanLimitError, match="2 are synced and this import would add 1"):
        await import_products(h.rt, record.id, [products[2].id])
    assert len(await h.shop("dest").list_products()) == 2


async def test_a_source_is_never_limited(h: Harness) -> None:
    # a plan limit recorded on a source store does not limit what it supplies
    await h.add_store("source", "source", plan_product_limit=1)
    await h.add_store("dest", "destination")
    for i in range(3):
        h.shop("source").add_product(f"P{i}", [f"SKU-{i}"], available=5)
    record = await h.connect("dest", "source")
    report = await import_products(h.rt, record.id)
    assert report.linked_variants == 3
    await h.settle()
    assert [h.level("dest", f"SKU-{i}") for i in range(3)] == [5, 5, 5]
