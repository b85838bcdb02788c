"""``stocksync demo``: one source and three destinations staying in sync through a simulated day.

This demo runs the real engine (SQLite database, embedded job queue, webhooks through the
inbox) against the in-memory platform, in one process. It plays merchant activity: restocks and
corrections at the source, sales at the destinations (paid, pending, paid later), refunds with
and without restock, a cancelled order, an edited order, duplicated and reordered webhooks and a
few injected API failures, while a live table shows every level, until all stores agree."""

from __future__ import annotations

import asyncio
import contextlib
import random
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

from cryptography.fernet import Fernet
from rich.console import Console
from rich.live import Live
from rich.table import Table

from stocksync import logs
from stocksync.domain.connection import ConnectionSettings
from stocksync.domain.orders import is_counted_status
from stocksync.domain.sales import ENDED_STATUSES
from stocksync.engine.catalog import import_products
from stocksync.engine.failures import store_of_dead_letter
from stocksync.engine.ingest import ingest, payload_of
from stocksync.engine.orders import backfill_orders
from stocksync.engine.reconcile import reconcile_source
from stocksync.engine.runtime import Runtime
from stocksync.engine.stores import connect_with_own_key, install_located
from stocksync.engine.tasks import build_registry
from stocksync.jobs.embedded import EmbeddedJobQueue
from stocksync.platforms.memory import Delivery, MemoryWorld
from stocksync.storage.crypto import Vault
from stocksync.storage.db import create_engine
from stocksync.storage.schema import create_all

CATALOG = {
    "Linen shirt": ["SHIRT-S", "SHIRT-M", "SHIRT-L"],
    "Canvas tote": ["TOTE"],
    "Ceramic mug": ["MUG-BLUE", "MUG-SAND"],
}
DESTINATIONS = ("retailer-north", "retailer-south", "outlet")
# retailer-south counts pending orders as sales; the others count paid orders only.
SETTINGS = {
    name: ConnectionSettings(count_pending=(name == "retailer-south")) for name in DESTINATIONS
}


async def _working(queue: EmbeddedJobQueue) -> bool:
    """Whether a job runs now. (Jobs waiting are not counted: the periodic safety net is
    always scheduled for later.)"""
    return (await queue.counts())["doing"] > 0


def _table(world: MemoryWorld, skus: list[str]) -> Table:
    table = Table(title="stock levels (available)")
    table.add_column("SKU")
    for name in ("source", *DESTINATIONS):
        table.add_column(name, justify="right")
    for sku in skus:
        row = [sku]
        for name in ("source", *DESTINATIONS):
            shop = world.platform(name)
            variant = shop.variant_by_sku(sku)
            if name == "source":
                total = sum(shop.level(variant.item_id, loc) or 0 for loc in shop.location_ids())
            else:
                total = shop.level(variant.item_id, shop.primary_location_id) or 0
            row.append(str(total))
        table.add_row(*row)
    return table


def _held(world: MemoryWorld, name: str, paid_once: set[str]) -> Counter[str]:
    """SKU -> units of ``name``'s open orders that do not count as sales on its connection
    (pending where only paid orders count, and never paid in full: ``paid_once`` are the
    orders the demo saw paid): the destination took them off at checkout and keeps them off
    until they count or end (B24), so it shows that much less than the source. Read from the
    shop's orders, not from stocksync's records."""
    held: Counter[str] = Counter()
    for order in world.platform(name).orders():
        status = order.financial_status.strip().lower()
        if (
            order.id in paid_once
            or order.cancelled
            or status in ENDED_STATUSES
            or is_counted_status(status, SETTINGS[name])
        ):
            continue
        back: Counter[str] = Counter()
        for refund in order.refunds:
            for refunded in refund.lines:
                if refunded.restock:
                    back[refunded.line_id] += refunded.quantity
        for line in order.lines:
            if line.sku:
                held[line.sku] += max(0, line.quantity - back[line.id])
    return held


def _differences(world: MemoryWorld, skus: list[str], paid_once: set[str]) -> list[str]:
    src = world.platform("source")
    held = {name: _held(world, name, paid_once) for name in DESTINATIONS}
    out = []
    for sku in skus:
        item = src.variant_by_sku(sku).item_id
        level = max(0, sum(src.level(item, loc) or 0 for loc in src.location_ids()))
        for name in DESTINATIONS:
            shop = world.platform(name)
            shown = shop.level(shop.variant_by_sku(sku).item_id, shop.primary_location_id)
            if shown != max(0, level - held[name][sku]):
                unpaid = held[name][sku]
                less = f" less {unpaid} held by its unpaid orders" if unpaid else ""
                out.append(f"{sku}: {name} shows {shown}, source has {level}{less}")
    return out


async def run_demo(console: Console, *, once: bool, seed: int) -> int:
    console.print(
        "[bold]stocksync demo[/bold] - the sync engine on SQLite with the [italic]in-memory "
        "platform[/italic] (the Shopify sandbox demo replaces it when available)."
    )
    data_dir = Path(tempfile.mkdtemp(prefix="stocksync-demo-"))
    # Retries of injected faults are expected here: the logs go to a file, not the screen.
    with logs.into_file(data_dir / "stocksync.log"):
        return await _play(console, data_dir, once=once, seed=seed)


