"""The in-memory platform behaves as a real store platform does (Shopify, simplified)."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

import pytest

from stocksync.domain.events import (
    InboundEvent,
    LevelChanged,
    OrderEdited,
    OrderSeen,
    ProductChanged,
    ProductDeleted,
    RefundSeen,
)
from stocksync.domain.ports import (
    AuthError,
    IdempotencyConflictError,
    LevelWrite,
    LocationInactiveError,
    OrderLine,
    PlatformLocation,
    Product,
    ProductDraft,
    Refund,
    RefundLine,
    SetOutcome,
    StorePlatform,
    ThrottledError,
    TransientPlatformError,
    UserErrors,
    Variant,
)
from stocksync.platforms.memory import (
    Delivery,
    ManualClock,
    MemoryStore,
    MemoryWorld,
    OutOfStockError,
    faulty_delivery,
    format_version,
)

START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def world(clock: ManualClock) -> MemoryWorld:
    return MemoryWorld(clock)


@pytest.fixture
def store(world: MemoryWorld) -> MemoryStore:
    return world.add_store("source.example", locations=["Warehouse", "Shop"])


@pytest.fixture
def tee(store: MemoryStore, world: MemoryWorld) -> Product:
    """Two tracked variants with 10 units at both locations; creation events already taken."""
    product = store.add_product("Tee", ["TEE-S", "TEE-M"], available=10)
    world.take_outbox()
    return product


def taken(world: MemoryWorld) -> list[tuple[str, InboundEvent]]:
    return [(d.topic, d.event) for d in world.take_outbox()]


def locs(store: MemoryStore) -> tuple[str, str]:
    warehouse, shop = store.location_ids()
    return warehouse, shop


def items(product: Product) -> tuple[str, str]:
    return product.variants[0].item_id, product.variants[1].item_id


# --- the world and its stores ----------------------------------------------------------------


def test_store_implements_the_port(store: MemoryStore) -> None:
    assert isinstance(store, StorePlatform)


def test_stores_are_found_by_external_id_and_unique(world: MemoryWorld, store: MemoryStore) -> None:
    assert world.platform("source.example") is store
    with pytest.raises(ValueError, match="already exists"):
        world.add_store("source.example")
    with pytest.raises(KeyError):
        world.platform("nowhere.example")


def test_ids_are_strings_past_float_precision_and_unique_across_stores(
    world: MemoryWorld, store: MemoryStore, tee: Product
) -> None:
    other = world.add_store("dest.example").add_product("Tee", ["TEE-S"])
    ids = [
        tee.id,
        *[v.id for v in tee.variants],
        *items(tee),
        *store.location_ids(),
        other.id,
        other.variants[0].id,
        other.variants[0].item_id,
    ]
    assert len(set(ids)) == len(ids)
    assert all(isinstance(i, str) and int(i) > 2**53 for i in ids)
    assert any(int(float(i)) != int(i) for i in ids)  # a float would not keep them


async def test_locations_report_active_flag_and_deletion(store: MemoryStore) -> None:
    warehouse, shop = locs(store)
    assert await store.list_locations() == [
        PlatformLocation(warehouse, "Warehouse", True),
        PlatformLocation(shop, "Shop", True),
    ]
    store.deactivate_location(shop)
    assert await store.list_locations() == [
        PlatformLocation(warehouse, "Warehouse", True),
        PlatformLocation(shop, "Shop", False),
    ]
    assert store.primary_location_id == warehouse
    store.delete_location(warehouse)
    assert await store.list_locations() == [PlatformLocation(shop, "Shop", False)]


# --- reading and setting levels ----------------------------------------------------------------


async def test_read_levels_is_none_where_not_stocked(
    world: MemoryWorld, store: MemoryStore, tee: Product
) -> None:
    warehouse, shop = locs(store)
    small, medium = items(tee)
    store.unstock(medium, shop)
    assert taken(world) == [("inventory_levels/disconnect", LevelChanged(medium, shop, None))]
    assert store.all_levels() == {
        (small, warehouse): 10,
        (small, shop): 10,
        (medium, warehouse): 10,
    }
    assert await store.read_levels([small, medium, "404"], [warehouse, shop]) == {
        (small, warehouse): 10,
        (small, shop): 10,
        (medium, warehouse): 10,
        (medium, shop): None,
        ("404", warehouse): None,
        ("404", shop): None,
    }


async def test_set_levels_applies_and_echoes_every_change(
    world: MemoryWorld, store: MemoryStore, tee: Product
) -> None:
    warehouse, shop = locs(store)
    small, medium = items(tee)
    outcome = await store.set_levels(
        [
            LevelWrite(small, warehouse, 7, compare=10),
            LevelWrite(medium, shop, 10, compare=10),  # unchanged: no event
            LevelWrite(medium, warehouse, 0, compare=None),
        ]
    )
    assert outcome == SetOutcome()
    assert outcome.applied
    assert store.level(small, warehouse) == 7
    assert store.level(medium, warehouse) == 0
    # a real platform echoes our own writes back as webhooks
    assert taken(world) == [
        ("inventory_levels/update", LevelChanged(small, warehouse, 7)),
        ("inventory_levels/update", LevelChanged(medium, warehouse, 0)),
    ]
    assert store.counters.quantities_written == 3


async def test_a_stale_compare_applies_nothing_of_the_batch(
    world: MemoryWorld, store: MemoryStore, tee: Product
) -> None:
    warehouse, shop = locs(store)
    small, medium = items(tee)
    outcome = await store.set_levels(
        [
            LevelWrite(small, warehouse, 3, compare=10),
            LevelWrite(medium, warehouse, 4, compare=9),
            LevelWrite(small, shop, 5, compare=8),
        ]
    )
    assert outcome == SetOutcome(stale=(medium, small))
    assert not outcome.applied
    assert await store.read_levels([small, medium], [warehouse, shop]) == {
        (small, warehouse): 10,
        (small, shop): 10,
        (medium, warehouse): 10,
        (medium, shop): 10,
    }
    assert taken(world) == []
    assert store.counters.stale_batches == 1
    assert store.counters.quantities_written == 0


async def test_set_levels_activates_an_item_not_stocked(
    world: MemoryWorld, store: MemoryStore, tee: Product
) -> None:
    _, shop = locs(store)
    small, _ = items(tee)
    store.unstock(small, shop)
    world.take_outbox()
    # not stocked compares equal only to "no compare"
    assert await store.set_levels([LevelWrite(small, shop, 4, compare=0)]) == SetOutcome((small,))
    assert store.level(small, shop) is None
    assert await store.set_levels([LevelWrite(small, shop, 4, compare=None)]) == SetOutcome()
    assert store.level(small, shop) == 4
    assert taken(world) == [("inventory_levels/update", LevelChanged(small, shop, 4))]


async def test_a_new_product_is_stocked_at_the_primary_location_only(
    world: MemoryWorld, store: MemoryStore
) -> None:
    warehouse, shop = locs(store)
    draft = ProductDraft(
        title="Mug",
        variants=(
            Variant(id="ignored", item_id="ignored", sku="MUG", price="12.50"),
            Variant(id="", item_id="", sku="MUG-X", tracked=False),
        ),
        vendor="Acme",
        tags=("kitchen",),
    )
    product = await store.create_product(draft)
    mug, mug_x = product.variants
    assert {mug.id, mug.item_id, mug_x.id} & {"ignored", ""} == set()
    assert (mug.sku, mug.price, mug.tracked, mug_x.tracked) == ("MUG", "12.50", True, False)
    assert (product.title, product.vendor, product.tags) == ("Mug", "Acme", ("kitchen",))
    assert product.updated_at == START
    assert await store.read_levels([mug.item_id, mug_x.item_id], [warehouse, shop]) == {
        (mug.item_id, warehouse): 0,
        (mug.item_id, shop): None,
        (mug_x.item_id, warehouse): 0,
        (mug_x.item_id, shop): None,
    }
    assert taken(world) == [("products/create", ProductChanged(product.id))]
    assert await store.get_product(product.id) == product
    assert await store.list_products() == [product]


async def test_writes_to_an_inactive_or_deleted_location_raise_and_apply_nothing(
    world: MemoryWorld, store: MemoryStore, tee: Product
) -> None:
    warehouse, shop = locs(store)
    small, _ = items(tee)
    store.deactivate_location(shop)
    batch = [LevelWrite(small, warehouse, 1, 10), LevelWrite(small, shop, 1, 10)]
    with pytest.raises(LocationInactiveError) as inactive:
        await store.set_levels(batch)
    assert inactive.value.location_id == shop
    with pytest.raises(LocationInactiveError):
        await store.adjust_level(small, shop, 1, "k1")
    store.delete_location(shop)
    with pytest.raises(LocationInactiveError) as deleted:
        await store.set_levels(batch)
    assert deleted.value.location_id == shop
    assert store.level(small, warehouse) == 10
    assert taken(world) == []


@pytest.mark.parametrize(
    ("write", "code"),
    [
        (LevelWrite("ITEM", "LOC", -1, None), "INVALID_QUANTITY_NEGATIVE"),
        (LevelWrite("ITEM", "LOC", 1_000_000_001, None), "INVALID_QUANTITY_TOO_HIGH"),
        (LevelWrite("404", "LOC", 1, None), "INVALID_INVENTORY_ITEM"),
        (LevelWrite("ITEM", "404", 1, None), "INVALID_LOCATION"),
    ],
)
async def test_bad_writes_are_refused_whole(
    world: MemoryWorld, store: MemoryStore, tee: Product, write: LevelWrite, code: str
) -> None:
    warehouse, _ = locs(store)
    small, medium = items(tee)
    bad = LevelWrite(
        small if write.item_id == "ITEM" else write.item_id,
        warehouse if write.location_id == "LOC" else write.location_id,
        write.quantity,
        write.compare,
    )
    with pytest.raises(UserErrors) as refused:
        await store.set_levels([LevelWrite(medium, warehouse, 2, 10), bad])
    assert refused.value.codes == (code,)
    assert store.level(medium, warehouse) == 10
    assert taken(world) == []


async def test_batches_are_limited_and_pairs_unique(clock: ManualClock, world: MemoryWorld) -> None:
    store = MemoryWorld(clock, max_batch=2).add_store("small.example")
    product = store.add_product("Tee", ["A", "B", "C"], available=1)
    here = store.primary_location_id
    writes = [LevelWrite(v.item_id, here, 5, 1) for v in product.variants]
    with pytest.raises(UserErrors) as too_many:
        await store.set_levels(writes)
    assert too_many.value.codes == ("MAX_INPUT_SIZE_EXCEEDED",)
    assert await store.set_levels(writes[:2]) == SetOutcome()
    with pytest.raises(UserErrors) as twice:
        await store.set_levels([writes[2], writes[2]])
    assert twice.value.codes == ("NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR",)
    assert [store.level(v.item_id, here) for v in product.variants] == [5, 5, 1]
    assert world.max_batch == 250


# --- relative adjustments ---------------------------------------------------------------------


async def test_adjust_level_goes_negative_and_echoes(
    world: MemoryWorld, store: MemoryStore, tee: Product
) -> None:
    warehouse, _ = locs(store)
    small, _ = items(tee)
    await store.adjust_level(small, warehouse, -12, "order-1:line-1")
    assert store.level(small, warehouse) == -2
    assert taken(world) == [("inventory_levels/update", LevelChanged(small, warehouse, -2))]
    assert (store.counters.quantities_written, store.counters.units_adjusted) == (1, 12)


async def test_the_same_idempotency_key_applies_once(
    world: MemoryWorld, store: MemoryStore, tee: Product
) -> None:
    warehouse, _ = locs(store)
    small, _ = items(tee)
    await store.adjust_level(small, warehouse, -3, "k")
    world.take_outbox()
    await store.adjust_level(small, warehouse, -3, "k")
    assert store.level(small, warehouse) == 7
    assert taken(world) == []


@pytest.mark.parametrize("change", ["delta", "item", "location"])
async def test_a_key_reused_with_another_input_conflicts(
    world: MemoryWorld, store: MemoryStore, tee: Product, change: str
) -> None:
    warehouse, shop = locs(store)
    small, medium = items(tee)
    await store.adjust_level(small, warehouse, -3, "k")
    other = {
        "delta": (small, warehouse, -4),
        "item": (medium, warehouse, -3),
        "location": (small, shop, -3),
    }[change]
    with pytest.raises(IdempotencyConflictError):
        await store.adjust_level(*other, "k")
    assert await store.read_levels([small, medium], [warehouse, shop]) == {
        (small, warehouse): 7,
        (small, shop): 10,
        (medium, warehouse): 10,
        (medium, shop): 10,
    }


async def test_adjusting_an_item_not_stocked_is_refused_and_keeps_the_key_free(
    world: MemoryWorld, store: MemoryStore, tee: Product
) -> None:
    _, shop = locs(store)
    small, _ = items(tee)
    store.unstock(small, shop)
    with pytest.raises(UserErrors) as refused:
        await store.adjust_level(small, shop, 2, "k")
    assert refused.value.codes == ("ITEM_NOT_STOCKED_AT_LOCATION",)
    store.stock(small, shop)
    await store.adjust_level(small, shop, 2, "k")
    assert store.level(small, shop) == 2
    with pytest.raises(UserErrors) as no_key:
        await store.adjust_level(small, shop, 2, "")
    assert no_key.value.codes == ("INVALID_IDEMPOTENCY_KEY",)


# --- catalogue ----------------------------------------------------------------------------------


async def test_find_variants_by_sku_is_exact_and_lists_every_sku_asked(
    store: MemoryStore, tee: Product
) -> None:
    twin = store.add_product("Tee again", ["TEE-S"])
    spaced = store.add_product("Spaced", [" TEE-M"])
    assert await store.find_variants_by_sku(["TEE-S", "TEE-M", "NONE"]) == {
        "TEE-S": [tee.variants[0], twin.variants[0]],
        "TEE-M": [tee.variants[1]],
        "NONE": [],
    }
    assert await store.find_variants_by_sku([" TEE-M"]) == {" TEE-M": [spaced.variants[0]]}


async def test_merchant_product_edits_emit_products_update(
    clock: ManualClock, world: MemoryWorld, store: MemoryStore, tee: Product
) -> None:
    clock.advance(60)
    changed = store.update_product(tee.id, title="Tee shirt", tags=("summer",))
    variant = store.update_variant(tee.variants[0].id, sku="TEE-SMALL", price="11.00")
    added = store.add_variant(tee.id, "TEE-L")
    store.remove_variant(tee.variants[1].id)
    assert (changed.title, changed.tags, changed.updated_at) == ("Tee shirt", ("summer",), clock())
    assert (variant.id, variant.item_id, variant.sku) == (
        tee.variants[0].id,
        tee.variants[0].item_id,
        "TEE-SMALL",
    )
    current = await store.get_product(tee.id)
    assert current is not None
    assert [v.sku for v in current.variants] == ["TEE-SMALL", "TEE-L"]
    assert store.level(added.item_id, store.primary_location_id) == 0
    assert store.level(tee.variants[1].item_id, store.primary_location_id) is None
    assert taken(world) == [("products/update", ProductChanged(tee.id))] * 4
    with pytest.raises(ValueError, match="cannot change"):
        store.update_product(tee.id, id="1")
    store.remove_variant(tee.variants[0].id)
    with pytest.raises(ValueError, match="at least one variant"):
        store.remove_variant(added.id)


async def test_deleting_a_product_removes_its_items(
    world: MemoryWorld, store: MemoryStore, tee: Product
) -> None:
    warehouse, _ = locs(store)
    small, _ = items(tee)
    order = store.place_order([(tee.variants[0].id, 1)])
    world.take_outbox()
    store.delete_product(tee.id)
    assert taken(world) == [("products/delete", ProductDeleted(tee.id))]
    assert await store.get_product(tee.id) is None
    assert await store.list_products() == []
    assert await store.read_levels([small], [warehouse]) == {(small, warehouse): None}
    with pytest.raises(UserErrors) as gone:
        await store.set_levels([LevelWrite(small, warehouse, 1, None)])
    assert gone.value.codes == ("INVALID_INVENTORY_ITEM",)
    # as on Shopify, the order keeps its line but no longer names the deleted variant
    snapshot = await store.get_order(order.id)
    assert snapshot is not None
    assert snapshot.lines == (OrderLine(order.lines[0].id, None, "TEE-S", 1),)


# --- orders -------------------------------------------------------------------------------------


async def test_a_paid_order_claims_units_and_reports_create_and_paid(
    world: MemoryWorld, store: MemoryStore, tee: Product
) -> None:
    warehouse, shop = locs(store)
    small, medium = items(tee)
    order = store.place_order([(tee.variants[0].id, 2), (tee.variants[1].id, 1)])
    assert order.financial_status == "paid"
    assert not order.cancelled
    assert order.version == format_version(START)
    assert [(ln.variant_id, ln.sku, ln.quantity) for ln in order.lines] == [
        (tee.variants[0].id, "TEE-S", 2),
        (tee.variants[1].id, "TEE-M", 1),
    ]
    assert store.level(small, warehouse) == 8
    assert store.level(medium, warehouse) == 9
    assert store.level(small, shop) == 10
    # a purchase changes levels but is no product update
    assert taken(world) == [
        ("orders/create", OrderSeen(order)),
        ("orders/paid", OrderSeen(order)),
        ("inventory_levels/update", LevelChanged(small, warehouse, 8)),
        ("inventory_levels/update", LevelChanged(medium, warehouse, 9)),
    ]
    assert await store.get_order(order.id) == order
    assert await store.get_order("404") is None


async def test_a_pending_order_is_paid_later(
    clock: ManualClock, world: MemoryWorld, store: MemoryStore, tee: Product
) -> None:
    _, shop = locs(store)
    order = store.place_order(
        [(tee.variants[0].id, 1)], financial_status="pending", location_id=shop
    )
    assert store.level(tee.variants[0].item_id, shop) == 9
    assert [topic for topic, _ in taken(world)] == ["orders/create", "inventory_levels/update"]
    clock.advance(5)
    paid = store.mark_paid(order.id)
    assert paid.financial_status == "paid"
    assert paid.version == format_version(clock())
    assert taken(world) == [("orders/paid", OrderSeen(paid)), ("orders/updated", OrderSeen(paid))]
    with pytest.raises(ValueError, match="cannot be marked paid"):
        store.mark_paid(order.id)


async def test_a_deposit_is_paid_in_parts_then_in_full(
    clock: ManualClock, world: MemoryWorld, store: MemoryStore, tee: Product
) -> None:
    order = store.place_order([(tee.variants[0].id, 2)], financial_status="partially_paid")
    world.take_outbox()
    clock.advance(1)
    part = store.record_payment(order.id, in_full=False)
    assert (part.financial_status, part.paid_in_full) == ("partially_paid", False)
    # Shopify sends orders/paid only once an order is paid in full.
    assert taken(world) == [("orders/updated", OrderSeen(part))]
    clock.advance(1)
    full = store.record_payment(order.id, in_full=True)
    assert (full.financial_status, full.paid_in_full) == ("paid", True)
    assert [topic for topic, _ in taken(world)] == ["orders/paid", "orders/updated"]
    with pytest.raises(ValueError, match="owes nothing"):
        store.record_payment(order.id, in_full=False)


async def test_a_refund_of_money_alone_returns_no_unit(
    world: MemoryWorld, store: MemoryStore, tee: Product
) -> None:
    warehouse, _ = locs(store)
    pending = store.place_order([(tee.variants[0].id, 1)], financial_status="pending")
    with pytest.raises(ValueError, match="no money"):
        store.refund_money(pending.id)
    deposit = store.place_order([(tee.variants[0].id, 3)], financial_status="partially_paid")
    world.take_outbox()
    refund = store.refund_money(deposit.id)
    assert refund.lines == ()
    after = store.order(deposit.id)
    # Never paid in full: a deposit refunded in part is not paid.
    assert (after.financial_status, after.paid_in_full) == ("partially_refunded", False)
    assert store.level(tee.variants[0].item_id, warehouse) == 6
    assert [topic for topic, _ in taken(world)] == ["refunds/create", "orders/updated"]


async def test_an_uninstalled_app_is_refused_and_sent_nothing_until_installed_again(
    world: MemoryWorld, store: MemoryStore, tee: Product
) -> None:
    store.uninstall_app()
    assert [topic for topic, _ in taken(world)] == ["app/uninstalled"]
    with pytest.raises(AuthError):
        await store.list_locations()
    store.place_order([(tee.variants[0].id, 1)])  # the shop still trades, unheard
    assert taken(world) == []
    with pytest.raises(ValueError, match="not installed"):
        store.uninstall_app()
    store.reinstall_app()
    assert await store.list_locations()
    store.place_order([(tee.variants[0].id, 1)])
    assert "orders/create" in [topic for topic, _ in taken(world)]


async def test_inventory_behaviours(store: MemoryStore, tee: Product) -> None:
    warehouse, _ = locs(store)
    small, medium = items(tee)
    with pytest.raises(OutOfStockError):
        store.place_order(
            [(tee.variants[0].id, 6), (tee.variants[0].id, 5)],
            inventory_behaviour="decrement_obeying_policy",
        )
    assert store.level(small, warehouse) == 10
    store.update_variant(tee.variants[1].id, continue_selling=True)
    store.place_order([(tee.variants[1].id, 11)], inventory_behaviour="decrement_obeying_policy")
    assert store.level(medium, warehouse) == -1
    store.place_order([(tee.variants[0].id, 12)])  # Shopify's API default ignores the policy
    assert store.level(small, warehouse) == -2
    store.place_order([(tee.variants[0].id, 3)], inventory_behaviour="bypass")
    assert store.level(small, warehouse) == -2


async def test_untracked_and_custom_lines_claim_nothing(
    world: MemoryWorld, store: MemoryStore
) -> None:
    product = store.add_product("Gift wrap", ["WRAP"], tracked=False, available=5)
    world.take_outbox()
    order = store.place_order([(product.variants[0].id, 2), (None, 1)])
    assert order.lines[1] == OrderLine(order.lines[1].id, None, "", 1)
    assert store.level(product.variants[0].item_id, store.primary_location_id) == 5
    assert [topic for topic, _ in taken(world)] == ["orders/create", "orders/paid"]


async def test_editing_an_order_moves_units_and_reports_the_edit(
    world: MemoryWorld, store: MemoryStore, tee: Product
) -> None:
    warehouse, _ = locs(store)
    small, medium = items(tee)
    order = store.place_order([(tee.variants[0].id, 2)])
    line = order.lines[0].id
    world.take_outbox()

    more = store.edit_order(order.id, line, 5)
    assert more.lines[0].quantity == 5
    assert more.financial_status == "partially_paid"  # the customer owes the added units
    assert more.version > order.version
    assert store.level(small, warehouse) == 5
    assert taken(world) == [
        ("inventory_levels/update", LevelChanged(small, warehouse, 5)),
        ("orders/edited", OrderEdited(order.id)),
        ("orders/updated", OrderSeen(more)),
    ]
    fewer = store.edit_order(order.id, line, 4)
    assert store.level(small, warehouse) == 6
    store.edit_order(order.id, line, 3, restock=False)
    assert store.level(small, warehouse) == 6
    added = store.add_order_line(order.id, tee.variants[1].id, 2)
    assert store.level(medium, warehouse) == 8
    current = store.order(order.id)
    assert [(ln.id, ln.quantity) for ln in current.lines] == [(line, 3), (added, 2)]
    assert fewer.financial_status == "partially_paid"
    assert fewer.version < current.version


async def test_a_line_cannot_be_edited_below_what_was_refunded(
    store: MemoryStore, tee: Product
) -> None:
    order = store.place_order([(tee.variants[0].id, 3)])
    store.refund(order.id, [(order.lines[0].id, 2)], restock=False)
    with pytest.raises(ValueError, match="already refunded"):
        store.edit_order(order.id, order.lines[0].id, 1)


async def test_refunds_restock_per_line_and_move_the_financial_status(
    world: MemoryWorld, store: MemoryStore, tee: Product
) -> None:
    warehouse, shop = locs(store)
    small, medium = items(tee)
    order = store.place_order([(tee.variants[0].id, 3), (tee.variants[1].id, 1)])
    first, second = (ln.id for ln in order.lines)
    world.take_outbox()

    back = store.refund(order.id, [(first, 2)], restock=True)
    assert back == Refund(back.id, (RefundLine(back.lines[0].id, first, 2, True, warehouse),))
    assert store.level(small, warehouse) == 9
    snapshot = store.order(order.id)
    assert snapshot.financial_status == "partially_refunded"
    assert snapshot.refunds == (back,)
    assert snapshot.lines[0].quantity == 3  # refunds do not reduce the units ordered
    assert taken(world) == [
        ("inventory_levels/update", LevelChanged(small, warehouse, 9)),
        ("refunds/create", RefundSeen(order.id, back)),
        ("orders/updated", OrderSeen(snapshot)),
    ]

    kept = store.refund(order.id, [(first, 1)], restock=False)
    assert kept.lines[0].restock is False
    assert kept.lines[0].location_id is None
    assert store.level(small, warehouse) == 9
    elsewhere = store.refund(order.id, [(second, 1)], restock=True, location_id=shop)
    assert elsewhere.lines[0].location_id == shop
    assert store.level(medium, shop) == 11
    assert store.level(medium, warehouse) == 9
    assert store.order(order.id).financial_status == "refunded"
    with pytest.raises(ValueError, match="fewer units left"):
        store.refund(order.id, [(first, 1)], restock=True)


async def test_a_restocking_cancellation_is_one_refund_of_what_is_left(
    world: MemoryWorld, store: MemoryStore, tee: Product
) -> None:
    warehouse, _ = locs(store)
    small, _ = items(tee)
    order = store.place_order([(tee.variants[0].id, 3)])
    line = order.lines[0].id
    store.refund(order.id, [(line, 1)], restock=True)
    world.take_outbox()

    cancelled = store.cancel_order(order.id, restock=True)
    assert cancelled.cancelled
    assert cancelled.financial_status == "refunded"
    assert len(cancelled.refunds) == 2
    refund = cancelled.refunds[1]
    assert refund.lines == (RefundLine(refund.lines[0].id, line, 2, True, warehouse),)
    assert store.level(small, warehouse) == 10
    assert taken(world) == [
        ("inventory_levels/update", LevelChanged(small, warehouse, 10)),
        ("refunds/create", RefundSeen(order.id, refund)),
        ("orders/cancelled", OrderSeen(cancelled)),
        ("orders/updated", OrderSeen(cancelled)),
    ]
    with pytest.raises(ValueError, match="cancelled"):
        store.cancel_order(order.id, restock=True)
    with pytest.raises(ValueError, match="cancelled"):
        store.edit_order(order.id, line, 5)


@pytest.mark.parametrize(
    ("placed", "refund_money", "status"),
    [
        ("pending", True, "voided"),
        ("authorized", True, "voided"),
        ("partially_paid", True, "refunded"),
        ("paid", True, "refunded"),
        ("paid", False, "paid"),
    ],
)
async def test_cancelling_without_restock_keeps_stock_and_sets_the_status(
    store: MemoryStore, tee: Product, placed: str, refund_money: bool, status: str
) -> None:
    warehouse, _ = locs(store)
    order = store.place_order(
        [(tee.variants[0].id, 2)],
        financial_status=placed,  # type: ignore[arg-type]  # each placed status, in turn
    )
    cancelled = store.cancel_order(order.id, restock=False, refund_money=refund_money)
    assert cancelled.financial_status == status
    assert [(rl.quantity, rl.restock, rl.location_id) for rl in cancelled.refunds[0].lines] == [
        (2, False, None)
    ]
    assert store.level(tee.variants[0].item_id, warehouse) == 8


async def test_versions_strictly_increase_when_the_clock_stands_still(
    clock: ManualClock, store: MemoryStore, tee: Product
) -> None:
    first = store.place_order([(tee.variants[0].id, 1)], financial_status="pending")
    second = store.place_order([(tee.variants[1].id, 1)])
    paid = store.mark_paid(first.id)
    assert [first.version, second.version, paid.version] == [
        "2025-03-01T12:00:00.000000Z",
        "2025-03-01T12:00:00.000001Z",
        "2025-03-01T12:00:00.000002Z",
    ]
    clock.advance(1.5)
    edited = store.edit_order(second.id, second.lines[0].id, 2)
    assert edited.version == "2025-03-01T12:00:01.500000Z"
    assert [o.id for o in await store.orders_changed_since(None)] == [first.id, second.id]
    assert store.orders() == await store.orders_changed_since(None)
    # Inclusive, as Shopify's search: an order at exactly the instant is listed again.
    assert await store.orders_changed_since(paid.version) == [store.order(first.id), edited]
    # any ISO-8601 spelling of the instant is understood
    assert await store.orders_changed_since("2025-03-01T13:00:00.000001+01:00") == [
        store.order(first.id),
        edited,
    ]
    assert await store.orders_changed_since("2025-03-01T13:00:00.000003+01:00") == [edited]
    with pytest.raises(UserErrors) as bad:
        await store.orders_changed_since("yesterday")
    assert bad.value.codes == ("INVALID_QUERY",)


async def test_a_clock_going_back_never_moves_versions_back(
    clock: ManualClock, store: MemoryStore, tee: Product
) -> None:
    first = store.place_order([(tee.variants[0].id, 1)])
    clock.advance(-60)
    second = store.place_order([(tee.variants[0].id, 1)])
    assert second.version == "2025-03-01T12:00:00.000001Z"
    assert second.version > first.version


# --- deliveries -------------------------------------------------------------------------------


async def test_deliveries_have_unique_ids_and_reach_subscribers(
    world: MemoryWorld, store: MemoryStore, tee: Product
) -> None:
    other = world.add_store("dest.example")
    seen: list[Delivery] = []
    unsubscribe = world.subscribe(seen.append)
    warehouse, _ = locs(store)
    store.adjust(tee.variants[0].item_id, warehouse, 5)
    other.add_product("Cap", ["CAP"])
    unsubscribe()
    store.set_available(tee.variants[0].item_id, warehouse, 1)
    assert [(d.store_ref, d.topic) for d in seen] == [
        ("source.example", "inventory_levels/update"),
        ("dest.example", "products/create"),
    ]
    assert [d.topic for d in world.take_outbox("dest.example")] == ["products/create"]
    everything = world.take_outbox()
    assert [d.event for d in everything] == [
        LevelChanged(tee.variants[0].item_id, warehouse, 15),
        LevelChanged(tee.variants[0].item_id, warehouse, 1),
    ]
    assert everything[0].event_id == seen[0].event_id
    assert len({d.event_id for d in [*seen, *everything]}) == 3
    assert world.take_outbox() == []


def _deliveries(count: int) -> list[Delivery]:
    return [
        Delivery("s", f"evt-{n}", "inventory_levels/update", LevelChanged("i", "l", n))
        for n in range(count)
    ]


def test_faulty_delivery_is_reproducible_from_its_seed() -> None:
    sent = _deliveries(50)
    first = faulty_delivery(sent, random.Random(7), duplicate=0.2, drop=0.1, reorder=3)
    again = faulty_delivery(sent, random.Random(7), duplicate=0.2, drop=0.1, reorder=3)
    assert first == again
    ids = [d.event_id for d in first]
    assert ids != sorted(ids, key=lambda i: int(i[4:]))  # reordered
    assert len(ids) != len(set(ids))  # duplicated
    assert set(ids) < {d.event_id for d in sent}  # some dropped
    assert faulty_delivery(sent, random.Random(7)) == sent
    assert faulty_delivery(sent, random.Random(7), drop=1.0) == []
    twice = faulty_delivery(sent, random.Random(7), duplicate=1.0)
    assert twice == [d for d in sent for _ in range(2)]


# --- faults on API calls -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["timeout", "server_error"])
async def test_transient_faults_apply_nothing(
    world: MemoryWorld, store: MemoryStore, tee: Product, kind: str
) -> None:
    warehouse, _ = locs(store)
    small, _ = items(tee)
    store.faults.fail_next(kind, count=2)  # type: ignore[arg-type]  # both kinds, in turn
    for _ in range(2):
        with pytest.raises(TransientPlatformError) as failed:
            await store.set_levels([LevelWrite(small, warehouse, 1, 10)])
        assert type(failed.value) is TransientPlatformError
    assert store.level(small, warehouse) == 10
    assert await store.set_levels([LevelWrite(small, warehouse, 1, 10)]) == SetOutcome()
    assert store.counters.calls["set_levels"] == 3
    assert store.counters.faults[kind] == 2


async def test_throttling_says_when_to_retry(store: MemoryStore, tee: Product) -> None:
    store.faults.fail_next("throttled", retry_after=2.5)
    with pytest.raises(ThrottledError) as throttled:
        await store.list_products()
    assert throttled.value.retry_after == 2.5
    assert await store.list_products() == [tee]


async def test_a_lost_response_applies_the_write(
    world: MemoryWorld, store: MemoryStore, tee: Product
) -> None:
    warehouse, _ = locs(store)
    small, _ = items(tee)
    store.faults.fail_next("lost_response", method="set_levels")
    with pytest.raises(TransientPlatformError):
        await store.set_levels([LevelWrite(small, warehouse, 4, 10)])
    assert store.level(small, warehouse) == 4
    assert taken(world) == [("inventory_levels/update", LevelChanged(small, warehouse, 4))]
    # the retry's compare is now stale: CAS is what makes the blind retry safe
    assert await store.set_levels([LevelWrite(small, warehouse, 4, 10)]) == SetOutcome((small,))


async def test_a_lost_adjustment_retried_with_its_key_applies_once(
    store: MemoryStore, tee: Product
) -> None:
    warehouse, _ = locs(store)
    small, _ = items(tee)
    store.faults.fail_next("lost_response")
    with pytest.raises(TransientPlatformError):
        await store.adjust_level(small, warehouse, -2, "order-9:line-1")
    await store.adjust_level(small, warehouse, -2, "order-9:line-1")
    assert store.level(small, warehouse) == 8


async def test_a_lost_create_leaves_the_product_to_be_found_by_sku(store: MemoryStore) -> None:
    store.faults.fail_next("lost_response", method="create_product")
    with pytest.raises(TransientPlatformError):
        await store.create_product(
            ProductDraft(title="Cap", variants=(Variant(id="", item_id="", sku="CAP"),))
        )
    found = await store.find_variants_by_sku(["CAP"])
    assert [v.sku for v in found["CAP"]] == ["CAP"]


async def test_faults_wait_for_the_method_they_target(store: MemoryStore, tee: Product) -> None:
    warehouse, _ = locs(store)
    store.faults.fail_next("timeout", method="adjust_level")
    assert store.faults.armed == 1
    await store.read_levels([tee.variants[0].item_id], [warehouse])
    await store.set_levels([LevelWrite(tee.variants[0].item_id, warehouse, 3, 10)])
    with pytest.raises(TransientPlatformError):
        await store.adjust_level(tee.variants[0].item_id, warehouse, 1, "k")
    assert store.faults.armed == 0
    with pytest.raises(ValueError, match="unknown fault"):
        store.faults.fail_next("meteor")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown API method"):
        store.faults.fail_next("timeout", method="place_order")


async def test_a_race_changes_a_level_between_read_and_write(
    world: MemoryWorld, store: MemoryStore, tee: Product
) -> None:
    warehouse, shop = locs(store)
    small, medium = items(tee)
    store.faults.fail_next("race", delta=-2, item_id=medium)
    read = await store.read_levels([small, medium], [warehouse, shop])
    assert read[(medium, warehouse)] == 10
    assert store.level(medium, warehouse) == 10  # the customer buys just before our write
    outcome = await store.set_levels(
        [LevelWrite(i, loc, 5, read[(i, loc)]) for i in (small, medium) for loc in (warehouse,)]
    )
    assert outcome == SetOutcome(stale=(medium,))
    assert store.level(medium, warehouse) == 8
    assert store.level(small, warehouse) == 10
    assert taken(world) == [("inventory_levels/update", LevelChanged(medium, warehouse, 8))]
    assert store.counters.stale_batches == 1


async def test_a_race_before_an_adjustment_is_not_lost(store: MemoryStore, tee: Product) -> None:
    warehouse, _ = locs(store)
    small, _ = items(tee)
    store.faults.fail_next("race", delta=-1)
    await store.read_levels([small], [warehouse])
    await store.adjust_level(small, warehouse, -3, "k")
    assert store.level(small, warehouse) == 6


async def test_an_unreachable_store_fails_every_call_but_still_trades(
    store: MemoryStore, tee: Product
) -> None:
    warehouse, _ = locs(store)
    store.faults.unreachable = True
    with pytest.raises(TransientPlatformError, match="connection refused"):
        await store.list_locations()
    with pytest.raises(TransientPlatformError):
        await store.get_order("1")
    store.place_order([(tee.variants[0].id, 1)])  # customers still buy
    store.faults.clear()
    assert await store.read_levels([tee.variants[0].item_id], [warehouse]) == {
        (tee.variants[0].item_id, warehouse): 9
    }
    store.faults.auth_revoked = True
    with pytest.raises(AuthError):
        await store.list_products()
    assert store.counters.faults == {"unreachable": 2, "auth_revoked": 1}


async def test_random_faults_replay_from_their_seed(world: MemoryWorld) -> None:
    async def run(seed: int) -> list[str]:
        store = world.add_store(f"random-{len(world.stores)}.example")
        store.faults.set_rates(
            {"timeout": 0.2, "throttled": 0.1, "lost_response": 0.1, "race": 0.3}, seed=seed
        )
        product = store.add_product("Tee", ["A"], available=100)
        item, here = product.variants[0].item_id, store.primary_location_id
        outcomes = []
        for n in range(40):
            try:
                await store.read_levels([item], [here])
                await store.adjust_level(item, here, -1, f"k{n}")
                outcomes.append("ok")
            except ThrottledError:
                outcomes.append("throttled")
            except TransientPlatformError:
                outcomes.append("transient")
        outcomes.append(str(store.level(item, here)))
        return outcomes

    first = await run(11)
    assert first == await run(11)
    assert {"ok", "throttled", "transient"} <= set(first)


async def test_counters_count_calls_and_quantities(
    world: MemoryWorld, store: MemoryStore, tee: Product
) -> None:
    warehouse, shop = locs(store)
    small, medium = items(tee)
    await store.read_levels([small], [warehouse])
    await store.set_levels([LevelWrite(small, warehouse, 1, 10), LevelWrite(medium, shop, 2, 10)])
    await store.set_levels([LevelWrite(small, warehouse, 1, 10)])  # stale
    await store.adjust_level(small, shop, -4, "k")
    await store.adjust_level(small, shop, -4, "k")  # a retry: no second effect
    counters = store.counters
    assert counters.calls == {"read_levels": 1, "set_levels": 2, "adjust_level": 2}
    assert (counters.write_calls, counters.total_calls) == (4, 5)
    assert (counters.quantities_written, counters.units_adjusted) == (3, 4)
    assert counters.stale_batches == 1
    world.reset_counters()
    assert (counters.total_calls, counters.quantities_written, counters.stale_batches) == (0, 0, 0)


async def test_a_burst_fanned_out_to_ten_stores_costs_one_call_per_batch(
    world: MemoryWorld,
) -> None:
    stores = [world.add_store(f"dest-{n}.example") for n in range(10)]
    for dest in stores:
        product = dest.add_product("Bulk", [f"SKU-{i}" for i in range(1000)])
        here = dest.primary_location_id
        writes = [LevelWrite(v.item_id, here, 7, 0) for v in product.variants]
        for start in range(0, len(writes), 250):
            assert await dest.set_levels(writes[start : start + 250]) == SetOutcome()
    assert [(s.counters.write_calls, s.counters.quantities_written) for s in stores] == [
        (4, 1000)
    ] * 10
    assert len(world.take_outbox()) == 10 * (1 + 1000)


@pytest.mark.parametrize(
    ("yield_on_call", "applied", "final"), [(False, [True, True], 3), (True, [True, False], 4)]
)
async def test_calls_can_yield_so_concurrent_tasks_interleave(
    clock: ManualClock, yield_on_call: bool, applied: list[bool], final: int
) -> None:
    store = MemoryWorld(clock, yield_on_call=yield_on_call).add_store("s.example")
    item = store.add_product("Tee", ["A"], available=5).variants[0].item_id
    here = store.primary_location_id

    async def read_then_write(quantity: int) -> bool:
        level = (await store.read_levels([item], [here]))[(item, here)]
        return (await store.set_levels([LevelWrite(item, here, quantity, level)])).applied

    # without a yield each task runs to its end; with one, both read before either writes
    assert list(await asyncio.gather(read_then_write(4), read_then_write(3))) == applied
    assert store.level(item, here) == final
