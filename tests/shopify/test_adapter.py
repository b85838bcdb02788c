"""ShopifyPlatform against the sandbox over real HTTP: every StorePlatform method."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import httpx
import pytest

from stocksync.domain.ports import (
    IdempotencyConflictError,
    IdempotencyKeySpentError,
    LevelAdjustment,
    LevelWrite,
    LocationInactiveError,
    ProductDraft,
    SetOutcome,
    TransientPlatformError,
    UserErrors,
    Variant,
)
from stocksync.platforms.shopify.adapter import ShopifyPlatform
from stocksync.platforms.shopify.mapping import order_from_node
from tests.shopify.conftest import Env
from tests.shopify.helpers import (
    cancel,
    edit_quantity,
    merchant_set,
    number,
    order,
    product,
    refund,
)

BIG = 2**53


def _applied() -> Any:
    """Any applied outcome (its time is the sandbox clock's)."""

    class Applied:
        def __eq__(self, other: object) -> bool:
            return isinstance(other, SetOutcome) and other.applied and other.changed_at is not None

    return Applied()


def _location(env: Env, name: str) -> str:
    return next(str(loc.id) for loc in env.shop.locations.values() if loc.name == name)


async def _items(env: Env, skus: list[str], stock: int = 10) -> list[str]:
    variants = await product(env, "Tee", skus, stock)
    return [number(v["inventoryItem"]["id"]) for v in variants]


async def test_list_locations(env: Env) -> None:
    platform = env.platform()
    locations = await platform.list_locations()
    assert [(loc.name, loc.active) for loc in locations] == [
        ("Warehouse", True),
        ("Store", True),
        ("Old depot", False),
    ]
    assert all(int(loc.id) > BIG and loc.id == str(int(loc.id)) for loc in locations)


async def test_read_and_set_levels_round_trip(env: Env) -> None:
    platform = env.platform()
    a, b = await _items(env, ["A", "B"])
    warehouse, store = _location(env, "Warehouse"), _location(env, "Store")
    assert await platform.read_levels([a, b], [warehouse, store]) == {
        (a, warehouse): 10,
        (b, warehouse): 10,
        (a, store): None,
        (b, store): None,
    }
    outcome = await platform.set_levels(
        [LevelWrite(a, warehouse, 7, 10), LevelWrite(b, warehouse, 0, 10)]
    )
    # The write's time, on the clock of the levels' webhooks (``updated_at``): the engine
    # orders it against level reports.
    level = env.shop.level(int(a), int(warehouse))
    assert level is not None
    assert outcome == SetOutcome(changed_at=int(level.updated_at))
    read = await platform.read_levels([a, b], [warehouse])
    assert read == {(a, warehouse): 7, (b, warehouse): 0}
    # Each level's time of change, on the same clock.
    assert read.updated_at == {
        (a, warehouse): int(level.updated_at),
        (b, warehouse): int(level.updated_at),
    }


async def test_unknown_and_malformed_ids_read_as_not_stocked(env: Env) -> None:
    platform = env.platform()
    warehouse = _location(env, "Warehouse")
    assert await platform.read_levels([str(BIG + 12345), "not-an-id"], [warehouse]) == {
        (str(BIG + 12345), warehouse): None,
        ("not-an-id", warehouse): None,
    }


async def test_set_activates_an_item_not_stocked_then_sets_it(env: Env) -> None:
    platform = env.platform()
    (a,) = await _items(env, ["A"])
    store = _location(env, "Store")
    assert await platform.set_levels([LevelWrite(a, store, 5, None)]) == _applied()
    assert await platform.read_levels([a], [store]) == {(a, store): 5}


async def test_integer_compare_on_an_item_not_stocked_is_stale(env: Env) -> None:
    platform = env.platform()
    (a,) = await _items(env, ["A"])
    store = _location(env, "Store")
    assert await platform.set_levels([LevelWrite(a, store, 5, 3)]) == SetOutcome(stale=(a,))
    assert await platform.read_levels([a], [store]) == {(a, store): None}


async def test_race_between_read_and_write_reports_stale_and_applies_nothing(env: Env) -> None:
    platform = env.platform()
    a, b = await _items(env, ["A", "B"])
    warehouse = _location(env, "Warehouse")
    env.sandbox.set_faults("north", race={"next": 1})  # a sale lands just before our write
    outcome = await platform.set_levels(
        [LevelWrite(a, warehouse, 4, 10), LevelWrite(b, warehouse, 4, 10)]
    )
    assert outcome == SetOutcome(stale=(a,))
    assert await platform.read_levels([a, b], [warehouse]) == {
        (a, warehouse): 9,
        (b, warehouse): 10,
    }


async def test_merchant_change_makes_compare_stale(env: Env) -> None:
    platform = env.platform()
    a, b = await _items(env, ["A", "B"])
    warehouse = _location(env, "Warehouse")
    await merchant_set(env, b, warehouse, 6)
    outcome = await platform.set_levels(
        [LevelWrite(a, warehouse, 1, 10), LevelWrite(b, warehouse, 1, 10)]
    )
    assert outcome == SetOutcome(stale=(b,))
    assert await platform.read_levels([a, b], [warehouse]) == {
        (a, warehouse): 10,
        (b, warehouse): 6,
    }


async def test_deactivated_location_raises_without_retrying(env: Env) -> None:
    platform = env.platform()
    (a,) = await _items(env, ["A"])
    depot = _location(env, "Old depot")
    before = len(env.recorded)
    with pytest.raises(LocationInactiveError) as raised:
        await platform.set_levels([LevelWrite(a, depot, 5, None)])
    assert raised.value.location_id == depot
    # one write refused, one status lookup; no activation attempt, no loop
    assert len(env.recorded) - before == 2
    with pytest.raises(LocationInactiveError):
        await platform.adjust_level(a, depot, 1, "k-depot")


async def test_batch_larger_than_batch_size_is_refused(env: Env) -> None:
    platform = env.platform(batch_size=2)
    a, b, c = await _items(env, ["A", "B", "C"])
    warehouse = _location(env, "Warehouse")
    with pytest.raises(UserErrors) as raised:
        await platform.set_levels([LevelWrite(i, warehouse, 1, 10) for i in (a, b, c)])
    assert raised.value.codes == ("MAX_INPUT_SIZE_EXCEEDED",)
    with pytest.raises(ValueError, match="batch_size"):
        env.platform(batch_size=251)


async def test_invalid_quantity_is_a_user_error(env: Env) -> None:
    platform = env.platform()
    (a,) = await _items(env, ["A"])
    warehouse = _location(env, "Warehouse")
    with pytest.raises(UserErrors) as raised:
        await platform.set_levels([LevelWrite(a, warehouse, -1, 10)])
    assert raised.value.codes == ("INVALID_QUANTITY_NEGATIVE",)


@pytest.mark.parametrize("version", ["2026-01", "2026-04", "2026-10"])
async def test_every_adjustment_and_write_carries_an_idempotency_key(
    env: Env, version: str
) -> None:
    platform = env.platform(version)
    (a,) = await _items(env, ["A"])
    warehouse = _location(env, "Warehouse")
    assert await platform.set_levels([LevelWrite(a, warehouse, 8, 10)]) == _applied()
    await platform.adjust_level(a, warehouse, 3, "adjust-1")
    sent = [
        r.query
        for r in env.recorded
        if "inventorySetQuantities(" in r.query or "inventoryAdjustQuantities(" in r.query
    ]
    assert len(sent) == 2
    assert all("@idempotent" in q for q in sent)
    assert await platform.read_levels([a], [warehouse]) == {(a, warehouse): 11}


@pytest.mark.parametrize("version", ["2025-01", "2025-10"])
def test_versions_without_idempotency_keys_are_refused(env: Env, version: str) -> None:
    # A retried adjustment without a key would count a sale twice: no such path exists.
    with pytest.raises(ValueError, match=f"API version {version} is refused") as refused:
        env.platform(version)
    assert "idempotency key" in str(refused.value)


async def test_adjust_is_idempotent_per_key(env: Env) -> None:
    platform = env.platform()
    (a,) = await _items(env, ["A"])
    warehouse = _location(env, "Warehouse")
    await platform.adjust_level(a, warehouse, -2, "order-1-line-1")
    await platform.adjust_level(a, warehouse, -2, "order-1-line-1")  # a retry: no effect
    assert await platform.read_levels([a], [warehouse]) == {(a, warehouse): 8}
    with pytest.raises(IdempotencyConflictError):
        await platform.adjust_level(a, warehouse, -3, "order-1-line-1")
    assert await platform.read_levels([a], [warehouse]) == {(a, warehouse): 8}


async def test_adjust_retried_after_a_lost_response_applies_once(env: Env) -> None:
    platform = env.platform()
    (a,) = await _items(env, ["A"])
    warehouse = _location(env, "Warehouse")
    env.sandbox.set_faults("north", lost_response={"next": 1})
    await platform.adjust_level(a, warehouse, 5, "restock-7")
    assert env.sandbox.stats_of(env.shop).lost_responses == 1
    assert await platform.read_levels([a], [warehouse]) == {(a, warehouse): 15}


async def test_set_retried_after_a_lost_response_applies_once(env: Env) -> None:
    platform = env.platform()
    (a,) = await _items(env, ["A"])
    warehouse = _location(env, "Warehouse")
    env.sandbox.set_faults("north", lost_response={"next": 1})
    assert await platform.set_levels([LevelWrite(a, warehouse, 4, 10)]) == _applied()
    assert env.sandbox.stats_of(env.shop).lost_responses == 1
    assert await platform.read_levels([a], [warehouse]) == {(a, warehouse): 4}


async def test_adjust_levels_sends_a_batch_in_one_mutation(env: Env) -> None:
    platform = env.platform()
    a, b = await _items(env, ["A", "B"])
    warehouse = _location(env, "Warehouse")
    changes = [LevelAdjustment(a, warehouse, -2), LevelAdjustment(b, warehouse, -3)]
    await platform.adjust_levels(changes, "batch-1")
    await platform.adjust_levels(changes, "batch-1")  # a resend: no second effect
    assert await platform.read_levels([a, b], [warehouse]) == {(a, warehouse): 8, (b, warehouse): 7}
    sent = [r.query for r in env.recorded if "inventoryAdjustQuantities(" in r.query]
    assert len(sent) == 2  # one mutation per batch, not one per change


async def test_adjust_levels_refused_for_one_change_applies_none(env: Env) -> None:
    platform = env.platform()
    a, b = await _items(env, ["A", "B"])
    warehouse, store = _location(env, "Warehouse"), _location(env, "Store")
    with pytest.raises(UserErrors) as raised:
        await platform.adjust_levels(
            [LevelAdjustment(a, warehouse, -1), LevelAdjustment(b, store, -1)], "batch-2"
        )
    assert raised.value.codes == ("ITEM_NOT_STOCKED_AT_LOCATION",)
    assert await platform.read_levels([a, b], [warehouse]) == {
        (a, warehouse): 10,
        (b, warehouse): 10,
    }


async def test_adjust_try_again_is_transient_and_its_key_is_spent(env: Env) -> None:
    """ADJUST_QUANTITIES_FAILED says "try again": a transient failure, never a refusal; the
    key's failed attempt then answers IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED, and the same change
    applies once under a new key."""
    platform = env.platform()
    (a,) = await _items(env, ["A"])
    warehouse = _location(env, "Warehouse")
    change = [LevelAdjustment(a, warehouse, -4)]
    env.sandbox.set_faults("north", adjust_failed={"next": 1})
    with pytest.raises(TransientPlatformError) as first:
        await platform.adjust_levels(change, "sale-1")
    assert not isinstance(first.value, IdempotencyKeySpentError)
    with pytest.raises(IdempotencyKeySpentError):
        await platform.adjust_levels(change, "sale-1")
    assert await platform.read_levels([a], [warehouse]) == {(a, warehouse): 10}
    await platform.adjust_levels(change, "sale-1-attempt-2")
    assert await platform.read_levels([a], [warehouse]) == {(a, warehouse): 6}


async def test_adjust_of_an_item_not_stocked_is_a_user_error(env: Env) -> None:
    platform = env.platform()
    (a,) = await _items(env, ["A"])
    with pytest.raises(UserErrors) as raised:
        await platform.adjust_level(a, _location(env, "Store"), 1, "k1")
    assert raised.value.codes == ("ITEM_NOT_STOCKED_AT_LOCATION",)
    with pytest.raises(UserErrors) as empty:
        await platform.adjust_level(a, _location(env, "Warehouse"), 1, "")
    assert empty.value.codes == ("INVALID_IDEMPOTENCY_KEY",)


DRAFT = ProductDraft(
    title="Wool scarf ✓",
    description="<p>Warm</p>",
    vendor="Acme",
    product_type="Accessories",
    tags=("winter", "wool"),
    status="draft",
    images=("https://cdn.example.com/scarf.png",),
    options=("Colour", "Size"),
    variants=(
        Variant(
            id="",
            item_id="",
            sku="SCARF-RED-S",
            barcode="0123456789",
            price="19.90",
            compare_at_price="24.00",
            weight=0.25,
            weight_unit="KILOGRAMS",
            option_values=("Red", "S"),
            continue_selling=True,
        ),
        Variant(
            id="",
            item_id="",
            sku="SCARF-BLUE-M",
            price="21.00",
            tracked=False,
            option_values=("Blue", "M"),
        ),
    ),
)


async def test_create_get_list_and_find_products(env: Env) -> None:
    platform = env.platform()
    created = await platform.create_product(DRAFT)
    assert int(created.id) > BIG
    assert (created.title, created.description, created.vendor, created.product_type) == (
        "Wool scarf ✓",
        "<p>Warm</p>",
        "Acme",
        "Accessories",
    )
    assert (created.tags, created.status, created.images, created.options) == (
        ("winter", "wool"),
        "draft",
        ("https://cdn.example.com/scarf.png",),
        ("Colour", "Size"),
    )
    red, blue = created.variants
    assert (red.sku, red.barcode, red.price, red.compare_at_price) == (
        "SCARF-RED-S",
        "0123456789",
        "19.90",
        "24.00",
    )
    assert (red.weight, red.weight_unit, red.option_values, red.continue_selling, red.tracked) == (
        0.25,
        "KILOGRAMS",
        ("Red", "S"),
        True,
        True,
    )
    assert (blue.sku, blue.tracked, blue.continue_selling, blue.option_values) == (
        "SCARF-BLUE-M",
        False,
        False,
        ("Blue", "M"),
    )
    assert await platform.get_product(created.id) == created
    assert await platform.list_products() == [created]
    found = await platform.find_variants_by_sku(["SCARF-RED-S", "SCARF", "", "NOPE"])
    assert found == {"SCARF-RED-S": [red], "SCARF": [], "": [], "NOPE": []}
    assert found["SCARF-RED-S"][0].product_id == created.id  # found without a catalog scan
    assert await platform.get_product(str(BIG + 1)) is None
    assert await platform.get_product("nonsense") is None


async def test_product_with_many_variants_is_read_whole(env: Env) -> None:
    platform = env.platform()
    platform.variants_page = 5  # force paging of variants on every read
    skus = [f"V-{i:02}" for i in range(12)]
    await product(env, "Many", skus)
    listed = await platform.list_products()
    assert [v.sku for v in listed[0].variants] == skus
    got = await platform.get_product(listed[0].id)
    assert got == listed[0]


async def test_list_products_pages_through_the_catalog(env: Env) -> None:
    platform = env.platform()
    platform.products_page = 2
    for i in range(5):
        await product(env, f"P{i}", [f"SKU-{i}"])
    assert [p.title for p in await platform.list_products()] == [f"P{i}" for i in range(5)]


async def test_order_snapshot_with_refunds_and_edits(env: Env) -> None:
    platform = env.platform()
    (variant,) = await product(env, "Mug", ["MUG"], stock=20)
    placed = await order(env, variant["id"], 5)
    order_id = number(placed["id"])
    line_gid = placed["lineItems"]["nodes"][0]["id"]
    snapshot = await platform.get_order(order_id)
    assert snapshot is not None
    assert (snapshot.id, snapshot.financial_status, snapshot.cancelled) == (order_id, "paid", False)
    assert snapshot.version == "2025-01-01T00:00:00.000000Z"
    assert snapshot.created_at == "2025-01-01T00:00:00.000000Z"
    (line,) = snapshot.lines
    assert (line.id, line.variant_id, line.sku, line.quantity) == (
        number(line_gid),
        number(variant["id"]),
        "MUG",
        5,
    )
    env.time.clock.advance(2)
    await refund(env, placed["id"], line_gid, 1, "CANCEL")
    env.time.clock.advance(2)
    await refund(env, placed["id"], line_gid, 1, "NO_RESTOCK")
    env.time.clock.advance(2)
    await edit_quantity(env, placed["id"], 0, 2)  # 3 units left before: one removed
    snapshot = await platform.get_order(order_id)
    assert snapshot is not None
    assert snapshot.version == "2025-01-01T00:00:06.000000Z"
    assert snapshot.created_at == "2025-01-01T00:00:00.000000Z"  # edits do not move it
    assert snapshot.financial_status == "partially_refunded"
    # ordered 5, two refunded (not subtracted), one removed by the edit
    assert [ln.quantity for ln in snapshot.lines] == [4]
    first, second = snapshot.refunds
    ((_, line1, qty1, restock1, loc1),) = [
        (r.id, r.line_id, r.quantity, r.restock, r.location_id) for r in first.lines
    ]
    assert (line1, qty1, restock1, loc1) == (number(line_gid), 1, True, env.warehouse)
    assert [(r.quantity, r.restock, r.location_id) for r in second.lines] == [(1, False, None)]
    assert await platform.get_order(str(BIG + 3)) is None


async def test_order_reports_payment_in_full_from_fully_paid(env: Env) -> None:
    platform = env.platform()
    (variant,) = await product(env, "Mug", ["MUG"], stock=20)
    placed = await order(env, variant["id"], 2)
    snapshot = await platform.get_order(number(placed["id"]))
    assert snapshot is not None
    assert (snapshot.financial_status, snapshot.paid_in_full) == ("paid", True)
    env.time.clock.advance(2)
    await edit_quantity(env, placed["id"], 0, 3)  # one unit added: its price is owed
    snapshot = await platform.get_order(number(placed["id"]))
    assert snapshot is not None
    assert (snapshot.financial_status, snapshot.paid_in_full) == ("partially_paid", False)

    deposit = await order(env, variant["id"], 3, status="PARTIALLY_PAID")
    await refund(env, deposit["id"], deposit["lineItems"]["nodes"][0]["id"], 1, "NO_RESTOCK")
    snapshot = await platform.get_order(number(deposit["id"]))
    assert snapshot is not None
    # the status word says money went back; the order was never paid in full
    assert snapshot.paid_in_full is False


@pytest.mark.parametrize(("fully_paid", "expected"), [(True, True), (False, False), (None, None)])
def test_order_node_without_fully_paid_cannot_tell(
    fully_paid: bool | None, expected: bool | None
) -> None:
    node: dict[str, Any] = {
        "id": "gid://shopify/Order/5",
        "updatedAt": "2025-01-01T00:00:00Z",
        "cancelledAt": None,
        "displayFinancialStatus": "PARTIALLY_REFUNDED",
    }
    if fully_paid is not None:
        node["fullyPaid"] = fully_paid
    assert order_from_node(node, [], []).paid_in_full is expected


@pytest.mark.parametrize(
    ("restock_type", "restocked", "expected"),
    [
        ("RETURN", False, False),  # returned, not put back: nothing to give back
        ("RETURN", True, True),
        ("CANCEL", True, True),
        ("NO_RESTOCK", False, False),
        ("LEGACY_RESTOCK", True, True),
        ("RETURN", None, True),  # a copy without the flag: its type is all there is
    ],
)
def test_refund_line_restocks_only_if_shopify_says_it_was_restocked(
    restock_type: str, restocked: bool | None, expected: bool
) -> None:
    line: dict[str, Any] = {
        "id": "gid://shopify/RefundLineItem/7",
        "quantity": 1,
        "restockType": restock_type,
        "location": {"id": "gid://shopify/Location/3"},
        "lineItem": {"id": "gid://shopify/LineItem/4"},
    }
    if restocked is not None:
        line["restocked"] = restocked
    node = {
        "id": "gid://shopify/Order/5",
        "updatedAt": "2025-01-01T00:00:00Z",
        "cancelledAt": None,
        "displayFinancialStatus": "PARTIALLY_REFUNDED",
    }
    refund = {"id": "gid://shopify/Refund/6", "refundLineItems": {"nodes": [line]}}
    (got,) = order_from_node(node, [], [refund]).refunds[0].lines
    assert got.restock is expected
    assert got.restock_confirmed


async def test_restocking_cancellation_is_one_refund(env: Env) -> None:
    platform = env.platform()
    (variant,) = await product(env, "Mug", ["MUG"], stock=20)
    placed = await order(env, variant["id"], 3)
    await cancel(env, placed["id"], restock=True)
    snapshot = await platform.get_order(number(placed["id"]))
    assert snapshot is not None
    assert snapshot.cancelled is True
    assert [[(r.quantity, r.restock) for r in f.lines] for f in snapshot.refunds] == [[(3, True)]]
    assert [ln.quantity for ln in snapshot.lines] == [3]


async def test_many_refunds_and_lines_are_all_read(env: Env) -> None:
    platform = env.platform()
    (variant,) = await product(env, "Mug", ["MUG"], stock=50)
    placed = await order(env, variant["id"], 9)
    line_gid = placed["lineItems"]["nodes"][0]["id"]
    for _ in range(7):  # more than the 5 refunds the first read asks for
        await refund(env, placed["id"], line_gid, 1, "NO_RESTOCK")
    snapshot = await platform.get_order(number(placed["id"]))
    assert snapshot is not None
    assert len(snapshot.refunds) == 7
    assert len({r.id for r in snapshot.refunds}) == 7
    assert [ln.quantity for ln in snapshot.lines] == [9]


async def test_orders_changed_since_is_inclusive_ordered_and_deduplicated(env: Env) -> None:
    platform = env.platform()
    platform.orders_page = 1  # pages of one order: exercises the cursor
    (variant,) = await product(env, "Mug", ["MUG"], stock=50)
    first = await order(env, variant["id"], 1)
    env.time.clock.advance(10)
    second = await order(env, variant["id"], 1)
    env.time.clock.advance(10)
    await refund(env, first["id"], first["lineItems"]["nodes"][0]["id"], 1, "CANCEL")
    everything = await platform.orders_changed_since(None)
    assert [(s.id, s.version) for s in everything] == [
        (number(second["id"]), "2025-01-01T00:00:10.000000Z"),
        (number(first["id"]), "2025-01-01T00:00:20.000000Z"),
    ]
    since_second = await platform.orders_changed_since("2025-01-01T00:00:10.000000Z")
    assert [s.id for s in since_second] == [number(second["id"]), number(first["id"])]
    later = await platform.orders_changed_since("2025-01-01T00:00:10.500000Z")
    assert [s.id for s in later] == [number(first["id"])]
    assert await platform.orders_changed_since("2025-01-01T00:00:21+00:00") == []
    with pytest.raises(UserErrors):
        await platform.orders_changed_since("yesterday")


async def test_ids_beyond_two_to_the_53_round_trip_exactly(env: Env) -> None:
    platform = env.platform()
    created = await platform.create_product(DRAFT)
    item = created.variants[0].item_id
    assert int(item) > BIG
    assert str(float(item)) != item
    warehouse = _location(env, "Warehouse")
    await platform.set_levels([LevelWrite(item, warehouse, 3, None)])
    assert await platform.read_levels([item], [warehouse]) == {(item, warehouse): 3}
    assert int(created.variants[0].id) == env.shop.variants[int(created.variants[0].id)].id


async def test_bulk_catalog_and_inventory(env: Env) -> None:
    platform = env.platform(bulk_poll_interval=0.5)
    created = await platform.create_product(DRAFT)
    await product(env, "Mug", ["MUG-1", "MUG-2"], stock=4)
    listed = await platform.list_products()
    catalog = await platform.bulk.catalog()
    # the bulk catalog carries no images (get_product does)
    assert catalog == [replace(p, images=()) for p in listed]
    assert catalog[0].id == created.id
    levels = await platform.bulk.inventory()
    items = [v.item_id for p in listed for v in p.variants]
    read = await platform.read_levels(items, env.location_ids())
    assert levels == {k: v for k, v in read.items() if v is not None}


async def test_bulk_operations_of_one_shop_run_one_at_a_time(env: Env) -> None:
    platform = env.platform(bulk_poll_interval=0.5)
    other = env.platform(bulk_poll_interval=0.5)  # another instance for the same shop
    await product(env, "Mug", ["MUG-1"], stock=4)
    first, second = await asyncio.gather(platform.bulk.inventory(), other.bulk.inventory())
    assert first == second
    assert len(first) == 1


async def test_adjust_service_unavailable_is_transient() -> None:
    """SERVICE_UNAVAILABLE (in the 2026-01 enum of inventoryAdjustQuantities) is a "try
    again" like ADJUST_QUANTITIES_FAILED; the sandbox does not serve that code, so the answer
    is Shopify's documented payload shape, served by a mock transport."""

    def handler(_request: httpx.Request) -> httpx.Response:
        errors = [{"code": "SERVICE_UNAVAILABLE", "field": None, "message": "Try again."}]
        payload = {"inventoryAdjustmentGroup": None, "userErrors": errors}
        return httpx.Response(200, json={"data": {"inventoryAdjustQuantities": payload}})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        platform = ShopifyPlatform("mock.myshopify.com", "token", http_client=http)
        with pytest.raises(TransientPlatformError) as raised:
            await platform.adjust_levels([LevelAdjustment("1", "2", -1)], "sale-9")
    assert not isinstance(raised.value, IdempotencyKeySpentError)
