"""The sandbox: shops, the app that installs into them, clock, faults, rate limits, webhooks."""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from stocksync.sandbox.bulk import BulkOperations
from stocksync.sandbox.clock import Clock, ScaledClock
from stocksync.sandbox.faults import Faults, Stats
from stocksync.sandbox.ids import IdGenerator
from stocksync.sandbox.oauth import AppConfig, OAuth
from stocksync.sandbox.payloads import shop_payload
from stocksync.sandbox.ratelimit import Bucket, bucket_for_plan
from stocksync.sandbox.state import InventoryLevel, Shop
from stocksync.sandbox.webhooks import PRIVACY_TOPICS, WebhookDispatcher

DEFAULT_API_VERSION = "2025-01"


@dataclass
class ShopRuntime:
    shop: Shop
    bucket: Bucket
    faults: Faults
    stats: Stats
    last_reads: list[tuple[int, int]]


class Sandbox:
    """Emulated Shopify shops behind one HTTP server.

    Use it directly in tests (create shops, inject faults, move a ManualClock) and serve it
    with `stocksync.sandbox.server.serve_in_thread` / `serve_in_task` or the CLI.
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        app: AppConfig | None = None,
        seed: int = 0,
        throttling: bool = True,
    ) -> None:
        self.clock: Clock = clock or ScaledClock()
        self.app = app or AppConfig()
        self.seed = seed
        self.throttling = throttling
        self.ids = IdGenerator(seed)
        self.rng = random.Random(seed)  # noqa: S311 (seeded simulation, not security)
        self.runtimes: dict[str, ShopRuntime] = {}
        self.webhooks = WebhookDispatcher(self)
        self.bulk = BulkOperations(self)
        self.oauth = OAuth(self)
        self.base_url = "http://127.0.0.1:0"
        self.loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ shops
    def create_shop(
        self,
        name: str,
        *,
        access_token: str | None = None,
        locations: list[str] | None = None,
        inactive_locations: list[str] | None = None,
        plan: str = "standard",
        bucket_size: float | None = None,
        faults: dict[str, Any] | None = None,
    ) -> Shop:
        name = name.removesuffix(".myshopify.com")
        if not name or not all(c.isalnum() or c == "-" for c in name):
            raise ValueError(f"invalid shop name {name!r} (letters, digits and '-')")
        if name in self.runtimes:
            raise ValueError(f"shop {name!r} already exists")
        shop = Shop(
            name,
            ids=self.ids,
            now=self.clock.now,
            access_token=access_token or f"shpat_{secrets.token_hex(16)}",
            plan=plan,
            location_names=locations or ["Warehouse"],
        )
        for loc_name in inactive_locations or []:
            shop.add_location(loc_name, active=False)
        bucket = bucket_for_plan(self.clock, plan, bucket_size, enabled=self.throttling)
        fault_rng = random.Random(self.rng.random())  # noqa: S311 (seeded simulation)
        runtime = ShopRuntime(shop, bucket, Faults(rng=fault_rng), Stats(), [])
        if faults:
            runtime.faults.update(faults)
        self.runtimes[name] = runtime
        shop.emit = lambda topic, payload: self.webhooks.on_event(shop, topic, payload)
        return shop

    def shop(self, name_or_domain: str) -> Shop:
        return self.runtimes[name_or_domain.removesuffix(".myshopify.com")].shop

    def find_shop(self, name_or_domain: str) -> Shop | None:
        runtime = self.runtimes.get(name_or_domain.removesuffix(".myshopify.com"))
        return runtime.shop if runtime else None

    @property
    def shops(self) -> list[Shop]:
        return [r.shop for r in self.runtimes.values()]

    def faults_of(self, shop: Shop) -> Faults:
        return self.runtimes[shop.name].faults

    def stats_of(self, shop: Shop) -> Stats:
        return self.runtimes[shop.name].stats

    def bucket_of(self, shop: Shop) -> Bucket:
        return self.runtimes[shop.name].bucket

    def set_faults(self, shop_name: str, **values: Any) -> Faults:
        faults = self.runtimes[shop_name.removesuffix(".myshopify.com")].faults
        faults.update(values)
        return faults

    def clear_faults(self, shop_name: str) -> None:
        self.runtimes[shop_name.removesuffix(".myshopify.com")].faults.clear()

    def set_throttling(self, enabled: bool) -> None:
        self.throttling = enabled
        for runtime in self.runtimes.values():
            runtime.bucket.enabled = enabled

    # ---------------------------------------------------------------- faults
    def maybe_race(self, shop: Shop, level: InventoryLevel) -> None:
        """The "race" fault: the level changes (another sale) just before this write."""
        faults = self.faults_of(shop)
        if faults.take("race"):
            self.stats_of(shop).races += 1
            shop.change_level(level, "available", faults.race_delta)

    def remember_reads(self, shop: Shop, levels: list[tuple[int, int]]) -> None:
        self.runtimes[shop.name].last_reads = levels[-100:]

    # ----------------------------------------------------------------- urls
    def shop_base_url(self, shop: Shop) -> str:
        return f"{self.base_url}/shops/{shop.domain}"

    def graphql_url(self, shop: Shop, version: str = DEFAULT_API_VERSION) -> str:
        return f"{self.shop_base_url(shop)}/admin/api/{version}/graphql.json"

    def manifest(self, version: str = DEFAULT_API_VERSION) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "admin_url": f"{self.base_url}/_sandbox",
            "api_version": version,
            "app": {"client_id": self.app.client_id, "scopes": self.app.scopes},
            "shops": [
                {
                    "name": shop.name,
                    "domain": shop.domain,
                    "base_url": self.shop_base_url(shop),
                    "graphql_url": self.graphql_url(shop, version),
                    "access_token": shop.access_token,
                    "plan": shop.plan,
                    "locations": [
                        {"id": loc.gid, "name": loc.name, "active": loc.is_active}
                        for loc in shop.locations.values()
                    ],
                    "location_ids": [loc.gid for loc in shop.locations.values()],
                }
                for shop in self.shops
            ],
        }

    def stats(self) -> dict[str, Any]:
        return {
            name: {
                **runtime.stats.as_dict(),
                "throttle_status": runtime.bucket.throttle_status(),
                "subscriptions": len(self.webhooks.of_shop(runtime.shop)),
            }
            for name, runtime in self.runtimes.items()
        }

    # ------------------------------------------------------------- privacy
    def send_privacy_webhook(
        self, shop: Shop, topic: str, customer: dict[str, Any] | None = None
    ) -> bool:
        """Deliver a mandatory privacy webhook to the URL in the app's configuration."""
        if topic not in PRIVACY_TOPICS:
            raise ValueError(f"unknown privacy topic {topic!r}")
        url = {
            "customers/data_request": self.app.customers_data_request_url,
            "customers/redact": self.app.customers_redact_url,
            "shop/redact": self.app.shop_redact_url,
        }[topic]
        if not url:
            return False
        who = customer or {"id": self.ids(), "email": "customer@example.com", "phone": None}
        payload: dict[str, Any] = {"shop_id": shop.id, "shop_domain": shop.domain}
        if topic == "customers/data_request":
            payload |= {"orders_requested": [], "customer": who, "data_request": {"id": self.ids()}}
        elif topic == "customers/redact":
            payload |= {"customer": who, "orders_to_redact": []}
        self.webhooks.send_direct(shop, topic, url, payload, DEFAULT_API_VERSION)
        return True

    def uninstall(self, shop: Shop) -> None:
        """The merchant uninstalls the app: tokens revoked, `app/uninstalled` delivered, and
        the app's other webhook subscriptions deleted, as Shopify deletes them (a new install
        subscribes again)."""
        payload = shop_payload(shop)
        shop.emit("app/uninstalled", payload)
        shop.access_tokens.clear()
        self.webhooks.subscriptions.pop(shop.domain, None)

    # ---------------------------------------------------------------- tasks
    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        loop = self.loop or asyncio.get_running_loop()
        task = loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def call_soon(self, fn: Callable[[], None]) -> None:
        (self.loop or asyncio.get_running_loop()).call_soon(fn)

    async def start(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.loop = asyncio.get_running_loop()
        await self.webhooks.start()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.webhooks.stop()
        self.loop = None
