"""A sale never re-opens sold-out stock, and reaches every store at once (B15, B20, B24).

Shopify takes a sold unit off the destination at checkout; its level report and its order
webhooks then arrive in any order. Every write a destination receives is recorded here, so
that a level shown for a moment (not only the end state) is checked."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from stocksync.domain.connection import ConnectionSettings
from stocksync.domain.ports import LevelWrite, SetOutcome
from stocksync.engine import crash
from stocksync.engine.catalog import import_products
from stocksync.engine.ledger import apply_ledger
from stocksync.engine.reconcile import run_reconcile
from stocksync.platforms.memory import TOPIC_LEVEL_UPDATE, Delivery, MemoryStore
from tests.harness import Harness

GRACE = timedelta(seconds=60)


class Clock:
    """The engine's clock: real time plus an offset a test moves forward (a grace passing)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


def _record_writes(shop: MemoryStore) -> list[tuple[str, int]]:
    """Every (item, quantity) the platform is asked to set at this store, in order."""
    writes: list[tuple[str, int]] = []
    original = shop.set_levels

    async def recording(batch: Sequence[LevelWrite]) -> SetOutcome:
        writes.extend((w.item_id, w.quantity) for w in batch)
        return await original(batch)

    shop.set_levels = recording  # type: ignore[method-assign,assignment]
    return writes


async def _setup(
    h: Harness,
    available: int,
    destinations: tuple[str, ...] = ("d1", "d2"),
    settings: ConnectionSettings | None = None,
) -> Clock:
    clock = Clock()
    h.rt.clock = clock
    h.rt.sale_grace = GRACE
    await h.add_store("source", "source")
    h.shop("source").add_product("Tee", ["TEE"], available=available)
    for name in destinations:
        await h.add_store(name, "destination")
        record = await h.connect(name, "source", settings)
        await import_products(h.rt, record.id)
    h.world.take_outbox()
    await h.settle()
    h.world.reset_counters()
    return clock


def _sell(h: Harness, store: str, units: int, status: str = "paid") -> str:
    shop = h.shop(store)
    order = shop.place_order(
        [(shop.variant_by_sku("TEE").id, units)],
        financial_status=status,  # type: ignore[arg-type]
    )
    return order.id


def _split(deliveries: list[Delivery]) -> tuple[list[Delivery], list[Delivery]]:
    levels = [d for d in deliveries if d.topic == TOPIC_LEVEL_UPDATE]
    return levels, [d for d in deliveries if d.topic != TOPIC_LEVEL_UPDATE]


async def _deliver_and_drain(h: Harness, deliveries: list[Delivery]) -> None:
    """Deliver these, then run jobs and deliver what they cause (our writes' echoes) only."""
    await h.deliver(deliveries)
    await h.settle()


async def _reconcile(h: Harness) -> None:
    # The reconcile job's body, run here: these tests move the engine's clock ahead of the
    # queue's, so a debounced refresh is queued minutes "later" and, holding the same lock,
    # would keep a queued reconcile job waiting behind it.
    await run_reconcile(h.rt, h.stores["source"].id)
    await h.settle()


async def test_a_checkout_reported_before_its_order_is_never_written_back_up(h: Harness) -> None:
    await _setup(h, available=1)
    d1_writes = _record_writes(h.shop("d1"))
    _sell(h, "d1", 1)
    levels, orders = _split(h.world.take_outbox())
    await _deliver_and_drain(h, levels)  # the level report first: its order is on its way
    assert h.level("d1", "TEE") == 0
    assert all(q <= 0 for _, q in d1_writes), d1_writes
    await _deliver_and_drain(h, orders)
    assert all(q <= 0 for _, q in d1_writes), d1_writes
    assert (h.level("source", "TEE"), h.level("d1", "TEE"), h.level("d2", "TEE")) == (0, 0, 0)


async def test_an_unpaid_order_holds_its_units_on_its_store_until_it_is_voided(
    h: Harness,
) -> None:
    clock = await _setup(h, available=1)  # paid orders only count (the default)
    d1_writes = _record_writes(h.shop("d1"))
    order_id = _sell(h, "d1", 1, status="pending")
    levels, orders = _split(h.world.take_outbox())
    await _deliver_and_drain(h, levels)
    await _deliver_and_drain(h, orders)
    # Long unpaid: far past the grace, and a reconciliation on top: still not re-opened.
    clock.offset += GRACE * 10
    await _reconcile(h)
    assert all(q <= 0 for _, q in d1_writes), d1_writes
    assert (h.level("source", "TEE"), h.level("d1", "TEE"), h.level("d2", "TEE")) == (1, 0, 1)
    # Voided: Shopify gives the unit back to d1 and the hold ends; every level agrees again.
    h.shop("d1").cancel_order(order_id, restock=True)
    await h.settle()
    await _reconcile(h)
    assert (h.level("source", "TEE"), h.level("d1", "TEE"), h.level("d2", "TEE")) == (1, 1, 1)


