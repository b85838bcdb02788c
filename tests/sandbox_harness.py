"""The stateful test's world on the Shopify sandbox: an engine on a real database that reaches
the shops only over real HTTP through the Shopify adapter, as it does in production.

- The sandbox runs on the test's event loop with a :class:`ManualClock`. The adapters' waits
  (throttling, backoff) move that clock instead of sleeping, so its cost buckets refill
  exactly as far as a client waited; each merchant action moves it one second, as order
  timestamps have whole seconds.
- Webhook subscriptions point at a receiver in the test: the sandbox's signed deliveries (raw
  body and headers) wait in its outbox until the rules deliver them, late, twice, out of order
  or never, to stocksync's web app (``POST /webhooks/shopify``: signature, parsing, intake).
- Merchants, customers and staff act directly on the shops' state: those calls are Shopify's
  own (orders, payments, edits, refunds, cancellations, inventory changes) and emit the same
  webhooks as their GraphQL mutations.
- Platform faults are the sandbox's: 5xx answers, THROTTLED, a request that hangs and times
  out, a mutation applied whose answer is lost, a level changed just before a write.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import uvicorn
from cryptography.fernet import Fernet
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from stocksync.bootstrap import App
from stocksync.config import Settings
from stocksync.domain.ports import StorePlatform
from stocksync.engine.catalog import import_products
from stocksync.engine.records import StoreRecord
from stocksync.engine.runtime import Runtime
from stocksync.engine.stores import Roles, connect, install_store, set_locations, show_key
from stocksync.engine.tasks import build_registry
from stocksync.jobs.queue import JobQueue
from stocksync.platforms.shopify import ShopifyPlatform
from stocksync.platforms.shopify.client import RetryPolicy
from stocksync.sandbox import AppConfig, ManualClock, Sandbox, serve_in_task
from stocksync.sandbox.state import InventoryLevel, Order, Shop, Variant
from stocksync.storage.crypto import Vault
from stocksync.storage.db import create_engine
from stocksync.storage.schema import create_all
from stocksync.web.app import create_web_app
from stocksync.web.install import WEBHOOK_PATH, webhook_topics
from tests.harness import make_queue, truncate_all
from tests.stateful_model import DESTS, SKUS, START, Placed

APP_SECRET = "stateful-sandbox-app-secret"
SOURCE = "source"
# A request the "timeout" fault holds hangs this long (real seconds) before its 504: well
# below the adapter's HTTP timeout, so the adapter sees the gateway's answer.
HANG_SECONDS = 0.02
HTTP_TIMEOUT = 10.0
# Forwarded to stocksync as the sandbox sent them (the rest are the receiving server's).
FORWARDED = ("content-type", "x-shopify-")


async def eventually(predicate: Callable[[], bool], what: str, within: float = 10.0) -> None:
    """Wait for a condition with a deadline (real time; never a fixed sleep)."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within} s")
        await asyncio.sleep(0.001)


@dataclass
class VirtualTime:
    """The adapters' sleeps: they move the sandbox's clock instead of waiting."""

    clock: ManualClock

    async def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.clock.advance(seconds)
        await asyncio.sleep(0)  # let woken sandbox tasks run

    def monotonic(self) -> float:
        return self.clock.monotonic()


@dataclass(frozen=True)
class Captured:
    """One signed delivery as the sandbox sent it."""

    headers: dict[str, str]
    body: bytes

    @property
    def topic(self) -> str:
        return self.headers.get("x-shopify-topic", "")


@dataclass
class Receiver:
    url: str
    outbox: list[Captured] = field(default_factory=list)


