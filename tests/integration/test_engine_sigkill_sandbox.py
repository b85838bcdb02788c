"""Worker processes killed with SIGKILL while they apply destination sales, the stores being
shops of the Shopify sandbox: each order line is still counted exactly once (B17) and every
store converges (B18), on SQLite and PostgreSQL.

The variant of ``test_engine_sigkill.py`` that runs the Shopify adapter end to end. The sandbox
is served from this process behind a gate that reads Admin GraphQL; stocksync's web app is
served here too, and the sandbox delivers its signed webhooks to it over HTTP (the real intake:
signature, inbox row, jobs). The stores are installed as Shopify stores (admin token in the
vault, webhooks subscribed), and the workers are real ``stocksync worker`` processes reaching
them through ``ShopifyPlatform``. The first worker is killed once the source has applied a
sale's ``inventoryAdjustQuantities`` whose answer never comes, so the commit recording it never
happens; the second at a seeded random call; a third finishes. The adjustment sent again
carries the same ``@idempotent`` key, and the sandbox applies it once.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp

from stocksync.bootstrap import App, platform_for
from stocksync.config import Settings
from stocksync.domain.ports import PlatformLocation, StorePlatform
from stocksync.engine.catalog import import_products
from stocksync.engine.periodic import PERIODIC
from stocksync.engine.records import StoreRecord
from stocksync.engine.runtime import Runtime
from stocksync.engine.stores import Roles, connect, install_store, set_locations, show_key
from stocksync.engine.tasks import build_registry
from stocksync.jobs.queue import TaskRegistry
from stocksync.platforms.shopify.adapter import ShopifyPlatform
from stocksync.platforms.shopify.ids import numeric_id
from stocksync.sandbox import AppConfig, Sandbox
from stocksync.sandbox.state import Shop
from stocksync.storage.crypto import Vault
from stocksync.storage.db import create_engine
from stocksync.storage.schema import create_all
from stocksync.storage.tables import activity_log, flush_pending, inbox, source_dirty
from stocksync.web.app import create_web_app
from stocksync.web.install import WEBHOOK_PATH, register_webhooks, webhook_topics
from tests.harness import make_queue
from tests.integration.engine_proc import (
    ADJUST,
    EngineWorkers,
    GraphQLGate,
    adjustment_key,
    count,
    ledger_rows,
    on_sandbox,
    open_jobs,
    serve_asgi,
    serve_sandbox,
    worker_env,
)
from tests.integration.jobs_worker_proc import wait_until

SEED = 1729
STOCK = {"Warehouse": 300, "Shop floor": 200}  # units of every source variant, per location
START = sum(STOCK.values())  # what the source shows of each variant before the sales
ORDERS = 40
DESTINATIONS = ("dest-a", "dest-b")
PRODUCTS = {"Linen shirt": ("SHIRT-S", "SHIRT-M", "SHIRT-L"), "Wool scarf": ("SCARF-1",)}
SKUS = tuple(sku for skus in PRODUCTS.values() for sku in skus)
APP_SECRET = "sigkill-sandbox-app-secret"
WITHIN = 60.0  # seconds any one phase may take
# Each store's safety-net job, waiting an hour away: all the queue holds once work is done.
SAFETY_NETS = Counter({(PERIODIC, "todo"): 1 + len(DESTINATIONS)})

ORDER_CREATE = """
mutation($order: OrderCreateOrderInput!, $options: OrderCreateOptionsInput) {
  orderCreate(order: $order, options: $options) {
    order { id lineItems(first: 5) { nodes { id sku quantity } } }
    userErrors { code message }
  }
}"""


class Adapters:
    """This process's adapters, one per store (as a process keeps them), closed at the end."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault
        self.by_store: dict[int, StorePlatform] = {}

    def __call__(self, store: StoreRecord) -> StorePlatform:
        if store.id not in self.by_store:
            self.by_store[store.id] = platform_for(store, self.vault)
        return self.by_store[store.id]

    async def aclose(self) -> None:
        for adapter in self.by_store.values():
            if isinstance(adapter, ShopifyPlatform):
                await adapter.aclose()