async def test_an_unpaid_order_later_paid_reaches_the_source_and_every_store(h: Harness) -> None:
    await _setup(h, available=3)
    d1_writes = _record_writes(h.shop("d1"))
    order_id = _sell(h, "d1", 2, status="pending")
    levels, orders = _split(h.world.take_outbox())
    await _deliver_and_drain(h, levels + orders)
    assert (h.level("source", "TEE"), h.level("d1", "TEE"), h.level("d2", "TEE")) == (3, 1, 3)
    h.shop("d1").mark_paid(order_id)
    await h.settle()
    assert all(q <= 1 for _, q in d1_writes), d1_writes
    assert (h.level("source", "TEE"), h.level("d1", "TEE"), h.level("d2", "TEE")) == (1, 1, 1)


async def test_a_manual_decrease_is_set_back_after_the_grace(h: Harness) -> None:
    clock = await _setup(h, available=10, destinations=("d1",))
    d1 = h.shop("d1")
    writes = _record_writes(d1)
    d1.set_available(d1.variant_by_sku("TEE").item_id, d1.primary_location_id, 3)
    await h.settle()
    # No order explains it yet: not raised within the grace, even by a reconciliation.
    await _reconcile(h)
    assert h.level("d1", "TEE") == 3
    assert writes == []
    clock.offset += GRACE + timedelta(seconds=1)
    await _reconcile(h)  # or the flush scheduled at the end of the grace
    assert h.level("d1", "TEE") == 10


async def test_a_burst_of_orders_never_shows_a_store_its_own_sold_units_again(
    h: Harness,
) -> None:
    rng = random.Random(7)
    stores = ("d1", "d2", "d3")
    await _setup(h, available=40, destinations=stores)
    writes = {name: _record_writes(h.shop(name)) for name in stores}
    sold = dict.fromkeys(stores, 0)
    for _ in range(15):
        store = rng.choice(stores)
        units = rng.randint(1, 2)
        _sell(h, store, units)
        sold[store] += units
    deliveries = h.world.take_outbox()
    rng.shuffle(deliveries)
    for start in range(0, len(deliveries), 7):
        await h.deliver(deliveries[start : start + 7])
        await h.drain()
    await h.settle()
    for name in stores:
        # What a store shows never includes units it sold itself.
        assert all(q <= 40 - sold[name] for _, q in writes[name]), (name, writes[name])
    left = 40 - sum(sold.values())
    assert h.level("source", "TEE") == left
    assert [h.level(name, "TEE") for name in stores] == [left] * 3


async def test_reconciliation_while_a_sale_is_pending_pushes_the_post_sale_level(
    h: Harness,
) -> None:
    await _setup(h, available=10)
    src = h.shop("source")
    src.faults.fail_next("server_error", 10_000, method="adjust_levels")
    _sell(h, "d1", 3)
    await h.settle()  # the sale is counted; its adjustment keeps failing and is given up
    assert h.level("source", "TEE") == 10
    await _reconcile(h)
    assert (h.level("d1", "TEE"), h.level("d2", "TEE")) == (7, 7)
    src.faults.clear()
    await apply_ledger(h.rt, h.stores["source"].id)
    await h.settle()
    assert (h.level("source", "TEE"), h.level("d1", "TEE"), h.level("d2", "TEE")) == (7, 7, 7)


async def test_the_end_of_the_grace_alone_sets_a_manual_decrease_back(h: Harness) -> None:
    """No reconciliation, no other change: the job scheduled for the end of the grace does it
    (a grace shorter than the queue's drain horizon, so that draining runs that job)."""
    await _setup(h, available=10, destinations=("d1",))
    h.rt.sale_grace = timedelta(seconds=0.2)
    d1 = h.shop("d1")
    writes = _record_writes(d1)
    d1.set_available(d1.variant_by_sku("TEE").item_id, d1.primary_location_id, 3)
    await h.settle()
    assert h.level("d1", "TEE") == 10
    assert [q for _, q in writes] == [10]  # set back in one write, nothing in between


async def test_an_order_cancelled_in_its_own_second_holds_nothing_whatever_arrives_last(
    h: Harness,
) -> None:
    clock = await _setup(h, available=3)  # paid orders only count (the default)
    h.world.whole_second_versions = True  # as Shopify's updated_at
    order_id = _sell(h, "d1", 1, status="authorized")
    h.shop("d1").cancel_order(order_id, restock=False)  # the same second: the same version
    deliveries = h.world.take_outbox()
    levels, orders = _split(deliveries)
    created = [d for d in orders if d.topic == "orders/create"]
    await _deliver_and_drain(h, levels + [d for d in orders if d not in created])
    await _deliver_and_drain(h, created)  # the placement's snapshot arrives last
    clock.offset += GRACE * 10
    await _reconcile(h)
    # Cancelled without restock: the unit is gone from d1's shelf but was never sold from the
    # shared stock; nothing is held, every store shows the source's level.
    assert (h.level("source", "TEE"), h.level("d1", "TEE"), h.level("d2", "TEE")) == (3, 3, 3)


