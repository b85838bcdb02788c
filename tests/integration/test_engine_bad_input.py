"""Bad input is recorded with a plain reason, never crashes, never stops other stores (B12,
B22, B23)."""

from __future__ import annotations

from sqlalchemy import select

from stocksync.domain.events import LevelChanged, OrderSeen
from stocksync.domain.ports import OrderLine, OrderSnapshot
from stocksync.engine.catalog import import_products
from stocksync.engine.ingest import IngestResult, ingest, payload_of
from stocksync.platforms.memory import TOPIC_LEVEL_UPDATE, TOPIC_ORDER_CREATE
from stocksync.storage.tables import inbox, variant_links
from tests.harness import Harness
from tests.integration.test_engine_support import (
    activity,
)


async def _setup(h: Harness) -> None:
    """A source with TEE-S (10 units), imported by ``dest`` and ``other``."""
    await h.add_store("source", "source")
    h.shop("source").add_product("Tee", ["TEE-S"], available=10)
    for name in ("dest", "other"):
        await h.add_store(name, "destination")
        record = await h.connect(name, "source")
        assert (await import_products(h.rt, record.id)).linked_variants == 1
    h.world.take_outbox()
    await h.settle()
    h.world.reset_counters()


async def _send(
    h: Harness,
    store: str,
    event_id: str,
    topic: str,
    event: LevelChanged | OrderSeen | None,
    payload: str | bytes | None = None,
) -> IngestResult:
    return await ingest(
        h.rt,
        platform="memory",
        store_ref=store,
        event_id=event_id,
        topic=topic,
        event=event,
        payload=payload if payload is not None else payload_of(event) if event else "",
    )


async def _others_still_sync(h: Harness, level: int) -> None:
    """A source change reaches both destinations, and a sale on ``other`` is counted."""
    src, other = h.shop("source"), h.shop("other")
    src.set_available(src.variant_by_sku("TEE-S").item_id, src.primary_location_id, level)
    await h.settle()
    assert (h.level("dest", "TEE-S"), h.level("other", "TEE-S")) == (level, level)
    other.place_order([(other.variant_by_sku("TEE-S").id, 1)], financial_status="paid")
    await h.settle()
    assert h.level("source", "TEE-S") == level - 1
    assert (h.level("dest", "TEE-S"), h.level("other", "TEE-S")) == (level - 1, level - 1)


async def test_event_for_an_unknown_store_is_logged_and_ignored(h: Harness) -> None:
    await _setup(h)
    result = await _send(h, "ghost-shop", "e-1", TOPIC_LEVEL_UPDATE, LevelChanged("1", "2", 3))
    assert result.outcome == "unknown_store"
    (entry,) = await activity(h, "unknown_store")
    assert entry["store_id"] is None
    assert entry["level"] == "warning"
    assert entry["message"] == (
        "a inventory_levels/update event arrived for ghost-shop, which is not installed; "
        "it was ignored"
    )
    async with h.db.connect() as conn:
        status = (
            await conn.execute(
                select(inbox.c.status, inbox.c.error).where(inbox.c.id == result.inbox_id)
            )
        ).one()
    assert tuple(status) == ("ignored", "unknown store")
    await _others_still_sync(h, 6)


async def test_event_for_an_unlinked_variant_is_logged_and_ignored(h: Harness) -> None:
    await _setup(h)
    dest = h.shop("dest")
    own = dest.add_product("Own product", ["OWN-1"], available=5)
    item = own.variants[0].item_id
    dest.set_available(item, dest.primary_location_id, 4)
    deliveries = [d for d in h.world.take_outbox() if d.topic == TOPIC_LEVEL_UPDATE]
    results = await h.deliver(deliveries)
    assert [r.outcome for r in results] == ["ignored"]
    (entry,) = await activity(h, "event_ignored")
    assert entry["store_id"] == h.stores["dest"].id
    assert entry["message"] == (
        "1 stock change(s) on dest ignored: the items are not linked to any other store"
    )
    assert entry["details"]["item_ids"] == [item]
    # an order of it alone counts nothing, and says so
    order = dest.place_order([(own.variants[0].id, 1)], financial_status="paid")
    await h.settle()
    # one entry per webhook of the order (orders/create and orders/paid), each saying why
    ignored = await activity(h, "order_ignored")
    assert {e["message"] for e in ignored} == {
        f"order {order.id} has no linked products; nothing to count"
    }
    assert {e["store_id"] for e in ignored} == {h.stores["dest"].id}
    assert h.shop("source").counters.calls["adjust_levels"] == 0
    assert dest.level(item, dest.primary_location_id) == 3
    await _others_still_sync(h, 6)


async def test_impossible_order_line_quantities_are_not_counted(h: Harness) -> None:
    await _setup(h)
    variant = h.shop("dest").variant_by_sku("TEE-S").id
    snapshot = OrderSnapshot(
        id="9007199254740993",
        financial_status="paid",
        cancelled=False,
        version="2030-01-01T00:00:00.000000Z",
        lines=(
            OrderLine(id="L-absurd", variant_id=variant, sku="TEE-S", quantity=2_000_000_000),
            OrderLine(id="L-negative", variant_id=variant, sku="TEE-S", quantity=-5),
            OrderLine(id="L-good", variant_id=variant, sku="TEE-S", quantity=1),
        ),
    )
    result = await _send(h, "dest", "e-bad-order", TOPIC_ORDER_CREATE, OrderSeen(snapshot))
    assert result.outcome == "recorded"
    await h.settle()
    entries = await activity(h, "bad_order_line")
    assert [(e["store_id"], e["level"], e["message"]) for e in entries] == [
        (
            h.stores["dest"].id,
            "error",
            "order 9007199254740993: line L-absurd has an impossible quantity (2000000000); "
            "it is not counted",
        ),
        (
            h.stores["dest"].id,
            "error",
            "order 9007199254740993: line L-negative has an impossible quantity (-5); "
            "it is not counted",
        ),
    ]
    # only the plausible line was taken from the source
    assert h.level("source", "TEE-S") == 9
    assert h.shop("source").counters.units_adjusted == 1
    await _others_still_sync(h, 6)