@dataclass
class Engine:
    """stocksync as this process sees it: the database, a runtime that does the setup's work,
    and the web app the sandbox delivers webhooks to."""

    db: AsyncEngine
    rt: Runtime
    registry: TaskRegistry
    secret_key: str
    vault: Vault
    adapters: Adapters
    web: App


@pytest.fixture
async def engine(db_url: str, tmp_path: Path) -> AsyncIterator[Engine]:
    db = create_engine(db_url)
    await create_all(db)
    secret_key = Fernet.generate_key().decode()
    vault = Vault([secret_key])
    adapters = Adapters(vault)
    rt = Runtime(
        db=db,
        queue=await make_queue(db, db_url),
        platforms=adapters,
        debounce=timedelta(0),
        periodic_interval=timedelta(hours=1),  # as the workers' STOCKSYNC_PERIODIC_SECONDS
        sale_grace=timedelta(seconds=1),  # as the workers' STOCKSYNC_SALE_GRACE_SECONDS
    )
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=db_url,
        secret_key=secret_key,
        shopify_api_secret=APP_SECRET,
    )
    web = App(settings=settings, db=db, vault=vault, runtime=rt)
    yield Engine(db, rt, build_registry(rt), secret_key, vault, adapters, web)
    await adapters.aclose()
    await db.dispose()


def make_sandbox() -> Sandbox:
    """A source with two shared locations and its products; destinations with none."""
    sandbox = Sandbox(app=AppConfig(client_secret=APP_SECRET), seed=SEED)
    source = sandbox.create_shop("source", locations=list(STOCK), plan="plus")
    stock = {loc.id: STOCK[loc.name] for loc in source.locations.values()}
    for title, skus in PRODUCTS.items():
        source.create_product(
            title=title,
            options=[("Size", [sku.rpartition("-")[2] for sku in skus])],
            variants=[
                {
                    "sku": sku,
                    "price": "25.00",
                    "option_values": [("Size", sku.rpartition("-")[2])],
                    "quantities": stock,
                }
                for sku in skus
            ],
            emit=False,
        )
    for name in DESTINATIONS:
        sandbox.create_shop(name, locations=["Warehouse"], plan="plus")
    return sandbox


async def install(
    engine: Engine, sandbox: Sandbox, name: str, role: str, webhook_url: str
) -> tuple[StoreRecord, list[PlatformLocation]]:
    """Install a shop as a Shopify store with its admin token, record its locations and
    subscribe its webhooks, as ``stocksync store add shopify`` does."""
    shop = sandbox.shop(name)
    domain, token, base_url = await on_sandbox(
        sandbox, lambda: (shop.domain, shop.access_token, sandbox.shop_base_url(shop))
    )
    platform = ShopifyPlatform(domain, token, base_url=base_url)
    try:
        found = await platform.list_locations()
        async with engine.db.begin() as conn:
            store, _ = await install_store(
                engine.rt,
                conn,
                vault=engine.vault,
                platform="shopify",
                external_id=domain,
                name=name,
                role=role,
                credentials=token,
                base_url=base_url,
            )
            await set_locations(conn, store.id, found)
        report = await register_webhooks(platform, webhook_topics(Roles.parse(role)), webhook_url)
        assert not report.failed, report.failed
    finally:
        await platform.aclose()
    return store, found


def shown(shop: Shop) -> dict[str, int | None]:
    """Units available per SKU, summed over the shop's locations (the source shares all of
    its locations; a destination has one). None for a SKU the shop does not stock."""
    found: dict[str, int | None] = dict.fromkeys(SKUS)
    for variant in shop.variants.values():
        if variant.sku in found:
            at = shop.levels_of_item(variant.inventory_item_id)
            found[variant.sku] = sum(level.available for level in at) if at else None
    return found