@pytest.mark.xfail(
    strict=True,
    reason="known defect: a decrease is seen only against the level stocksync last knew, so "
    "an increase it has not seen (a restock) and a sale after it net to that level and hide "
    "the sale",
)
async def test_units_restocked_at_a_destination_and_sold_again_are_not_shown_again(
    h: Harness,
) -> None:
    """A destination's own order gives units back (an edit removing them, restocked there),
    and a new checkout takes as many, before stocksync hears of either level change: the
    level is the one stocksync last wrote, but the restocked units were sold. Raising the
    destination to the source's level when the edit is applied would show them for sale
    again."""
    await _setup(h, available=10, destinations=("d1",))
    d1 = h.shop("d1")
    first = _sell(h, "d1", 2)
    await h.settle()
    assert (h.level("source", "TEE"), h.level("d1", "TEE")) == (8, 8)
    writes = _record_writes(d1)
    d1.edit_order(first, d1.order(first).lines[0].id, 0, restock=True)  # d1: 8 -> 10
    _sell(h, "d1", 2)  # d1: 10 -> 8
    deliveries = h.world.take_outbox()
    edited = [d for d in deliveries if d.topic in ("orders/edited", "orders/updated")]
    assert edited
    await h.deliver(edited)
    await h.drain()
    # The edit gives 2 units back to the source; the second order's 2 are sold from it.
    assert all(q <= 8 for _, q in writes), writes
    await h.deliver([d for d in deliveries if d not in edited])
    await h.settle()
    assert all(q <= 8 for _, q in writes), writes
    assert (h.level("source", "TEE"), h.level("d1", "TEE")) == (8, 8)


@pytest.mark.xfail(
    strict=True,
    reason="known defect: a destination's decrease is capped by how far its level is below "
    "the target, so a sale found while the level is still above a target that fell is "
    "forgotten, and its units are written back when the source rises again",
)
async def test_a_sale_seen_while_the_level_is_above_its_target_is_not_forgotten(
    h: Harness,
) -> None:
    """The source's merchant lowers the source from 10 to 4; before stocksync writes d1 down,
    d1 sells 3 (its order on its way). Writing d1 down finds 7 there, not the 10 it knew: the
    decrease is a sale it cannot explain yet, though the level is still above the new target.
    When the source goes back up to 10, d1 must not show those 3 units again."""
    await _setup(h, available=10, destinations=("d1",))
    src, d1 = h.shop("source"), h.shop("d1")
    item = src.variant_by_sku("TEE").item_id
    writes = _record_writes(d1)
    src.set_available(item, src.primary_location_id, 4)
    _sell(h, "d1", 3)  # d1: 10 -> 7
    taken = h.world.take_outbox()
    held = [d for d in taken if d.store_ref == "d1"]
    await h.deliver([d for d in taken if d not in held])
    await h.settle()  # the source's report: d1 written down to the source's 4
    assert (h.level("source", "TEE"), h.level("d1", "TEE")) == (4, 4)
    src.set_available(item, src.primary_location_id, 10)
    await h.settle()
    # The source can sell 10, 3 of which d1 sold: 7 at most, until d1's order arrives.
    assert all(q <= 7 for _, q in writes), writes
    await h.deliver(held)
    await h.settle()
    assert all(q <= 7 for _, q in writes), writes
    assert (h.level("source", "TEE"), h.level("d1", "TEE")) == (7, 7)


@pytest.mark.xfail(
    strict=True,
    reason="known defect: as the test above, and a worker killed between its write and its "
    "record loses the decrease its read had seen (the next flush takes the level for ours)",
)
async def test_a_worker_killed_after_its_write_loses_no_decrease_its_read_saw(
    h: Harness,
) -> None:
    """As above, but the worker dies after its write to d1 and before recording it (the read
    that found d1's sale is lost with it). The next flush finds its own write there: that is
    not a sale, but the sale the read had found must still be kept off d1."""
    await _setup(h, available=10, destinations=("d1",))
    src, d1 = h.shop("source"), h.shop("d1")
    item = src.variant_by_sku("TEE").item_id
    writes = _record_writes(d1)
    src.set_available(item, src.primary_location_id, 4)
    _sell(h, "d1", 3)  # d1: 10 -> 7
    taken = h.world.take_outbox()
    held = [d for d in taken if d.store_ref == "d1"]
    killed: list[str] = []

    def die_once(point: str) -> None:
        if point == "flush.before_commit" and not killed:
            killed.append(point)
            raise RuntimeError("worker killed")

    crash.install(die_once)
    try:
        await h.deliver([d for d in taken if d not in held])
        await h.settle()
    finally:
        crash.install(None)
    assert killed
    assert (h.level("source", "TEE"), h.level("d1", "TEE")) == (4, 1)
    src.set_available(item, src.primary_location_id, 10)
    await h.settle()
    assert all(q <= 7 for _, q in writes), writes
    await h.deliver(held)
    await h.settle()
    assert (h.level("source", "TEE"), h.level("d1", "TEE")) == (7, 7)