async def _play(console: Console, data_dir: Path, *, once: bool, seed: int) -> int:  # noqa: C901, PLR0912, PLR0915  the demo's day, told in order
    rng = random.Random(seed)  # noqa: S311 (a reproducible simulated day, not a secret)
    db = create_engine(f"sqlite:///{data_dir / 'demo.db'}")
    await create_all(db)
    world = MemoryWorld()
    queue = EmbeddedJobQueue(db, poll_interval=0.02, store_of_job=store_of_dead_letter)
    rt = Runtime(
        db=db,
        queue=queue,
        platforms=lambda store: world.platform(store.external_id),
        debounce=timedelta(milliseconds=100),
    )
    vault = Vault([Fernet.generate_key().decode()])
    worker = asyncio.create_task(queue.run_worker(build_registry(rt), concurrency=4))
    delivered = duplicated = faults = 0

    async def deliver(batch: list[Delivery]) -> None:
        nonlocal delivered, duplicated
        rng.shuffle(batch)  # webhooks arrive in no particular order
        for d in batch:
            copies = 2 if rng.random() < 0.2 else 1
            duplicated += copies - 1
            for _ in range(copies):
                delivered += 1
                await ingest(
                    rt,
                    platform="memory",
                    store_ref=d.store_ref,
                    event_id=d.event_id,
                    topic=d.topic,
                    event=d.event,
                    payload=payload_of(d.event),
                )

    try:
        source = world.add_store("source", ["Warehouse", "Shop floor"])
        for title, skus in CATALOG.items():
            product = source.add_product(title, skus, available=0)
            for v in product.variants:
                for loc in source.location_ids():
                    source.set_available(v.item_id, loc, rng.randint(3, 12))
        src, _ = await install_located(
            rt,
            vault=vault,
            platform_name="memory",
            external_id="source",
            role="source",
            locations_of=await source.list_locations(),
        )
        connections = []
        for name in DESTINATIONS:
            shop = world.add_store(name)
            dest, _ = await install_located(
                rt,
                vault=vault,
                platform_name="memory",
                external_id=name,
                role="destination",
                locations_of=await shop.list_locations(),
            )
            record = await connect_with_own_key(
                rt,
                vault=vault,
                source_store_id=src.id,
                destination_store_id=dest.id,
                receiving_location=shop.primary_location_id,
                settings=SETTINGS[name],
            )
            report = await import_products(rt, record.id)
            connections.append((dest.id, record.id))
            console.print(
                f"connected {name} with the source's key; imported "
                f"{len(report.products)} products, {report.linked_variants} variants"
            )
        world.take_outbox()
        skus = [s for skus in CATALOG.values() for s in skus]
        paid_once: set[str] = set()  # orders seen paid in full: they count for good
        started = time.monotonic()
        with Live(_table(world, skus), console=console, refresh_per_second=8) as live:
            for _hour in range(24):
                action = rng.choice(["restock", "correct", "sale", "sale", "pending", "refund"])
                sku = rng.choice(skus)
                shop_name = rng.choice(DESTINATIONS)
                shop = world.platform(shop_name)
                variant = shop.variant_by_sku(sku)
                if action == "restock":
                    item = source.variant_by_sku(sku).item_id
                    source.adjust(item, source.location_ids()[0], rng.randint(1, 5))
                elif action == "correct":
                    item = source.variant_by_sku(sku).item_id
                    source.set_available(item, source.location_ids()[1], rng.randint(0, 6))
                elif action in ("sale", "pending"):
                    order = shop.place_order(
                        [(variant.id, rng.randint(1, 2))],
                        financial_status="paid" if action == "sale" else "pending",
                    )
                    if action == "sale":
                        paid_once.add(order.id)
                    if action == "pending" and rng.random() < 0.5:
                        shop.mark_paid(order.id)  # the payment arrives later
                        paid_once.add(order.id)
                    elif action == "sale" and rng.random() < 0.3:
                        shop.edit_order(order.id, order.lines[0].id, order.lines[0].quantity + 1)
                elif action == "refund":
                    order = shop.place_order([(variant.id, 2)], financial_status="paid")
                    paid_once.add(order.id)
                    if rng.random() < 0.5:
                        shop.cancel_order(order.id, restock=True)
                    else:
                        shop.refund(order.id, [(order.lines[0].id, 1)], restock=rng.random() < 0.5)
                if rng.random() < 0.15:
                    world.platform(rng.choice(DESTINATIONS)).faults.fail_next("server_error")
                    faults += 1
                await deliver(world.take_outbox())
                await asyncio.sleep(0.05)  # pacing for the live table, not synchronisation
                live.update(_table(world, skus))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                await deliver(world.take_outbox())
                if not _differences(world, skus, paid_once) and not await _working(queue):
                    break
                live.update(_table(world, skus))
                await asyncio.sleep(0.1)  # polling the stores for the demo's display
            # The periodic safety nets: polled orders and a reconciliation.
            for dest_id, _ in connections:
                await backfill_orders(rt, dest_id)
            await reconcile_source(rt, src.id)
            # What the safety nets found needs its own time to flow (the first wait may have
            # used all of its own).
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                await deliver(world.take_outbox())
                if not _differences(world, skus, paid_once) and not await _working(queue):
                    break
                await asyncio.sleep(0.1)
            live.update(_table(world, skus))
        diffs = _differences(world, skus, paid_once)
        elapsed = time.monotonic() - started
        console.print(
            f"{delivered} webhooks delivered ({duplicated} duplicates), {faults} API faults "
            f"injected; database and log in {data_dir}"
        )
        if diffs:
            console.print("[red]stores do not agree:[/red]")
            for line in diffs:
                console.print(f"  {line}")
            return 1
        console.print(f"[green]all destinations agree with the source[/green] ({elapsed:.1f} s)")
        if not once:
            console.print("Running; press Ctrl-C to stop.")
            with contextlib.suppress(asyncio.CancelledError):
                while True:
                    await deliver(world.take_outbox())
                    await asyncio.sleep(0.5)  # idle loop of the demo
        return 0
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        await db.dispose()
