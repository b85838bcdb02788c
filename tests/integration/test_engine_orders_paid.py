"""What counts as paid, same-second snapshots, and sales under a pause, on a real database
(B4, B15, B16, B17): the engine against the sequences a Shopify shop produces."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from stocksync.domain.connection import ConnectionSettings
from stocksync.engine.catalog import import_products
from stocksync.engine.orders import backfill_orders
from stocksync.engine.stores import set_connection_paused, set_product_paused
from stocksync.platforms.memory import (
    TOPIC_ORDER_CREATE,
    TOPIC_ORDER_EDITED,
    TOPIC_ORDER_PAID,
    TOPIC_REFUND_CREATE,
    Delivery,
    ManualClock,
)
from stocksync.platforms.shopify.webhooks import parse_webhook
from stocksync.storage.tables import product_links
from tests.harness import Harness


async def _setup(h: Harness, settings: ConnectionSettings | None = None) -> None:
    """A source with TEE-S and TEE-M (10 units each), imported by ``dest`` (paid only)."""
    await h.add_store("source", "source")
    h.shop("source").add_product("Tee", ["TEE-S", "TEE-M"], available=10)
    await h.add_store("dest", "destination")
    record = await h.connect("dest", "source", settings)
    assert (await import_products(h.rt, record.id)).linked_variants == 2
    h.world.take_outbox()
    await h.settle()
    h.world.reset_counters()


def _same_second(h: Harness) -> None:
    """Every change from now on falls in one second: Shopify's versions tie. The second is
    after the install and the links (orders placed before them never count)."""
    h.world.clock = ManualClock(datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1))
    h.world.whole_second_versions = True


def _variant(h: Harness, sku: str) -> str:
    return h.shop("dest").variant_by_sku(sku).id


def _split(deliveries: list[Delivery], *topics: str) -> tuple[list[Delivery], list[Delivery]]:
    chosen = [d for d in deliveries if d.topic in topics]
    return chosen, [d for d in deliveries if d not in chosen]


# --- sequence 5: paid, then units added; the edit's webhooks first ----------------------------


async def test_paid_order_made_partially_paid_by_an_edit_counts_whatever_the_order(
    h: Harness,
) -> None:
    await _setup(h)
    dest = h.shop("dest")
    order = dest.place_order([(_variant(h, "TEE-S"), 2)], financial_status="paid")
    paid = h.world.take_outbox()
    dest.edit_order(order.id, order.lines[0].id, 3)  # a balance is owed now
    assert dest.order(order.id).financial_status == "partially_paid"
    edited = h.world.take_outbox()
    # the edit's webhooks (and its read) first, then the older orders/create and orders/paid
    await h.deliver(edited)
    await h.settle()
    assert h.level("source", "TEE-S") == 10  # not known to be paid yet
    await h.deliver(paid)
    await h.settle()
    # paid in full once: counted, with the units of its newest state
    assert h.level("source", "TEE-S") == 7
    assert h.level("dest", "TEE-S") == 7


# --- sequence 6: a deposit refunded (money only) is not paid ----------------------------------


async def test_deposit_order_partially_refunded_is_not_counted_as_paid(h: Harness) -> None:
    await _setup(h)  # paid orders only
    dest, src = h.shop("dest"), h.shop("source")
    order = dest.place_order([(_variant(h, "TEE-S"), 3)], financial_status="partially_paid")
    await h.settle()
    assert h.level("source", "TEE-S") == 10
    dest.refund(order.id, [], restock=False)  # money back, no units
    assert dest.order(order.id).financial_status == "partially_refunded"
    await h.settle()
    assert h.level("source", "TEE-S") == 10
    assert src.counters.calls["adjust_level"] == 0


async def test_deposit_order_counts_once_it_is_paid_in_full(h: Harness) -> None:
    await _setup(h)
    dest = h.shop("dest")
    order = dest.place_order([(_variant(h, "TEE-S"), 3)], financial_status="partially_paid")
    dest.refund(order.id, [], restock=False)
    await h.settle()
    assert h.level("source", "TEE-S") == 10
    dest.mark_paid(order.id)
    await h.settle()
    assert h.level("source", "TEE-S") == 7


# --- sequence 10: snapshots within one second --------------------------------------------------


async def test_late_same_second_paid_webhook_changes_no_count(h: Harness) -> None:
    await _setup(h)
    _same_second(h)
    dest = h.shop("dest")
    order = dest.place_order([(_variant(h, "TEE-S"), 2)], financial_status="paid")
    created, paid = _split(h.world.take_outbox(), TOPIC_ORDER_CREATE)
    await h.deliver(created)
    await h.settle()
    assert h.level("source", "TEE-S") == 8
    dest.edit_order(order.id, order.lines[0].id, 3)
    await h.settle()
    assert h.level("source", "TEE-S") == 7
    # orders/paid of the 2-unit state, with the same updated_at as the edit, comes last
    late = [d for d in paid if d.topic == TOPIC_ORDER_PAID]
    assert late
    await h.deliver(late)
    await h.settle()
    assert h.level("source", "TEE-S") == 7
    assert h.level("dest", "TEE-S") == 7


async def test_same_second_stale_recount_does_not_swallow_a_later_edit(h: Harness) -> None:
    await _setup(h)
    _same_second(h)
    dest = h.shop("dest")
    order = dest.place_order([(_variant(h, "TEE-S"), 3)], financial_status="paid")
    placed = h.world.take_outbox()
    created, late = _split(placed, TOPIC_ORDER_CREATE)
    await h.deliver(created)
    await h.settle()
    assert h.level("source", "TEE-S") == 7
    dest.edit_order(order.id, order.lines[0].id, 2, restock=True)  # one unit back
    edited, updated = _split(h.world.take_outbox(), TOPIC_ORDER_EDITED)
    await h.deliver(updated)  # orders/updated (2 units) first
    await h.settle()
    assert h.level("source", "TEE-S") == 8
    await h.deliver(late)  # orders/paid of the 3-unit state, same second
    await h.settle()
    await h.deliver(edited)  # orders/edited: the order is read (2 units)
    await h.settle()
    assert h.level("source", "TEE-S") == 8
    assert h.level("dest", "TEE-S") == 8


async def test_edits_back_and_forth_within_one_second_each_count(h: Harness) -> None:
    await _setup(h)
    _same_second(h)
    dest = h.shop("dest")
    order = dest.place_order([(_variant(h, "TEE-S"), 3)], financial_status="paid")
    line = order.lines[0].id
    await h.settle()
    assert h.level("source", "TEE-S") == 7
    dest.edit_order(order.id, line, 2, restock=True)
    await h.settle()
    assert h.level("source", "TEE-S") == 8
    dest.edit_order(order.id, line, 3)
    await h.settle()
    assert h.level("source", "TEE-S") == 7
    dest.edit_order(order.id, line, 2, restock=True)  # the same line, version and quantity
    await h.settle()
    assert h.level("source", "TEE-S") == 8
    assert h.level("dest", "TEE-S") == 8


async def test_payment_in_the_second_the_order_was_seen_is_found_by_the_backfill(
    h: Harness,
) -> None:
    """A pending order seen by its webhook, paid within the same second, every webhook of the
    payment lost: the backfill finds the paid order at the version it already holds, and
    counts it (it took the equal version for nothing new, and the sale never counted)."""
    await _setup(h)  # paid orders only
    _same_second(h)
    dest = h.shop("dest")
    order = dest.place_order([(_variant(h, "TEE-S"), 2)], financial_status="pending")
    await h.settle()
    assert h.level("source", "TEE-S") == 10
    dest.mark_paid(order.id)
    h.world.take_outbox()  # orders/paid and orders/updated never arrive
    await h.settle()
    assert h.level("source", "TEE-S") == 10
    assert await backfill_orders(h.rt, h.stores["dest"].id) == 1
    await h.settle()
    assert h.level("source", "TEE-S") == 8
    assert h.level("dest", "TEE-S") == 8
    # found again by the next run, it is not scheduled a second time
    assert await backfill_orders(h.rt, h.stores["dest"].id) == 0


# --- sequence 11: pause and restock rules ------------------------------------------------------


async def test_sale_on_a_paused_connection_still_comes_off_the_source(h: Harness) -> None:
    await _setup(h)
    async with h.db.begin() as conn:
        await set_connection_paused(h.rt, conn, h.connections["dest"].id, True)
    dest = h.shop("dest")
    dest.place_order([(_variant(h, "TEE-S"), 2)], financial_status="paid")
    await h.settle()
    assert h.level("source", "TEE-S") == 8
    async with h.db.begin() as conn:
        await set_connection_paused(h.rt, conn, h.connections["dest"].id, False)
    await h.settle()
    assert h.level("dest", "TEE-S") == 8


async def test_sale_of_a_paused_product_still_comes_off_the_source(h: Harness) -> None:
    await _setup(h)
    async with h.db.begin() as conn:
        link_id = (
            await conn.execute(
                select(product_links.c.id).where(
                    product_links.c.connection_id == h.connections["dest"].id
                )
            )
        ).scalar_one()
        await set_product_paused(h.rt, conn, link_id, True)
    dest = h.shop("dest")
    dest.place_order([(_variant(h, "TEE-M"), 4)], financial_status="paid")
    await h.settle()
    assert h.level("source", "TEE-M") == 6


async def test_retailer_sale_reaches_the_root_through_a_paused_hub_link(h: Harness) -> None:
    await h.add_store("supplier", "source")
    await h.add_store("hub", "hub", hub_enabled=True)
    await h.add_store("retailer", "destination")
    h.shop("supplier").add_product("Lamp", ["LAMP"], available=10)
    for destination, source in (("hub", "supplier"), ("retailer", "hub")):
        record = await h.connect(destination, source)
        await import_products(h.rt, record.id)
        await h.settle()
    async with h.db.begin() as conn:
        await set_connection_paused(h.rt, conn, h.connections["hub"].id, True)
    retailer = h.shop("retailer")
    retailer.place_order([(retailer.variant_by_sku("LAMP").id, 3)], financial_status="paid")
    await h.settle()
    assert h.level("supplier", "LAMP") == 7
    assert h.shop("hub").counters.calls["adjust_level"] == 0


async def test_refund_line_not_restocked_gives_nothing_back_whatever_its_type(
    h: Harness,
) -> None:
    await _setup(h)
    dest = h.shop("dest")
    order = dest.place_order([(_variant(h, "TEE-S"), 3)], financial_status="paid")
    await h.settle()
    assert h.level("source", "TEE-S") == 7
    # a return whose units the merchant did not put back: restockType RETURN, restocked false
    refund = dest.refund(order.id, [(order.lines[0].id, 1)], restock=False)
    memory_refund, rest = _split(h.world.take_outbox(), TOPIC_REFUND_CREATE)
    assert memory_refund
    body = {
        "id": int(refund.id),
        "order_id": int(order.id),
        "restock": True,
        "refund_line_items": [
            {
                "id": int(rl.id),
                "line_item_id": int(rl.line_id),
                "quantity": rl.quantity,
                "restock_type": "return",
                "location_id": int(dest.primary_location_id),
            }
            for rl in refund.lines
        ],
    }
    event = parse_webhook(TOPIC_REFUND_CREATE, json.dumps(body).encode())
    assert event is not None
    await h.deliver([Delivery("dest", "evt-shopify-refund", TOPIC_REFUND_CREATE, event)])
    await h.deliver(rest)
    await h.settle()
    assert h.level("source", "TEE-S") == 7
    assert h.level("dest", "TEE-S") == 7
