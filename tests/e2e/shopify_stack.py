"""A stocksync deployment on one machine for end-to-end tests: the Shopify sandbox, stocksync's
web process and its worker, each a separate process on loopback, and the merchants' side
(Admin GraphQL calls to the sandbox, and its admin endpoint for faults and statistics).

The pieces are the demo's (``stocksync.demo_shopify``); what differs is that the merchant here
is strict: any answer other than a clean 200 fails the test. Faults are meant for stocksync, so
a merchant that met one would make the test's bookkeeping wrong (a write whose response was
lost, sent again, would apply twice) and would hide which side a fault hit."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from stocksync.bootstrap import App, build_app
from stocksync.demo_shopify import (
    SOURCE,
    Link,
    Merchant,
    Processes,
    SandboxShop,
    free_port,
    install,
    load_links,
    outstanding,
    sandbox_config,
    shops_from_manifest,
    start_sandbox,
    start_web,
    start_worker,
    stocksync_env,
    wait_manifest,
    wait_ready,
)
from stocksync.domain.connection import ConnectionSettings
from stocksync.engine.catalog import import_products
from stocksync.engine.stores import connect_with_own_key
from stocksync.sandbox.manifest import read_manifest
from stocksync.storage.migrate import upgrade_async
from stocksync.web.install import WEBHOOK_PATH

POLL = 0.1  # seconds between two looks at a condition
IDLE_LOOKS = 3  # looks in a row finding no work left, for the engine to count as settled


class MerchantMetFault(AssertionError):
    """A merchant request was answered by an injected fault (or anything but a clean 200)."""


class StrictMerchant(Merchant):
    """One attempt per request; records how long each took (to observe injected latency)."""

    def __init__(self, http: httpx.AsyncClient, admin_url: str, shops: dict[str, SandboxShop]):
        super().__init__(http, admin_url, shops)
        self.durations: list[tuple[str, float]] = []

    async def gql(self, shop: str, query: str, variables: Mapping[str, Any] | None = None) -> Any:
        target = self.shops[shop]
        started = time.monotonic()
        response = await self.http.post(
            target.graphql_url,
            json={"query": query, "variables": dict(variables or {})},
            headers={"X-Shopify-Access-Token": target.token},
        )
        self.durations.append((shop, time.monotonic() - started))
        if response.status_code != 200:
            raise MerchantMetFault(f"{shop}: HTTP {response.status_code}: {response.text[:200]}")
        body = response.json()
        if body.get("errors"):
            raise MerchantMetFault(f"{shop}: {body['errors']}")
        data = body["data"]
        for payload in data.values():
            if isinstance(payload, dict):
                errors = payload.get("userErrors") or payload.get("orderCancelUserErrors")
                if errors:
                    raise MerchantMetFault(f"{shop}: {errors}")
        return data

    async def faults(self, shop: str, **values: Any) -> dict[str, Any]:
        found: dict[str, Any] = await self.admin("POST", f"/shops/{shop}/faults", values)
        return found

    async def fault_state(self, shop: str) -> dict[str, Any]:
        found: dict[str, Any] = await self.admin("GET", f"/shops/{shop}/faults")
        return found

    async def clear_faults(self, shop: str) -> None:
        await self.admin("DELETE", f"/shops/{shop}/faults")

    async def stats(self) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = await self.admin("GET", "/stats")
        return found


@dataclass
class Stack:
    app: App
    procs: Processes
    merchant: StrictMerchant
    shops: dict[str, SandboxShop]
    web_url: str
    env: dict[str, str]
    store_ids: dict[str, int] = field(default_factory=dict)
    links: list[Link] = field(default_factory=list)
    shared: list[str] = field(default_factory=list)  # the source's shared locations

    async def until(
        self,
        what: str,
        check: Callable[[], Awaitable[bool]],
        within: float,
        describe: Callable[[], Awaitable[str]] | None = None,
    ) -> float:
        """Wait for ``check`` to hold, at most ``within`` seconds; returns the time it took."""
        started = time.monotonic()
        deadline = started + within
        while True:
            self.procs.check()
            if await check():
                return time.monotonic() - started
            if time.monotonic() > deadline:
                detail = f": {await describe()}" if describe is not None else ""
                raise AssertionError(
                    f"{what}: not within {within:.0f} s{detail}; logs in {self.procs.log_dir}"
                )
            await asyncio.sleep(POLL)  # polling a condition, bounded by the deadline above

    async def settle(self, within: float, quiet_for: float = 1.5) -> float:
        """Wait until the sandbox has delivered no webhook for ``quiet_for`` seconds and the
        engine has no accepted work left (events, ledger rows, dirty and pending levels) at
        several looks in a row.

        Every step of the engine's chain keeps a row until the next step's row is written in
        the same transaction, so no work hides between two looks; the periodic
        reconciliation's forced comparisons come and go, hence looks in a row rather than
        none at all during the window."""
        window: list[Any] = [None, time.monotonic(), 0]  # deliveries, since, idle looks

        async def quiet() -> bool:
            idle = await outstanding(self.app) == 0
            window[2] = window[2] + 1 if idle else 0
            stats = await self.merchant.stats()
            deliveries = tuple(
                (s["webhooks_sent"], s["webhooks_dropped"], s["webhooks_failed_attempts"])
                for _, s in sorted(stats.items())
            )
            now = time.monotonic()
            if deliveries != window[0]:
                window[0], window[1] = deliveries, now
                return False
            return bool(now - window[1] >= quiet_for and window[2] >= IDLE_LOOKS)

        async def left() -> str:
            return f"{await outstanding(self.app)} items of work outstanding"

        return await self.until("the engine settles", quiet, within, left)

    async def levels(self) -> dict[str, dict[str, int]]:
        """Store name -> SKU -> available (summed over the shared locations for the source,
        at the receiving location for a destination), as the merchants' admin shows it."""
        source_items = sorted({link.source_item for link in self.links})
        by_sku = {link.source_item: link.sku for link in self.links}
        read = await self.merchant.levels(SOURCE, source_items)
        out: dict[str, dict[str, int]] = {SOURCE: {}}
        for item, at in read.items():
            out[SOURCE][by_sku[item]] = sum(at.get(loc, 0) for loc in self.shared)
        per_shop: dict[str, list[Link]] = {}
        for link in self.links:
            per_shop.setdefault(link.destination, []).append(link)
        for name, linked in per_shop.items():
            got = await self.merchant.levels(name, [link.destination_item for link in linked])
            out[name] = {
                link.sku: got.get(link.destination_item, {}).get(link.receiving_location, 0)
                for link in linked
            }
        return out

    async def location_levels(self, shop: str) -> dict[str, dict[str, int]]:
        """SKU -> location id (numeric) -> available, for every linked SKU of ``shop``."""
        if shop == SOURCE:
            items = {link.source_item: link.sku for link in self.links}
        else:
            items = {
                link.destination_item: link.sku for link in self.links if link.destination == shop
            }
        read = await self.merchant.levels(shop, sorted(items))
        return {items[item]: at for item, at in read.items()}


