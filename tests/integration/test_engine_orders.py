"""Destination orders, edits and refunds applied to the source exactly once, on a real database
(B15, B16, B17), whatever the webhooks do."""

from __future__ import annotations

from stocksync.domain.connection import ConnectionSettings
from stocksync.engine.catalog import import_products
from stocksync.platforms.memory import (
    TOPIC_ORDER_CANCELLED,
    TOPIC_ORDER_CREATE,
    TOPIC_ORDER_PAID,
    TOPIC_REFUND_CREATE,
    Delivery,
)
from tests.harness import Harness


async def _setup(h: Harness, settings: ConnectionSettings | None = None) -> None:
    """A source with TEE-S and TEE-M (10 units each), imported by ``dest``."""
    await h.add_store("source", "source")
    h.shop("source").add_product("Tee", ["TEE-S", "TEE-M"], available=10)
    await h.add_store("dest", "destination")
    record = await h.connect("dest", "source", settings)
    assert (await import_products(h.rt, record.id)).linked_variants == 2
    h.world.take_outbox()
    await h.settle()
    h.world.reset_counters()


def _variant(h: Harness, store: str, sku: str) -> str:
    return h.shop(store).variant_by_sku(sku).id


def _topics(deliveries: list[Delivery], *topics: str) -> list[Delivery]:
    return [d for d in deliveries if d.topic in topics]


# --- restocks (B16) ---------------------------------------------------------------------------


async def test_restocking_cancellation_gives_its_units_back_once(h: Harness) -> None:
    await _setup(h)
    dest, src = h.shop("dest"), h.shop("source")
    order = dest.place_order([(_variant(h, "dest", "TEE-S"), 3)], financial_status="paid")
    await h.settle()
    assert h.level("source", "TEE-S") == 7

    src.counters.reset()
    dest.cancel_order(order.id, restock=True)
    deliveries = h.world.take_outbox()
    # the cancellation is reported as orders/cancelled and as refunds/create (and updated)
    assert len(_topics(deliveries, TOPIC_ORDER_CANCELLED)) == 1
    assert len(_topics(deliveries, TOPIC_REFUND_CREATE)) == 1
    await h.deliver(list(reversed(deliveries)) + deliveries)
    await h.settle()
    assert h.level("source", "TEE-S") == 10
    assert h.level("dest", "TEE-S") == 10
    assert src.counters.calls["adjust_levels"] == 1
    assert src.counters.units_adjusted == 3


async def test_restocking_a_never_counted_pending_order_gives_nothing_back(h: Harness) -> None:
    await _setup(h)  # paid orders only
    dest, src = h.shop("dest"), h.shop("source")
    order = dest.place_order([(_variant(h, "dest", "TEE-S"), 2)], financial_status="pending")
    await h.settle()
    assert h.level("source", "TEE-S") == 10  # not counted
    # Held on the destination that sold them (B24): not shown for sale again while unpaid.
    assert h.level("dest", "TEE-S") == 8

    dest.cancel_order(order.id, restock=True)
    assert dest.order(order.id).financial_status == "voided"
    await h.settle()
    assert h.level("source", "TEE-S") == 10
    assert h.level("dest", "TEE-S") == 10
    assert src.counters.calls["adjust_levels"] == 0


async def test_refund_without_restock_changes_nothing(h: Harness) -> None:
    await _setup(h)
    dest = h.shop("dest")
    order = dest.place_order([(_variant(h, "dest", "TEE-M"), 4)], financial_status="paid")
    await h.settle()
    dest.refund(order.id, [(order.lines[0].id, 2)], restock=False)
    await h.settle()
    assert h.level("source", "TEE-M") == 6
    assert h.level("dest", "TEE-M") == 6


# --- duplicates and reordering (B17) ---------------------------------------------------------