async def levels(sandbox: Sandbox, name: str) -> dict[str, int | None]:
    return await on_sandbox(sandbox, lambda: shown(sandbox.shop(name)))


async def deliveries_in_flight(sandbox: Sandbox) -> int:
    """Webhooks the sandbox has yet to deliver (a delivery waiting for a retry included)."""
    return await on_sandbox(sandbox, lambda: len(sandbox.webhooks.tasks))


def stocksync_adjustments(shop: Shop) -> list[tuple[str, int]]:
    """(idempotency key, change of available) of every adjustment stocksync made, as the shop
    recorded them."""
    return [
        (key, change.delta)
        for group in shop.adjustment_groups.values()
        if (key := adjustment_key(group.reference_document_uri)) is not None
        for change in group.changes
        if change.name == "available"
    ]


async def settle(engine: Engine, sandbox: Sandbox) -> None:
    """Run jobs here until the queue is empty and no webhook is on its way."""
    why = ""

    async def quiet() -> bool:
        nonlocal why
        await engine.rt.queue.drain(engine.registry, WITHIN)
        in_flight = await deliveries_in_flight(sandbox)
        jobs = await open_jobs(engine.db)
        why = f"{in_flight} webhooks on their way, jobs waiting or running: {dict(jobs)}"
        return not in_flight and jobs == SAFETY_NETS

    try:
        await wait_until(quiet, WITHIN, "the setup's jobs and webhooks to settle")
    except AssertionError as exc:
        raise AssertionError(f"{exc} ({why}){await failures(engine, sandbox)}") from None


async def failures(engine: Engine, sandbox: Sandbox) -> str:
    """Refused webhook deliveries and errors in the activity log, for a failure message."""
    refused = await on_sandbox(
        sandbox, lambda: [e for e in sandbox.webhooks.log if e["outcome"] != "delivered"]
    )
    async with engine.db.connect() as conn:
        errors = (
            await conn.execute(
                select(activity_log.c.kind, activity_log.c.message).where(
                    activity_log.c.level == "error"
                )
            )
        ).all()
    return f"\nwebhooks refused: {refused[-10:]}\nerrors logged: {[tuple(e) for e in errors][-10:]}"


async def place_order(
    http: httpx.AsyncClient, sandbox: Sandbox, name: str, lines: list[tuple[str, int]]
) -> dict[str, Any]:
    """A paid order of (variant id, quantity) lines through Admin GraphQL, taking its units
    from the shop's stock as a checkout does."""
    shop = sandbox.shop(name)
    response = await http.post(
        sandbox.graphql_url(shop),
        json={
            "query": ORDER_CREATE,
            "variables": {
                "order": {
                    "lineItems": [{"variantId": v, "quantity": q} for v, q in lines],
                    "financialStatus": "PAID",
                    "email": "buyer@example.com",
                },
                "options": {"inventoryBehaviour": "DECREMENT_IGNORING_POLICY"},
            },
        },
        headers={"X-Shopify-Access-Token": shop.access_token},
    )
    response.raise_for_status()
    created = response.json()["data"]["orderCreate"]
    assert created["userErrors"] == [], created["userErrors"]
    order: dict[str, Any] = created["order"]
    return order