async def start_stack(
    data_dir: Path,
    database_url: str,
    *,
    destinations: Sequence[str],
    products: int,
    variants: int,
    seed: int,
    procs: Processes,
    http: httpx.AsyncClient,
    **settings: str,
) -> Stack:
    """Start the sandbox and stocksync's web process (not yet a worker: see ``start_stack_worker``);
    ``settings`` are extra ``STOCKSYNC_*`` values for every stocksync process."""
    app_secret = secrets.token_urlsafe(24)
    web_port = free_port()
    web_url = f"http://127.0.0.1:{web_port}"
    env, app_settings = stocksync_env(
        data_dir, database_url, app_secret, public_url=web_url, **settings
    )
    await upgrade_async(app_settings.resolved_database_url)
    config = data_dir / "sandbox.toml"
    manifest_path = data_dir / "sandbox.json"
    sandbox_config(
        config,
        app_secret,
        seed,
        destinations=destinations,
        products=products,
        variants=variants,
        hidden_ratio=0.0,
    )
    start_sandbox(procs, config, manifest_path, env)
    start_web(procs, env, web_port)
    app = build_app(app_settings)
    try:
        await wait_manifest(manifest_path, procs)
        await wait_ready(http, f"{web_url}/readyz", procs)
        manifest = read_manifest(manifest_path)
    except BaseException:
        await app.close()
        raise
    shops = shops_from_manifest(manifest)
    merchant = StrictMerchant(http, str(manifest["admin_url"]), shops)
    return Stack(app, procs, merchant, shops, web_url, env)


async def install_and_import(stack: Stack, settings: Mapping[str, ConnectionSettings]) -> None:
    """Install the source and each destination (admin tokens stand in for OAuth), connect each
    destination with the source's key and its own settings, and import the catalog."""
    app, hook = stack.app, stack.web_url + WEBHOOK_PATH
    source_id, _ = await install(app, stack.shops[SOURCE], "source", hook)
    stack.store_ids[SOURCE] = source_id
    for name, chosen in settings.items():
        dest_id, dest_locations = await install(app, stack.shops[name], "destination", hook)
        stack.store_ids[name] = dest_id
        record = await connect_with_own_key(
            app.runtime,
            vault=app.vault,
            source_store_id=source_id,
            destination_store_id=dest_id,
            receiving_location=dest_locations[0],
            settings=chosen,
        )
        await import_products(app.runtime, record.id)
    stack.links, stack.shared = await load_links(app)


def start_stack_worker(stack: Stack) -> None:
    start_worker(stack.procs, stack.env)


@asynccontextmanager
async def running_stack(
    data_dir: Path,
    database_url: str,
    *,
    destinations: Sequence[str],
    products: int,
    variants: int,
    seed: int,
    **settings: str,
) -> AsyncIterator[Stack]:
    """``start_stack`` for a test fixture: every process stopped and the app closed after."""
    procs = Processes(data_dir)
    async with httpx.AsyncClient(timeout=30.0, trust_env=False) as http:
        try:
            running = await start_stack(
                data_dir,
                database_url,
                destinations=destinations,
                products=products,
                variants=variants,
                seed=seed,
                procs=procs,
                http=http,
                **settings,
            )
            try:
                yield running
            finally:
                await running.app.close()
        finally:
            procs.stop()


__all__ = [
    "SOURCE",
    "Link",
    "MerchantMetFault",
    "Stack",
    "StrictMerchant",
    "install_and_import",
    "running_stack",
    "start_stack",
    "start_stack_worker",
]