async def test_duplicate_webhooks_have_no_second_effect(h: Harness) -> None:
    await _setup(h)
    dest, src = h.shop("dest"), h.shop("source")
    dest.place_order([(_variant(h, "dest", "TEE-S"), 2)], financial_status="paid")
    deliveries = h.world.take_outbox()
    first = await h.deliver(deliveries)
    assert {r.outcome for r in first} == {"recorded"}
    again = await h.deliver(deliveries)
    assert [r.outcome for r in again] == ["duplicate"] * len(deliveries)
    assert all(r.inbox_id is None for r in again)
    await h.settle()
    third = await h.deliver(deliveries)  # after processing, still duplicates
    assert [r.outcome for r in third] == ["duplicate"] * len(deliveries)
    await h.settle()
    assert h.level("source", "TEE-S") == 8
    assert src.counters.calls["adjust_levels"] == 1


async def test_refund_before_the_paid_webhook_is_counted_once_net(h: Harness) -> None:
    await _setup(h)  # paid orders only: the order counts once it is paid
    dest, src = h.shop("dest"), h.shop("source")
    order = dest.place_order([(_variant(h, "dest", "TEE-S"), 3)], financial_status="pending")
    dest.mark_paid(order.id)
    dest.refund(order.id, [(order.lines[0].id, 1)], restock=True)
    deliveries = h.world.take_outbox()
    refunds = _topics(deliveries, TOPIC_REFUND_CREATE)
    rest = [d for d in deliveries if d not in refunds]
    assert len(refunds) == 1
    assert _topics(rest, TOPIC_ORDER_PAID, TOPIC_ORDER_CREATE)
    # the refund first, then every other webhook newest first
    await h.deliver(refunds)
    await h.settle()
    assert h.level("source", "TEE-S") == 8  # 3 counted, 1 given back
    await h.deliver(list(reversed(rest)))
    await h.settle()
    assert h.level("source", "TEE-S") == 8
    assert h.level("dest", "TEE-S") == 8
    # the sale and its restock went in one batch: one adjustment of their net change
    assert src.counters.calls["adjust_levels"] == 1
    assert src.counters.units_adjusted == 2


# --- edits (B15) ------------------------------------------------------------------------------


async def test_order_edits_change_the_source_by_the_difference(h: Harness) -> None:
    await _setup(h)
    dest = h.shop("dest")
    order = dest.place_order([(_variant(h, "dest", "TEE-S"), 2)], financial_status="paid")
    line = order.lines[0].id
    await h.settle()
    assert h.level("source", "TEE-S") == 8

    dest.edit_order(order.id, line, 5)  # 3 more units
    deliveries = h.world.take_outbox()
    await h.deliver(deliveries + deliveries)
    await h.settle()
    assert h.level("source", "TEE-S") == 5

    dest.edit_order(order.id, line, 1, restock=True)  # 4 units fewer
    await h.settle()
    assert h.level("source", "TEE-S") == 9

    dest.add_order_line(order.id, _variant(h, "dest", "TEE-M"), 2)  # a new line
    await h.settle()
    assert (h.level("source", "TEE-S"), h.level("source", "TEE-M")) == (9, 8)
    assert (h.level("dest", "TEE-S"), h.level("dest", "TEE-M")) == (9, 8)


# --- several sources --------------------------------------------------------------------------


async def test_one_order_with_lines_of_two_sources_decrements_each_for_its_own(
    h: Harness,
) -> None:
    await h.add_store("maker-a", "source")
    await h.add_store("maker-b", "source")
    await h.add_store("shop", "destination")
    h.shop("maker-a").add_product("Mug", ["MUG"], available=10)
    h.shop("maker-b").add_product("Cap", ["CAP"], available=20)
    for maker in ("maker-a", "maker-b"):
        record = await h.connect("shop", maker)
        assert (await import_products(h.rt, record.id)).linked_variants == 1
    h.world.take_outbox()
    await h.settle()
    h.world.reset_counters()

    shop = h.shop("shop")
    shop.place_order(
        [(_variant(h, "shop", "MUG"), 2), (_variant(h, "shop", "CAP"), 5)],
        financial_status="paid",
    )
    await h.settle()
    assert h.level("maker-a", "MUG") == 8
    assert h.level("maker-b", "CAP") == 15
    assert (h.level("shop", "MUG"), h.level("shop", "CAP")) == (8, 15)
    for maker, units in (("maker-a", 2), ("maker-b", 5)):
        assert h.shop(maker).counters.calls["adjust_levels"] == 1
        assert h.shop(maker).counters.units_adjusted == units