async def test_workers_killed_mid_adjustment_on_the_sandbox_count_every_sale_once(  # noqa: C901, PLR0915  one scenario, read in order
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    sandbox = make_sandbox()
    source_shop = sandbox.shop("source")
    gates: list[GraphQLGate] = []

    def gated(app: ASGIApp) -> ASGIApp:
        gates.append(GraphQLGate(app))
        return gates[-1]

    async with AsyncExitStack() as stack:
        # Entered first, left last: the workers are killed before the servers stop.
        stack.enter_context(serve_sandbox(sandbox, middleware=gated))
        (gate,) = gates
        web_url = await stack.enter_async_context(
            serve_asgi(create_web_app(engine.web, embedded_worker=False))
        )
        env = worker_env(db_url, tmp_path / "data", engine.secret_key)
        workers = EngineWorkers(env, tmp_path, stack)

        # --- a source, two destinations, products imported and synced (by this process) ---
        hook = web_url + WEBHOOK_PATH
        source, _ = await install(engine, sandbox, "source", "source", hook)
        stores = {"source": source}
        for dest in DESTINATIONS:
            stores[dest], found = await install(engine, sandbox, dest, "destination", hook)
            async with engine.db.begin() as conn:
                record = await connect(
                    engine.rt,
                    conn,
                    destination_store_id=stores[dest].id,
                    key=await show_key(conn, engine.vault, source.id),
                    receiving_location=found[0].id,
                )
            assert (await import_products(engine.rt, record.id)).linked_variants == len(SKUS)
        await settle(engine, sandbox)
        for store in ("source", *DESTINATIONS):
            assert await levels(sandbox, store) == dict.fromkeys(SKUS, START)

        # --- paid orders on the destinations, their webhooks recorded by the web app -------
        variant_ids = await on_sandbox(
            sandbox,
            lambda: {
                dest: {v.sku: v.gid for v in sandbox.shop(dest).variants.values()}
                for dest in DESTINATIONS
            },
        )
        ordered: Counter[str] = Counter()
        expected_rows: set[tuple[int, str, str, int]] = set()
        async with httpx.AsyncClient(timeout=10, trust_env=False) as merchant:
            for _ in range(ORDERS):
                dest = rng.choice(DESTINATIONS)
                skus = rng.sample(SKUS, rng.randint(1, 2))
                lines = [(variant_ids[dest][sku], rng.randint(1, 3)) for sku in skus]
                order = await place_order(merchant, sandbox, dest, lines)
                order_id = numeric_id(order["id"], "Order")
                for line in order["lineItems"]["nodes"]:
                    ordered[line["sku"]] += line["quantity"]
                    line_id = numeric_id(line["id"], "LineItem")
                    expected_rows.add((stores[dest].id, order_id, line_id, -line["quantity"]))
        lines_count = len(expected_rows)

        async def delivered() -> bool:
            return not await deliveries_in_flight(sandbox)

        await wait_until(delivered, WITHIN, "the orders' webhooks to reach stocksync")
        async with engine.db.connect() as conn:
            order_hooks = await conn.scalar(
                select(func.count())
                .select_from(inbox)
                .where(inbox.c.topic.in_(("orders/create", "orders/paid")))
            )
        assert order_hooks == 2 * ORDERS

        # --- worker 1: killed with a sale applied at the source but not recorded ----------
        hold_at = rng.randint(5, 15)
        gate.hold_adjustment("source", hold_at)
        first = workers.start()

        async def held() -> bool:
            # Every line is in the ledger before the kill: the other jobs go on meanwhile.
            if first.poll() is not None:
                return True
            return gate.held.is_set() and len(await ledger_rows(engine.db)) == lines_count

        await wait_until(held, WITHIN, f"adjustment {hold_at} to reach the source")
        assert gate.held.is_set(), workers.logs_text()
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
        assert gate.held_answer is not None  # the source applied it

        rows = await ledger_rows(engine.db)
        assert len(rows) == lines_count
        held_row = next(r for r in rows if r[5] == gate.held_key)
        assert held_row[4] == "pending"  # ... and no commit says so
        applied = [r for r in rows if r[4] == "applied"]
        assert len(applied) == hold_at - 1
        taken = await on_sandbox(sandbox, lambda: stocksync_adjustments(source_shop))
        assert sorted(key for key, _ in taken) == sorted(r[5] for r in [*applied, held_row])
        assert sum(delta for _, delta in taken) == sum(r[3] for r in [*applied, held_row])

        # --- worker 2: killed at a seeded random call while jobs run ----------------------
        trip_at = rng.randint(5, 25)
        assert lines_count - hold_at > trip_at  # the worker has at least that many calls
        second = workers.start()
        gate.trip_after(trip_at, lambda: os.kill(second.pid, signal.SIGKILL))

        async def second_dead() -> bool:
            return second.poll() is not None

        await wait_until(second_dead, WITHIN, f"call {trip_at} of the second worker")
        assert gate.tripped.is_set(), workers.logs_text()
        assert second.wait(timeout=10) == -signal.SIGKILL

        # --- worker 3: finishes; the sandbox keeps sending its webhooks -------------------
        third = workers.start()

        why = ""

        async def converged() -> bool:
            nonlocal why
            in_flight = await deliveries_in_flight(sandbox)
            if in_flight:
                why = f"{in_flight} webhooks on their way"
                return False
            jobs = await open_jobs(engine.db)
            if jobs != SAFETY_NETS:
                why = f"jobs waiting or running: {dict(jobs - SAFETY_NETS)}"
                return False
            unapplied = [r for r in await ledger_rows(engine.db) if r[4] != "applied"]
            if unapplied:
                why = f"ledger rows not applied: {unapplied}"
                return False
            if await count(engine.db, source_dirty) or await count(engine.db, flush_pending):
                why = "levels still marked to read or to write"
                return False
            source_levels = await levels(sandbox, "source")
            dest_levels = {dest: await levels(sandbox, dest) for dest in DESTINATIONS}
            why = f"levels: source {source_levels}, " + ", ".join(
                f"{dest} {at}" for dest, at in dest_levels.items()
            )
            return all(at == source_levels for at in dest_levels.values())

        try:
            await wait_until(converged, WITHIN, "the queue to be quiet and the stores to converge")
        except AssertionError as exc:
            raise AssertionError(f"{exc} ({why})\n{workers.logs_text()}") from None
        assert third.poll() is None, workers.logs_text()
        third.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(third.wait, 15) == 0, workers.logs_text()

        # --- exactly once, and converged ------------------------------------------------
        rows = await ledger_rows(engine.db)
        assert {r[4] for r in rows} == {"applied"}
        assert {(r[0], r[1], r[2], r[3]) for r in rows} == expected_rows  # one row per line
        assert len(rows) == lines_count
        assert await open_jobs(engine.db) == SAFETY_NETS  # nothing left for now
        assert (await engine.rt.queue.counts())["failed"] == 0
        async with engine.db.connect() as conn:
            dead = await conn.scalar(
                select(func.count())
                .select_from(activity_log)
                .where(activity_log.c.kind == "job_dead_lettered")
            )
            statuses = set((await conn.scalars(select(inbox.c.status).distinct())).all())
        assert dead == 0
        assert statuses == {"processed"}
        assert await levels(sandbox, "source") == {sku: START - ordered[sku] for sku in SKUS}
        for dest in DESTINATIONS:
            assert await levels(sandbox, dest) == await levels(sandbox, "source")
        # Every webhook reached stocksync's intake and was accepted at the first attempt.
        refused = await on_sandbox(
            sandbox, lambda: [e for e in sandbox.webhooks.log if e["outcome"] != "delivered"]
        )
        assert refused == []
        # The held adjustment was sent again with its idempotency key, and the sandbox
        # answered it from its record: every unit ordered was taken from the source once,
        # however many times it was asked.
        assert held_row[5] in gate.applied_keys
        assert gate.adjust_keys[held_row[5]] >= 2
        assert set(gate.adjust_keys) == {r[5] for r in rows}
        assert sum(gate.adjust_keys.values()) > lines_count
        assert gate.calls[("source", ADJUST)] == sum(gate.adjust_keys.values())
        taken = await on_sandbox(sandbox, lambda: stocksync_adjustments(source_shop))
        assert Counter(key for key, _ in taken) == Counter({r[5]: 1 for r in rows})
        assert -sum(delta for _, delta in taken) == sum(ordered.values())