@contextlib.asynccontextmanager
async def receive_webhooks() -> AsyncIterator[Receiver]:
    """A local endpoint the subscriptions point at: it keeps every delivery and says 200."""
    box: list[Receiver] = []

    async def hook(request: Request) -> Response:
        box[0].outbox.append(Captured(dict(request.headers), await request.body()))
        return Response(b"", status_code=200)

    server = uvicorn.Server(
        uvicorn.Config(
            Starlette(routes=[Route("/hook", hook, methods=["POST"])]),
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan="off",
            access_log=False,
        )
    )
    task = asyncio.get_running_loop().create_task(server.serve())
    await eventually(lambda: server.started or task.done(), "the webhook receiver started")
    if task.done():
        await task
        raise RuntimeError("the webhook receiver did not start")
    port = server.servers[0].sockets[0].getsockname()[1]
    box.append(Receiver(f"http://127.0.0.1:{port}/hook"))
    try:
        yield box[0]
    finally:
        server.should_exit = True
        await task


class SandboxWorld:
    """See the module's docstring; implements ``tests.stateful_model.World``."""

    # As on Shopify, units added to a paid order leave a balance: it becomes partially paid.
    adding_units_unpays = True

    def __init__(self, db: AsyncEngine, queue: JobQueue) -> None:
        self.db = db
        self.rt = Runtime(
            db=db,
            queue=queue,
            platforms=self.platform,
            debounce=timedelta(0),
            apply_linger=timedelta(0),  # as the debounce: drains need no wait
            flush_interval=timedelta(0),
        )
        self.registry = build_registry(self.rt)
        self.stack = contextlib.AsyncExitStack()
        self.vault = Vault([Fernet.generate_key().decode()])
        # Orders placed before a link or before the install never count, so the shops and the
        # engine must share one timeline: the shops' clock moves only when told, so it starts
        # a minute ahead of the engine's real one and does not fall behind it during a run.
        self.clock = ManualClock(start=time.time() + 60)
        self.time = VirtualTime(self.clock)
        self.sandbox = Sandbox(clock=self.clock, app=AppConfig(client_secret=APP_SECRET), seed=3)
        self.shops: dict[str, Shop] = {
            SOURCE: self.sandbox.create_shop(SOURCE, locations=["Warehouse", "Back room"])
        }
        for dest in DESTS:
            self.shops[dest] = self.sandbox.create_shop(dest, locations=["Warehouse"])
        self.store_ids: dict[str, int] = {}
        self.adapters: dict[int, StorePlatform] = {}
        self.rng = random.Random(5)  # the adapters' backoff jitter
        self.http: httpx.AsyncClient
        self.intake: httpx.AsyncClient
        self.receiver: Receiver

    @classmethod
    async def create(cls, url: str) -> SandboxWorld:
        db = create_engine(url)
        await create_all(db)
        queue = await make_queue(db, url)
        await truncate_all(db)
        world = cls(db, queue)
        try:
            await world._start()
        except BaseException:
            await world.close()
            raise
        return world

    async def _start(self) -> None:
        stack = self.stack
        await stack.enter_async_context(serve_in_task(self.sandbox))
        self.receiver = await stack.enter_async_context(receive_webhooks())
        self.http = await stack.enter_async_context(
            httpx.AsyncClient(timeout=HTTP_TIMEOUT, trust_env=False)
        )
        app = App(Settings(shopify_api_secret=APP_SECRET), self.db, self.vault, self.rt)
        self.intake = await stack.enter_async_context(
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=create_web_app(app, embedded_worker=False)),
                base_url="http://stocksync.test",
            )
        )

    async def close(self) -> None:
        try:
            await self.stack.aclose()
        finally:
            await self.db.dispose()

    def platform(self, store: StoreRecord) -> StorePlatform:
        """One adapter per store, as in a worker process (its cost bucket is the store's)."""
        adapter = self.adapters.get(store.id)
        if adapter is None:
            assert store.credentials is not None, f"{store.name} has no access token"
            adapter = self._adapter(
                store.external_id, self.vault.decrypt(store.credentials), store.base_url
            )
            self.adapters[store.id] = adapter
        return adapter

    def _adapter(self, domain: str, token: str, base_url: str | None) -> ShopifyPlatform:
        return ShopifyPlatform(
            domain,
            token,
            base_url=base_url,
            http_client=self.http,
            retry=RetryPolicy(),
            sleep=self.time.sleep,
            clock=self.time.monotonic,
            rng=self.rng,
        )

    # -- install ---------------------------------------------------------------------------------

    async def install(self) -> None:
        source = self.shops[SOURCE]
        warehouse, back_room = (loc.id for loc in source.locations.values())
        for sku in SKUS:
            source.create_product(
                title=sku,
                variants=[
                    {
                        "sku": sku,
                        "quantities": {
                            warehouse: START[sku] // 2,
                            back_room: START[sku] - START[sku] // 2,
                        },
                    }
                ],
                emit=False,
            )
        await self._install_store(SOURCE, "source")
        for dest, conn_settings in DESTS.items():
            await self._install_store(dest, "destination")
            async with self.db.begin() as conn:
                key = await show_key(conn, self.vault, self.store_ids[SOURCE])
                assert key is not None
                record = await connect(
                    self.rt,
                    conn,
                    destination_store_id=self.store_ids[dest],
                    key=key,
                    receiving_location=str(self._receiving(dest)),
                    settings=conn_settings,
                )
            await import_products(self.rt, record.id)
        await self.take_outbox()
        await self.settle()

    async def _install_store(self, name: str, role: str) -> None:
        """As an operator does with an admin token: its locations recorded, its webhooks
        subscribed."""
        shop = self.shops[name]
        base_url = self.sandbox.shop_base_url(shop)
        platform = self._adapter(shop.domain, shop.access_token, base_url)
        found = await platform.list_locations()
        async with self.db.begin() as conn:
            store, _key = await install_store(
                self.rt,
                conn,
                vault=self.vault,
                platform="shopify",
                external_id=shop.domain,
                name=name,
                role=role,
                credentials=shop.access_token,
                base_url=base_url,
            )
            await set_locations(conn, store.id, found)
        # The topics stocksync subscribes at install, created on the shop directly (the
        # install flow's own test covers webhookSubscriptionCreate).
        for topic in webhook_topics(Roles.parse(role)):
            self.sandbox.webhooks.subscribe(shop, topic, self.receiver.url, platform.api_version)
        self.store_ids[name] = store.id

    def _receiving(self, dest: str) -> int:
        return next(iter(self.shops[dest].locations))

    # -- merchants, customers and staff, on the shops' state -------------------------------------

    def _act(self) -> None:
        """Time passes between two actions (order timestamps have whole seconds)."""
        self.clock.advance(1.0)

    def _variant(self, shop: Shop, sku: str) -> Variant:
        found = [v for v in shop.variants.values() if v.sku == sku]
        assert len(found) == 1, f"{shop.name}: {len(found)} variants with SKU {sku}"
        return found[0]

    def _level(self, shop: Shop, sku: str, location_id: int) -> InventoryLevel | None:
        return shop.level(self._variant(shop, sku).inventory_item_id, location_id)

    def _order(self, dest: str, order_id: str) -> Order:
        return self.shops[dest].orders[int(order_id)]

    def source_adjust(self, sku: str, where: int, delta: int) -> None:
        self._act()
        source = self.shops[SOURCE]
        level = self._level(source, sku, list(source.locations)[where])
        assert level is not None
        source.change_level(level, "available", delta)

    def place_order(self, dest: str, picks: Sequence[tuple[str, int]], status: str) -> Placed:
        self._act()
        shop = self.shops[dest]
        order = shop.create_order(
            lines=[{"variant_id": self._variant(shop, sku).id, "quantity": q} for sku, q in picks],
            financial_status=status.upper(),
            inventory_behaviour="DECREMENT_IGNORING_POLICY",
        )
        lines = {
            str(line.id): (sku, line.quantity)
            for line, (sku, _) in zip(order.line_items, picks, strict=True)
        }
        return Placed(str(order.id), lines, order.financial_status.lower())

    def mark_paid(self, dest: str, order_id: str) -> str:
        self._act()
        order = self._order(dest, order_id)
        self.shops[dest].mark_as_paid(order)
        return order.financial_status.lower()

    def edit_order(self, dest: str, order_id: str, line_id: str, quantity: int) -> str:
        self._act()
        shop, order = self.shops[dest], self._order(dest, order_id)
        edit = shop.begin_edit(order)
        edit.quantities[int(line_id)] = quantity
        edit.restock[int(line_id)] = True
        shop.commit_edit(edit)
        return order.financial_status.lower()

    def refund(self, dest: str, order_id: str, line_id: str, quantity: int, restock: bool) -> str:
        self._act()
        order = self._order(dest, order_id)
        self.shops[dest].refund(
            order,
            [
                {
                    "line_item_id": int(line_id),
                    "quantity": quantity,
                    # Nothing is fulfilled: restocked units are cancelled ones.
                    "restock_type": "CANCEL" if restock else "NO_RESTOCK",
                }
            ],
        )
        return order.financial_status.lower()

    def cancel_order(self, dest: str, order_id: str, restock: bool) -> str:
        self._act()
        order = self._order(dest, order_id)
        self.shops[dest].cancel(order, reason="CUSTOMER", restock=restock, refund=True)
        return order.financial_status.lower()

    def set_destination_level(self, dest: str, sku: str, quantity: int) -> None:
        self._act()
        shop = self.shops[dest]
        item = self._variant(shop, sku).inventory_item_id
        shop.activate(item, self._receiving(dest), quantity)

    # -- webhooks ----------------------------------------------------------------------------------

    async def take_outbox(self) -> list[Any]:
        """Every delivery the sandbox has sent so far (it sends them as soon as it can)."""
        await asyncio.sleep(0)  # deliveries queued from outside the loop start
        dispatcher = self.sandbox.webhooks
        await eventually(lambda: not dispatcher.tasks, "the sandbox sent its webhooks")
        taken, self.receiver.outbox = self.receiver.outbox, []
        return list(taken)

    async def deliver(self, delivery: Any) -> None:
        assert isinstance(delivery, Captured)
        headers = {k: v for k, v in delivery.headers.items() if k.startswith(FORWARDED)}
        # A crash inside the intake propagates from the app: the delivery was not acknowledged.
        response = await self.intake.post(WEBHOOK_PATH, content=delivery.body, headers=headers)
        assert response.status_code == 200, (
            f"{delivery.topic}: stocksync answered {response.status_code}: {response.text}"
        )

    # -- faults ------------------------------------------------------------------------------------

    def fail_next_call(self, store: str, kind: str) -> None:
        faults = self.sandbox.faults_of(self.shops[store])
        if kind == "timeout":
            faults.timeout_seconds = HANG_SECONDS
            faults.timeout.next += 1
        elif kind == "server_error":
            faults.error_5xx.next += 1
        elif kind == "throttled":
            faults.throttle.next += 1
        elif kind == "lost_response":
            faults.lost_response.next += 1
        else:
            raise ValueError(f"unknown fault {kind!r}")

    def race_next_write(self, dest: str) -> None:
        faults = self.sandbox.faults_of(self.shops[dest])
        faults.race_delta = -1
        faults.race.next += 1

    def clear_faults(self) -> None:
        for name in self.shops:
            self.sandbox.clear_faults(name)

    # -- workers -----------------------------------------------------------------------------------

    async def drain(self, deadline: float = 60.0) -> None:
        await self.rt.queue.drain(self.registry, deadline)

    async def settle(self, rounds: int = 50) -> None:
        for _ in range(rounds):
            await self.drain()
            pending = await self.take_outbox()
            if not pending:
                return
            for d in pending:
                await self.deliver(d)
        raise AssertionError(f"not quiet after {rounds} rounds of deliveries")

    # -- what the shops show -----------------------------------------------------------------------

    def source_levels(self) -> dict[str, int]:
        source = self.shops[SOURCE]
        levels = {}
        for sku in SKUS:
            found = [self._level(source, sku, loc) for loc in source.locations]
            levels[sku] = sum(lv.available for lv in found if lv is not None)
        return levels

    def destination_level(self, dest: str, sku: str) -> int | None:
        level = self._level(self.shops[dest], sku, self._receiving(dest))
        return None if level is None else level.available
