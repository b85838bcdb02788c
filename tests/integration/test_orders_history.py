"""Orders placed before a link or before install never count; the backfill cursor starts at the
install and stays a margin behind now; reinstalling resumes what the uninstall suspended (B5,
B15, B16, B17)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from stocksync.engine.catalog import import_products
from stocksync.engine.lifecycle import app_uninstalled
from stocksync.engine.orders import BACKFILL_CURSOR, backfill_orders
from stocksync.engine.records import load_store
from stocksync.engine.stores import install_store, set_connection_paused
from stocksync.platforms.memory import normalise_version
from stocksync.storage.tables import connections, store_cursors, stores, variant_links
from tests.harness import Harness


def _real_now() -> datetime:
    return datetime.now(UTC)


def _shifted(offset: timedelta) -> Callable[[], datetime]:
    """The world's clock moved by ``offset``: what the shop does now happened then."""
    return lambda: _real_now() + offset


async def _cursor(h: Harness, store: str) -> str | None:
    async with h.db.begin() as conn:
        value: str | None = (
            await conn.execute(
                select(store_cursors.c.value).where(
                    store_cursors.c.store_id == h.stores[store].id,
                    store_cursors.c.name == BACKFILL_CURSOR,
                )
            )
        ).scalar()
    return value


async def _installed_earlier(h: Harness, store: str, ago: timedelta) -> None:
    """The store was installed ``ago`` (its record and its order cursor say so)."""
    then = h.rt.clock() - ago
    async with h.db.begin() as conn:
        await conn.execute(
            update(stores).where(stores.c.id == h.stores[store].id).values(created_at=then)
        )
        await conn.execute(
            update(store_cursors)
            .where(
                store_cursors.c.store_id == h.stores[store].id,
                store_cursors.c.name == BACKFILL_CURSOR,
            )
            .values(value=then.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        )


async def _source_with_tee(h: Harness) -> None:
    await h.add_store("source", "source")
    h.shop("source").add_product("Tee", ["TEE-S"], available=10)


def _tee(h: Harness, store: str) -> str:
    return h.shop(store).variant_by_sku("TEE-S").id


# --- sequence 1: history counted at install ---------------------------------------------------


async def test_old_orders_of_an_existing_product_never_count_at_install(h: Harness) -> None:
    """An existing destination product with 3 old paid orders of 4 units, linked by SKU at
    import; the periodic backfill then runs: the source stays at 10 (it went to -2)."""
    await _source_with_tee(h)
    dest = h.world.add_store("dest")
    dest.add_product("Tee", ["TEE-S"], available=30)
    h.world.clock = _shifted(-timedelta(days=3))
    for _ in range(3):
        dest.place_order([(_tee(h, "dest"), 4)], financial_status="paid")
    h.world.clock = _real_now
    h.world.take_outbox()  # delivered long ago, to an app not installed yet
    await _install_existing(h, "dest", "destination")
    record = await h.connect("dest", "source")
    assert (await import_products(h.rt, record.id)).linked_variants == 1
    await h.settle()

    await backfill_orders(h.rt, h.stores["dest"].id)
    await h.settle()
    assert h.level("source", "TEE-S") == 10
    assert h.level("dest", "TEE-S") == 10


async def test_old_orders_never_count_even_when_the_backfill_reads_the_whole_history(
    h: Harness,
) -> None:
    """A store installed before the cursor was set at install (it has none): the backfill
    starts from the install, and an order placed before the link, refunded after it, still
    gives nothing back."""
    await _source_with_tee(h)
    dest = h.world.add_store("dest")
    dest.add_product("Tee", ["TEE-S"], available=30)
    h.world.clock = _shifted(-timedelta(days=3))
    old = dest.place_order([(_tee(h, "dest"), 4)], financial_status="paid")
    h.world.clock = _real_now
    h.world.take_outbox()
    await _install_existing(h, "dest", "destination")
    record = await h.connect("dest", "source")
    await import_products(h.rt, record.id)
    await h.settle()
    async with h.db.begin() as conn:
        await conn.execute(
            store_cursors.delete().where(store_cursors.c.store_id == h.stores["dest"].id)
        )
    dest.refund(old.id, [(old.lines[0].id, 1)], restock=True)  # after the link, restocking
    h.world.take_outbox()  # its webhooks lost: the backfill finds it

    await backfill_orders(h.rt, h.stores["dest"].id)
    await h.settle()
    assert h.level("source", "TEE-S") == 10


async def _install_existing(h: Harness, name: str, role: str) -> None:
    """Install a shop that already exists in the world (it has a history)."""
    from stocksync.engine.stores import set_locations

    shop = h.shop(name)
    async with h.db.begin() as conn:
        store, _ = await install_store(
            h.rt, conn, vault=h.vault, platform="memory", external_id=name, role=role
        )
        await set_locations(conn, store.id, await shop.list_locations())
    h.stores[name] = store


# --- an order placed before its variant's link --------------------------------------------------


async def test_an_order_placed_before_the_link_counts_nothing_when_edited_and_refunded_after(
    h: Harness,
) -> None:
    await _source_with_tee(h)
    await h.add_store("dest", "destination")
    await _installed_earlier(h, "dest", timedelta(hours=2))
    dest = h.shop("dest")
    dest.add_product("Tee", ["TEE-S"], available=30)
    record = await h.connect("dest", "source")
    h.world.clock = _shifted(-timedelta(hours=1))  # installed, not linked yet
    order = dest.place_order([(_tee(h, "dest"), 3)], financial_status="paid")
    h.world.clock = _real_now
    await h.settle()  # its webhooks: nothing is linked yet
    assert (await import_products(h.rt, record.id)).linked_variants == 1
    await h.settle()
    assert h.level("source", "TEE-S") == 10

    dest.edit_order(order.id, order.lines[0].id, 2, restock=True)
    await h.settle()
    dest.refund(order.id, [(order.lines[0].id, 1)], restock=True)
    await h.settle()
    await backfill_orders(h.rt, h.stores["dest"].id)
    await h.settle()
    assert h.level("source", "TEE-S") == 10
    assert h.level("dest", "TEE-S") == 10


async def test_a_line_placed_before_its_link_holds_nothing_once_linked(h: Harness) -> None:
    """An unpaid order (paid-only connection: its linked lines are held on the destination)
    with a line of a linked product and one of the destination's own product. The source then
    adds that product and it is imported, linked by SKU to the destination's. Its older line
    never counts (B16) and holds nothing: its units left the destination's own stock before
    the link, and the destination shows the source's level."""
    await _source_with_tee(h)
    await h.add_store("dest", "destination")
    await _installed_earlier(h, "dest", timedelta(hours=2))
    dest = h.shop("dest")
    dest.add_product("Cap", ["CAP"], available=5)
    record = await h.connect("dest", "source")
    assert (await import_products(h.rt, record.id)).linked_variants == 1  # TEE-S
    async with h.db.begin() as conn:
        await conn.execute(
            update(variant_links).values(created_at=h.rt.clock() - timedelta(hours=2))
        )
    await h.settle()
    h.world.clock = _shifted(-timedelta(hours=1))  # TEE-S linked, CAP not yet
    order = dest.place_order(
        [(_tee(h, "dest"), 1), (dest.variant_by_sku("CAP").id, 3)], financial_status="pending"
    )
    h.world.clock = _real_now
    await h.settle()
    assert (h.level("dest", "TEE-S"), h.level("dest", "CAP")) == (9, 2)
    cap = h.shop("source").add_product("Cap", ["CAP"], available=10)
    assert (await import_products(h.rt, record.id, [cap.id])).linked_variants == 1
    await h.settle()
    dest.record_payment(order.id, in_full=False)  # the order changes again: a part paid
    await h.settle()
    assert (h.level("source", "TEE-S"), h.level("source", "CAP")) == (10, 10)
    assert (h.level("dest", "TEE-S"), h.level("dest", "CAP")) == (9, 10)


async def test_an_order_placed_after_the_link_counts_as_before(h: Harness) -> None:
    await _source_with_tee(h)
    await h.add_store("dest", "destination")
    record = await h.connect("dest", "source")
    await import_products(h.rt, record.id)
    await h.settle()
    dest = h.shop("dest")
    order = dest.place_order([(_tee(h, "dest"), 3)], financial_status="paid")
    await h.settle()
    assert h.level("source", "TEE-S") == 7
    dest.edit_order(order.id, order.lines[0].id, 2, restock=True)
    await h.settle()
    dest.refund(order.id, [(order.lines[0].id, 1)], restock=True)
    await h.settle()
    assert h.level("source", "TEE-S") == 9
    assert h.level("dest", "TEE-S") == 9


# --- the backfill cursor ----------------------------------------------------------------------


async def test_the_backfill_cursor_starts_at_the_install_and_a_reinstall_keeps_it(
    h: Harness,
) -> None:
    before = h.rt.clock()
    await h.add_store("dest", "destination")
    after = h.rt.clock()
    cursor = await _cursor(h, "dest")
    assert cursor is not None
    assert before <= datetime.fromisoformat(cursor.replace("Z", "+00:00")) <= after

    moved = normalise_version((after + timedelta(seconds=5)).isoformat())
    async with h.db.begin() as conn:
        await conn.execute(
            update(store_cursors)
            .where(store_cursors.c.store_id == h.stores["dest"].id)
            .values(value=moved)
        )
        store = await load_store(conn, h.stores["dest"].id)
        assert store is not None
        await app_uninstalled(conn, store)
    await _install_existing(h, "dest", "destination")
    assert await _cursor(h, "dest") == moved


async def test_the_backfill_cursor_stays_a_margin_behind_now(h: Harness) -> None:
    """Shopify's order search lags behind its writes: an order changed just before a
    backfill may not be listed yet, so the cursor must not pass it."""
    from stocksync.engine.orders import BACKFILL_MARGIN

    await _source_with_tee(h)
    await h.add_store("dest", "destination")
    await _installed_earlier(h, "dest", timedelta(hours=1))
    record = await h.connect("dest", "source")
    await import_products(h.rt, record.id)
    await h.settle()
    h.shop("dest").place_order([(_tee(h, "dest"), 1)], financial_status="paid")
    h.world.take_outbox()  # lost: the backfill finds it

    assert await backfill_orders(h.rt, h.stores["dest"].id) == 1
    await h.settle()
    assert h.level("source", "TEE-S") == 9
    cursor = await _cursor(h, "dest")
    assert cursor is not None
    assert datetime.fromisoformat(cursor.replace("Z", "+00:00")) <= h.rt.clock() - BACKFILL_MARGIN
    # the overlap costs no ledger change: the order is already applied at its version
    assert await backfill_orders(h.rt, h.stores["dest"].id) == 0


# --- reinstall ----------------------------------------------------------------------------------


async def _status(h: Harness, destination: str) -> str:
    async with h.db.begin() as conn:
        status: str = (
            await conn.execute(
                select(connections.c.status).where(
                    connections.c.id == h.connections[destination].id
                )
            )
        ).scalar_one()
    return status


async def test_reinstalling_resumes_suspended_connections_but_not_paused_ones(
    h: Harness,
) -> None:
    await _source_with_tee(h)
    for name in ("running", "paused"):
        await h.add_store(name, "destination")
        record = await h.connect(name, "source")
        await import_products(h.rt, record.id)
    await h.settle()
    async with h.db.begin() as conn:
        await set_connection_paused(h.rt, conn, h.connections["paused"].id, True)
        source = await load_store(conn, h.stores["source"].id)
        assert source is not None
        await app_uninstalled(conn, source)
    assert await _status(h, "running") == "suspended"
    assert await _status(h, "paused") == "suspended"
    src = h.shop("source")
    variant = src.variant_by_sku("TEE-S")
    src.set_available(variant.item_id, src.primary_location_id, 6)
    h.world.take_outbox()  # the app is not installed: nobody is told

    await _install_existing(h, "source", "source")
    await h.settle()
    assert await _status(h, "running") == "active"
    assert await _status(h, "paused") == "paused"
    assert h.level("running", "TEE-S") == 6
    assert h.level("paused", "TEE-S") == 10


async def test_a_sale_made_while_the_source_is_uninstalled_counts_once_it_is_back(
    h: Harness,
) -> None:
    await _source_with_tee(h)
    for name in ("seller", "other"):
        await h.add_store(name, "destination")
        record = await h.connect(name, "source")
        await import_products(h.rt, record.id)
    await h.settle()
    async with h.db.begin() as conn:
        source = await load_store(conn, h.stores["source"].id)
        assert source is not None
        await app_uninstalled(conn, source)
    h.shop("source").faults.auth_revoked = True
    h.shop("seller").place_order([(_tee(h, "seller"), 3)], financial_status="paid")
    await h.deliver(h.world.take_outbox("seller"))  # the seller's app is installed: told
    await h.drain()
    h.world.take_outbox()  # the source's app is not installed: nobody is told

    h.shop("source").faults.auth_revoked = False
    await _install_existing(h, "source", "source")
    await h.settle()
    # The units sold are gone from the shared stock: no store shows them again, and the
    # sale reaches the source without waiting for a backfill to list the order.
    assert h.level("other", "TEE-S") == 7
    assert h.level("source", "TEE-S") == 7