async def test_negative_and_absurd_level_events_are_handled(h: Harness) -> None:
    await _setup(h)
    src, dest = h.shop("source"), h.shop("dest")
    src_item = src.variant_by_sku("TEE-S").item_id
    dest_item = dest.variant_by_sku("TEE-S").item_id
    # an absurd level reported by the source is not trusted: the level is read again
    absurd = LevelChanged(src_item, src.primary_location_id, 5_000_000_000)
    assert (await _send(h, "source", "e-absurd", TOPIC_LEVEL_UPDATE, absurd)).outcome == "recorded"
    # a negative (oversold) level reported by a destination: set back to the source's
    negative = LevelChanged(dest_item, dest.primary_location_id, -3)
    assert (await _send(h, "dest", "e-neg", TOPIC_LEVEL_UPDATE, negative)).outcome == "recorded"
    await h.settle()
    (entry,) = await activity(h, "implausible_level")
    assert entry["store_id"] == h.stores["source"].id
    assert entry["message"] == (
        f"source reported 5000000000 units of item {src_item}; "
        "the level will be read again instead of trusted"
    )
    assert h.level("source", "TEE-S") == 10
    assert (h.level("dest", "TEE-S"), h.level("other", "TEE-S")) == (10, 10)
    await _others_still_sync(h, 6)


async def test_unreadable_event_is_kept_and_reported(h: Harness) -> None:
    await _setup(h)
    result = await _send(
        h, "dest", "e-broken", TOPIC_ORDER_CREATE, None, payload=b'{"id": 12, "line_items": ['
    )
    assert result.outcome == "rejected"
    (entry,) = await activity(h, "event_unreadable")
    assert entry["store_id"] == h.stores["dest"].id
    assert entry["level"] == "error"
    assert entry["message"] == "a orders/create event could not be read and was not applied"
    async with h.db.connect() as conn:
        row = (
            await conn.execute(
                select(inbox.c.status, inbox.c.payload).where(inbox.c.id == result.inbox_id)
            )
        ).one()
    assert tuple(row) == ("failed", '{"id": 12, "line_items": [')  # kept for inspection
    # delivered again, it is a duplicate, not a second report
    again = await _send(h, "dest", "e-broken", TOPIC_ORDER_CREATE, None, payload=b"{")
    assert again.outcome == "duplicate"
    await _others_still_sync(h, 6)


async def test_shared_sku_is_not_linked_and_import_says_why(h: Harness) -> None:
    await _setup(h)
    socks = h.shop("source").add_product("Socks", ["SOCK-DUP", "SOCK-DUP", "SOCK-OK"], available=4)
    record = h.connections["dest"]
    report = await import_products(h.rt, record.id)
    (product,) = report.products
    assert product.linked == 1
    reason = (
        "the SKU 'SOCK-DUP' is used by 2 variants in this store; shared SKUs cause inventory "
        "discrepancies, so none of them is linked until each has its own SKU"
    )
    # every variant left out is listed: both at the source, and both copies at the destination
    copy = h.shop("dest").product(product.destination_product_id or "")
    assert [p.variant_id for p in product.problems] == [
        *(v.id for v in socks.variants[:2]),
        *(v.id for v in copy.variants[:2]),
    ]
    assert {p.reason for p in product.problems} == {reason}
    entries = await activity(h, "product_imported")
    assert entries[-1]["message"] == "imported 'Socks': 1 variants linked"
    assert entries[-1]["details"]["problems"] == [reason] * 4
    async with h.db.connect() as conn:
        linked = (
            await conn.execute(
                select(variant_links.c.sku).where(variant_links.c.connection_id == record.id)
            )
        ).all()
    assert sorted(r[0] for r in linked) == ["SOCK-OK", "TEE-S"]
    await h.settle()
    assert h.level("dest", "SOCK-OK") == 4
    await _others_still_sync(h, 6)


async def test_a_sale_the_source_refuses_is_set_aside_and_other_sales_go_on(h: Harness) -> None:
    await _setup(h)
    src, dest = h.shop("source"), h.shop("dest")
    mug = src.add_product("Mug", ["MUG"], available=10)
    record = h.connections["dest"]
    assert (await import_products(h.rt, record.id, [mug.id])).linked_variants == 1
    await h.settle()
    # The tee is deleted at the source, but the destination still sells its copy.
    tee = src.variant_by_sku("TEE-S")
    src.delete_product(next(p.id for p in await src.list_products() if p.title == "Tee"))
    await h.settle()
    dest.place_order([(dest.variant_by_sku("TEE-S").id, 1)], financial_status="paid")
    await h.settle()
    dest.place_order([(dest.variant_by_sku("MUG").id, 2)], financial_status="paid")
    await h.settle()
    assert h.level("source", "MUG") == 8
    assert h.level("dest", "MUG") == 8
    (entry,) = await activity(h, "ledger_failed")
    assert entry["store_id"] == h.stores["source"].id
    assert entry["level"] == "error"
    assert entry["message"].startswith(
        f"a sale of 1 unit of item {tee.item_id} could not be applied to source:"
    )
    assert "no inventory item" in entry["message"]
    assert entry["message"].endswith("it was set aside so that other changes go on")
