"""``stocksync demo``: one source shop and three destination shops on the Shopify sandbox.

Everything runs as it would in production, only on one machine: the sandbox, stocksync's web
process and its worker are separate processes on loopback, webhooks travel over real HTTP,
signed with the app's secret. The demo process installs the stores (admin tokens stand in for
OAuth), connects the destinations with the source's unique key, imports the catalog, then plays
a day of merchant activity through the sandbox's Admin GraphQL API while a live table shows
every linked variant's level in every store, until every destination agrees with the source.

The database is SQLite in a temporary directory unless ``STOCKSYNC_DATABASE_URL`` names
another one (PostgreSQL runs the same flow on procrastinate)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
from cryptography.fernet import Fernet
from rich.console import Console
from rich.live import Live
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from stocksync import logs
from stocksync.bootstrap import App, build_app
from stocksync.config import Settings
from stocksync.domain.connection import ConnectionSettings
from stocksync.engine.catalog import import_products
from stocksync.engine.orders import backfill_orders
from stocksync.engine.reconcile import reconcile_source
from stocksync.engine.stores import Roles, connect_with_own_key, install_store, set_locations
from stocksync.platforms.shopify.adapter import ShopifyPlatform
from stocksync.platforms.shopify.ids import numeric_id, to_gid
from stocksync.storage.migrate import upgrade_async
from stocksync.storage.tables import (
    connections,
    flush_pending,
    inbox,
    ledger,
    locations,
    order_holds,
    source_dirty,
    stores,
    variant_links,
)
from stocksync.web.install import WEBHOOK_PATH, register_webhooks, webhook_topics

SOURCE = "source"
DESTINATIONS = ("retailer-north", "retailer-south", "outlet")
DEADLINE_SECONDS = 60.0
START_TIMEOUT = 30.0
# A small catalog keeps a run short on a laptop; the engine's batching is shown by the
# benchmark, not here.
CATALOG_PRODUCTS = 6
CATALOG_VARIANTS = 3

# Merchant-side traffic: what a merchant does in the shop's admin, sent as Admin GraphQL.
VARIANTS = """
query($after: String) {
  productVariants(first: 100, after: $after) {
    nodes { id sku inventoryItem { id tracked } }
    pageInfo { hasNextPage endCursor }
  }
}"""
LEVELS = """
query($ids: [ID!]!) {
  nodes(ids: $ids) {
    ... on InventoryItem {
      id
      inventoryLevels(first: 5) {
        nodes { location { id } quantities(names: ["available"]) { quantity } }
      }
    }
  }
}"""
ADJUST = """
mutation($input: InventoryAdjustQuantitiesInput!) {
  inventoryAdjustQuantities(input: $input) { userErrors { code message } }
}"""
SET = """
mutation($input: InventorySetQuantitiesInput!) {
  inventorySetQuantities(input: $input) { userErrors { code message } }
}"""
ORDER_CREATE = """
mutation($order: OrderCreateOrderInput!, $options: OrderCreateOptionsInput) {
  orderCreate(order: $order, options: $options) {
    order { id lineItems(first: 5) { nodes { id quantity } } }
    userErrors { code message }
  }
}"""
MARK_PAID = """
mutation($id: ID!) {
  orderMarkAsPaid(input: {id: $id}) { userErrors { message } }
}"""
REFUND = """
mutation($input: RefundInput!) {
  refundCreate(input: $input) { userErrors { message } }
}"""
CANCEL = """
mutation($id: ID!) {
  orderCancel(orderId: $id, reason: CUSTOMER, refund: false, restock: true) {
    orderCancelUserErrors { code message }
  }
}"""
EDIT_BEGIN = """
mutation($id: ID!) {
  orderEditBegin(id: $id) {
    calculatedOrder { id lineItems(first: 5) { nodes { id quantity } } }
    userErrors { message }
  }
}"""
EDIT_SET = """
mutation($id: ID!, $line: ID!, $qty: Int!) {
  orderEditSetQuantity(id: $id, lineItemId: $line, quantity: $qty, restock: true) {
    userErrors { message }
  }
}"""
EDIT_COMMIT = """
mutation($id: ID!) { orderEditCommit(id: $id) { userErrors { message } } }"""


class DemoError(RuntimeError):
    pass


@dataclass
class SandboxShop:
    name: str
    domain: str
    base_url: str
    graphql_url: str
    token: str
    location_ids: list[str]


@dataclass
class Link:
    """One linked variant as the demo watches it: numeric ids, as the engine stores them."""

    sku: str
    destination: str
    source_item: str
    destination_item: str
    receiving_location: str


@dataclass
class Order:
    shop: str
    id: str
    line: str
    quantity: int


@dataclass
class Counters:
    faults: int = 0
    actions: dict[str, int] = field(default_factory=dict)

    def did(self, action: str) -> None:
        self.actions[action] = self.actions.get(action, 0) + 1


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Processes:
    """Child processes, each writing to its own log file; all of them end with the demo."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.running: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []

    def start(self, name: str, args: Sequence[str], env: Mapping[str, str]) -> None:
        log = (self.log_dir / f"{name}.log").open("ab")
        process = subprocess.Popen(  # noqa: S603 (our own interpreter and modules)
            [sys.executable, "-m", *args],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Own process group: a Ctrl-C in the terminal reaches the demo only, which then
            # stops its children in order instead of all of them dying at once.
            start_new_session=True,
        )
        self.running.append((name, process, log))

    def check(self) -> None:
        for name, process, _ in self.running:
            if process.poll() is not None:
                raise DemoError(
                    f"the {name} process exited with status {process.returncode}; "
                    f"see {self.log_dir / (name + '.log')}"
                )

    def stop(self, timeout: float = 10.0) -> None:
        # Reverse order: the worker and the web process stop before the sandbox they call.
        for _, process, _ in reversed(self.running):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _, process, log in reversed(self.running):
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
            log.close()
        self.running.clear()


def sandbox_config(
    path: Path,
    app_secret: str,
    seed: int,
    *,
    destinations: Sequence[str] = DESTINATIONS,
    products: int = CATALOG_PRODUCTS,
    variants: int = CATALOG_VARIANTS,
    hidden_ratio: float = 0.15,
) -> None:
    """The sandbox's TOML: the source is seeded, the destinations start empty."""
    lines = [
        "[sandbox]",
        'host = "127.0.0.1"',
        f"seed = {seed}",
        "",
        "[app]",
        f'client_secret = "{app_secret}"',
        "",
        "[[shops]]",
        f'name = "{SOURCE}"',
        'locations = ["Warehouse", "Shop floor"]',
        # The demo's own reads for the live table share the shop's cost bucket; a large plan
        # keeps them from slowing stocksync down.
        'plan = "plus"',
        f"seed = {{ products = {products}, variants = {variants}, "
        f"seed = {seed + 1}, untracked_ratio = 0.0, hidden_ratio = {hidden_ratio} }}",
    ]
    for name in destinations:
        lines += ["", "[[shops]]", f'name = "{name}"', 'locations = ["Warehouse"]', 'plan = "plus"']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


class Merchant:
    """The merchants' side: Admin GraphQL calls to the sandbox, and its admin endpoint."""

    def __init__(self, http: httpx.AsyncClient, admin_url: str, shops: dict[str, SandboxShop]):
        self.http = http
        self.admin_url = admin_url
        self.shops = shops

    async def gql(self, shop: str, query: str, variables: Mapping[str, Any] | None = None) -> Any:
        target = self.shops[shop]
        for attempt in range(20):
            response = await self.http.post(
                target.graphql_url,
                json={"query": query, "variables": dict(variables or {})},
                headers={"X-Shopify-Access-Token": target.token},
            )
            # Injected 5xx faults hit the merchants' requests too; they simply try again.
            if response.status_code >= 500 or response.status_code == 429:
                await asyncio.sleep(0.05 * (attempt + 1))
                continue
            response.raise_for_status()
            body = response.json()
            errors = body.get("errors")
            if errors:
                if any((e.get("extensions") or {}).get("code") == "THROTTLED" for e in errors):
                    await asyncio.sleep(0.2)
                    continue
                raise DemoError(f"{shop}: {errors}")
            return body["data"]
        raise DemoError(f"{shop}: the sandbox kept failing")

    async def variants(self, shop: str) -> dict[str, tuple[str, str]]:
        """SKU -> (variant gid, inventory item gid)."""
        found: dict[str, tuple[str, str]] = {}
        after: str | None = None
        while True:
            data = await self.gql(shop, VARIANTS, {"after": after})
            page = data["productVariants"]
            for node in page["nodes"]:
                if node["sku"]:
                    found[node["sku"]] = (node["id"], node["inventoryItem"]["id"])
            if not page["pageInfo"]["hasNextPage"]:
                return found
            after = page["pageInfo"]["endCursor"]

    async def levels(self, shop: str, items: Sequence[str]) -> dict[str, dict[str, int]]:
        """Numeric item id -> numeric location id -> available."""
        out: dict[str, dict[str, int]] = {}
        for start in range(0, len(items), 50):
            chunk = [to_gid("InventoryItem", i) for i in items[start : start + 50]]
            data = await self.gql(shop, LEVELS, {"ids": chunk})
            for node in data["nodes"]:
                if not node:
                    continue
                out[numeric_id(node["id"])] = {
                    numeric_id(level["location"]["id"]): int(level["quantities"][0]["quantity"])
                    for level in node["inventoryLevels"]["nodes"]
                }
        return out

    async def admin(self, method: str, path: str, body: Any = None) -> Any:
        response = await self.http.request(method, f"{self.admin_url}{path}", json=body)
        response.raise_for_status()
        return response.json()


@dataclass
class World:
    merchant: Merchant
    links: list[Link]
    shared: list[str]  # the source's shared locations (numeric ids)
    skus: list[str]

    async def snapshot(self) -> dict[str, dict[str, int]]:
        """SKU -> store name -> level shown, as a merchant would read it."""
        source_items = sorted({link.source_item for link in self.links})
        per_shop: dict[str, list[str]] = {}
        for link in self.links:
            per_shop.setdefault(link.destination, []).append(link.destination_item)
        reads = await asyncio.gather(
            self.merchant.levels(SOURCE, source_items),
            *(self.merchant.levels(name, per_shop.get(name, [])) for name in DESTINATIONS),
        )
        source_levels = reads[0]
        dest_levels = dict(zip(DESTINATIONS, reads[1:], strict=True))
        table: dict[str, dict[str, int]] = {}
        for link in self.links:
            row = table.setdefault(link.sku, {})
            at = source_levels.get(link.source_item, {})
            row[SOURCE] = sum(at.get(loc, 0) for loc in self.shared)
            got = dest_levels[link.destination].get(link.destination_item, {})
            row[link.destination] = got.get(link.receiving_location, 0)
        return table

    @staticmethod
    def differences(
        snapshot: Mapping[str, Mapping[str, int]],
        held: Mapping[tuple[str, str], int] | None = None,
    ) -> list[str]:
        """``held``: (SKU, destination) -> units of that destination's unpaid orders, which it
        keeps off its level until they count or end (B24)."""
        out = []
        for sku, row in sorted(snapshot.items()):
            for name in DESTINATIONS:
                # B20 with no buffer: a destination shows the source's level, never below zero.
                expected = max(0, row[SOURCE] - (held or {}).get((sku, name), 0))
                if name in row and row[name] != expected:
                    out.append(f"{sku}: {name} shows {row[name]}, source implies {expected}")
        return out

    def table(self, snapshot: Mapping[str, Mapping[str, int]], caption: str) -> Table:
        table = Table(title="available, per store", caption=caption)
        table.add_column("SKU")
        for name in (SOURCE, *DESTINATIONS):
            table.add_column(name, justify="right")
        for sku in sorted(snapshot):
            row = snapshot[sku]
            expected = max(0, row[SOURCE])
            cells = [sku, str(row[SOURCE])]
            for name in DESTINATIONS:
                value = row.get(name)
                if value is None:
                    cells.append("-")
                elif value == expected:
                    cells.append(str(value))
                else:
                    cells.append(f"[yellow]{value}[/yellow]")
            table.add_row(*cells)
        return table


async def held_units(app: App) -> dict[tuple[str, str], int]:
    """(SKU, destination) -> units its unpaid orders hold (engine/sales.py)."""
    async with app.db.connect() as conn:
        rows = await conn.execute(
            select(variant_links.c.sku, stores.c.name, func.sum(order_holds.c.held))
            .join(variant_links, variant_links.c.id == order_holds.c.variant_link_id)
            .join(stores, stores.c.id == order_holds.c.destination_store_id)
            .where(order_holds.c.held > 0)
            .group_by(variant_links.c.sku, stores.c.name)
        )
        return {(r[0], r[1]): int(r[2]) for r in rows}


async def outstanding(app: App) -> int:
    """Work the engine has accepted and not finished: events, ledger rows, dirty and pending
    levels. Zero, with levels agreeing, means the stores agree for good and not by chance."""
    async with app.db.connect() as conn:
        total = 0
        for query in (
            select(func.count()).select_from(inbox).where(inbox.c.status == "pending"),
            select(func.count()).select_from(ledger).where(ledger.c.status == "pending"),
            select(func.count()).select_from(source_dirty),
            select(func.count()).select_from(flush_pending),
        ):
            total += int((await conn.execute(query)).scalar_one())
    return total


class Day:
    """A day of merchant activity, reproducible from its seed."""

    def __init__(
        self,
        merchant: Merchant,
        rng: random.Random,
        source_variants: dict[str, tuple[str, str]],
        dest_variants: dict[str, dict[str, tuple[str, str]]],
        source_locations: list[str],
        skus: list[str],
    ) -> None:
        self.m = merchant
        self.rng = rng
        self.source_variants = source_variants
        self.dest_variants = dest_variants
        self.source_locations = source_locations
        self.skus = skus
        self.paid: list[Order] = []
        self.pending: list[Order] = []
        self.counters = Counters()

    async def order(self, shop: str, sku: str, quantity: int, status: str) -> Order:
        variant, _ = self.dest_variants[shop][sku]
        data = await self.m.gql(
            shop,
            ORDER_CREATE,
            {
                "order": {
                    "lineItems": [{"variantId": variant, "quantity": quantity}],
                    "financialStatus": status,
                    "email": "buyer@example.com",
                },
                "options": {"inventoryBehaviour": "DECREMENT_IGNORING_POLICY"},
            },
        )
        created = data["orderCreate"]
        if created["userErrors"]:
            raise DemoError(f"{shop}: orderCreate: {created['userErrors']}")
        line = created["order"]["lineItems"]["nodes"][0]
        order = Order(shop, created["order"]["id"], line["id"], int(line["quantity"]))
        (self.paid if status == "PAID" else self.pending).append(order)
        return order

    async def paid_order(self) -> Order:
        if not self.paid:
            await self.order(self.rng.choice(DESTINATIONS), self.rng.choice(self.skus), 2, "PAID")
        return self.paid.pop(self.rng.randrange(len(self.paid)))

    async def step(self, action: str) -> None:
        rng = self.rng
        sku = rng.choice(self.skus)
        shop = rng.choice(DESTINATIONS)
        self.counters.did(action)
        if action == "restock":
            _, item = self.source_variants[sku]
            change = {
                "inventoryItemId": item,
                "locationId": self.source_locations[0],
                "delta": rng.randint(2, 6),
            }
            await self.m.gql(
                SOURCE,
                ADJUST,
                {"input": {"reason": "received", "name": "available", "changes": [change]}},
            )
        elif action == "correction":
            _, item = self.source_variants[sku]
            quantity = {
                "inventoryItemId": item,
                "locationId": self.source_locations[-1],
                "quantity": rng.randint(0, 8),
            }
            await self.m.gql(
                SOURCE,
                SET,
                {
                    "input": {
                        "reason": "correction",
                        "name": "available",
                        "ignoreCompareQuantity": True,
                        "quantities": [quantity],
                    }
                },
            )
        elif action == "sale":
            await self.order(shop, sku, rng.randint(1, 2), "PAID")
        elif action == "pending sale":
            await self.order(shop, sku, 1, "PENDING")
        elif action == "payment":
            if self.pending:
                order = self.pending.pop(0)
                await self.m.gql(order.shop, MARK_PAID, {"id": order.id})
                self.paid.append(order)
        elif action in ("refund with restock", "refund without restock"):
            order = await self.paid_order()
            restock = "CANCEL" if action == "refund with restock" else "NO_RESTOCK"
            line = {"lineItemId": order.line, "quantity": 1, "restockType": restock}
            await self.m.gql(
                order.shop, REFUND, {"input": {"orderId": order.id, "refundLineItems": [line]}}
            )
        elif action == "cancellation":
            order = await self.paid_order()
            await self.m.gql(order.shop, CANCEL, {"id": order.id})
        elif action == "order edit":
            order = await self.paid_order()
            begin = (await self.m.gql(order.shop, EDIT_BEGIN, {"id": order.id}))["orderEditBegin"]
            calculated = begin["calculatedOrder"]
            line = calculated["lineItems"]["nodes"][0]
            await self.m.gql(
                order.shop,
                EDIT_SET,
                {"id": calculated["id"], "line": line["id"], "qty": int(line["quantity"]) + 1},
            )
            await self.m.gql(order.shop, EDIT_COMMIT, {"id": calculated["id"]})
            self.paid.append(order)

    async def inject_fault(self) -> None:
        shop = self.rng.choice((SOURCE, *DESTINATIONS))
        await self.m.admin("POST", f"/shops/{shop}/faults", {"error_5xx": {"next": 1}})
        self.counters.faults += 1

    async def webhook_storm(self, on: bool) -> None:
        faults = (
            {"webhook_duplicate": 0.35, "webhook_reorder": 0.35, "webhook_reorder_hold_s": 0.5}
            if on
            else {"webhook_duplicate": 0.0, "webhook_reorder": 0.0}
        )
        for shop in (SOURCE, *DESTINATIONS):
            await self.m.admin("POST", f"/shops/{shop}/faults", faults)

    def script(self) -> list[str]:
        """Every kind of event at least once, then a random mix, in a random order."""
        kinds = [
            "restock",
            "correction",
            "sale",
            "sale",
            "pending sale",
            "pending sale",
            "refund with restock",
            "refund without restock",
            "cancellation",
            "order edit",
        ]
        extra = ["restock", "correction", "sale", "sale", "pending sale", "payment"]
        plan = kinds + [self.rng.choice(extra) for _ in range(10)]
        self.rng.shuffle(plan)
        # Payments arrive later in the day, after the pending sales they settle.
        return [*plan, "payment", "payment"]


async def wait_ready(http: httpx.AsyncClient, url: str, procs: Processes) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        procs.check()
        with contextlib.suppress(httpx.HTTPError):
            if (await http.get(url)).status_code == 200:
                return
        await asyncio.sleep(0.1)  # waiting for a child process to listen
    raise DemoError(f"{url} did not answer within {START_TIMEOUT:.0f} s")


async def wait_manifest(path: Path, procs: Processes) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not await asyncio.to_thread(path.exists):
        procs.check()
        if time.monotonic() > deadline:
            raise DemoError("the sandbox did not start in time")
        await asyncio.sleep(0.05)  # the sandbox writes its manifest once it listens


async def install(
    app: App, shop: SandboxShop, role: str, webhook_url: str
) -> tuple[int, list[str]]:
    """Install a store with its admin token, record its locations, subscribe its webhooks.

    Returns the store id and its location ids (numeric)."""
    platform = ShopifyPlatform(shop.domain, shop.token, base_url=shop.base_url)
    try:
        found = await platform.list_locations()
        async with app.db.begin() as conn:
            store, _ = await install_store(
                app.runtime,
                conn,
                vault=app.vault,
                platform="shopify",
                external_id=shop.domain,
                name=shop.name,
                role=role,
                credentials=shop.token,
                base_url=shop.base_url,
            )
            await set_locations(conn, store.id, found)
        report = await register_webhooks(platform, webhook_topics(Roles.parse(role)), webhook_url)
        if report.failed:
            raise DemoError(f"{shop.name}: webhooks not registered: {report.failed}")
    finally:
        await platform.aclose()
    return store.id, [loc.id for loc in found if loc.active]


async def load_links(app: App) -> tuple[list[Link], list[str]]:
    async with app.db.connect() as conn:
        rows = (
            await conn.execute(
                select(
                    variant_links.c.sku,
                    stores.c.name,
                    variant_links.c.source_item_id,
                    variant_links.c.destination_item_id,
                    connections.c.receiving_location,
                )
                .join(connections, connections.c.id == variant_links.c.connection_id)
                .join(stores, stores.c.id == variant_links.c.destination_store_id)
                .where(variant_links.c.status == "active", variant_links.c.tracked.is_(True))
            )
        ).all()
        shared = (
            await conn.execute(
                select(locations.c.external_id)
                .join(stores, stores.c.id == locations.c.store_id)
                .where(stores.c.name == SOURCE, locations.c.shared.is_(True))
            )
        ).all()
    links = [Link(r[0], r[1], r[2], r[3], r[4]) for r in rows]
    return links, [r[0] for r in shared]


async def run_demo(console: Console, *, once: bool, seed: int) -> int:
    console.print(
        "[bold]stocksync demo[/bold] - one source and three destination shops on the Shopify "
        "sandbox; stocksync's web process and worker run as separate processes."
    )
    data_dir = Path(tempfile.mkdtemp(prefix="stocksync-demo-"))
    procs = Processes(data_dir)
    try:
        # This process's own logs (the installs, the catalog import) go to a file as the
        # children's do, not to the screen.
        with logs.into_file(data_dir / "demo.log"):
            return await _run(console, data_dir, procs, once=once, seed=seed)
    except DemoError as exc:
        console.print(f"[red]demo failed:[/red] {exc}")
        console.print(f"logs in {data_dir}")
        return 2
    finally:
        procs.stop()


def stocksync_env(
    data_dir: Path, database_url: str, app_secret: str, **extra: str
) -> tuple[dict[str, str], Settings]:
    """The environment of stocksync's processes, and the same settings for this process.

    ``extra`` adds ``STOCKSYNC_*`` variables (named without the prefix, in lower case)."""
    # Snappier than the production defaults, so that the day plays in seconds: a corrected
    # destination level (no order behind it) is set back after 5 s rather than a minute.
    snappy = {"job_poll_seconds": "0.1", "flush_debounce_ms": "100", "sale_grace_seconds": "5"}
    chosen = snappy | dict(extra)
    env = {
        "STOCKSYNC_DATA_DIR": str(data_dir),
        "STOCKSYNC_DATABASE_URL": database_url,
        "STOCKSYNC_SECRET_KEY": Fernet.generate_key().decode(),
        "STOCKSYNC_SHOPIFY_API_SECRET": app_secret,
    }
    env |= {f"STOCKSYNC_{name.upper()}": value for name, value in chosen.items()}
    settings = Settings(
        data_dir=data_dir,
        database_url=database_url,
        secret_key=env["STOCKSYNC_SECRET_KEY"],
        shopify_api_secret=app_secret,
        **chosen,  # type: ignore[arg-type]  # validated by pydantic, as from the environment
    )
    return env, settings


def start_sandbox(
    procs: Processes, config: Path, manifest_path: Path, env: Mapping[str, str]
) -> None:
    procs.start(
        "sandbox",
        [
            "stocksync.sandbox",
            "--config",
            str(config),
            "--port",
            "0",
            "--manifest",
            str(manifest_path),
            "--log-level",
            "warning",
        ],
        env,
    )


def start_web(procs: Processes, env: Mapping[str, str], port: int | None = None) -> str:
    """``stocksync serve`` without its embedded worker; returns its URL."""
    web_port = port or free_port()
    procs.start(
        "web",
        ["stocksync", "serve", "--no-worker", "--host", "127.0.0.1", "--port", str(web_port)],
        env,
    )
    return f"http://127.0.0.1:{web_port}"


def start_worker(procs: Processes, env: Mapping[str, str], name: str = "worker") -> None:
    procs.start(name, ["stocksync", "worker"], env)


def shops_from_manifest(manifest: Mapping[str, Any]) -> dict[str, SandboxShop]:
    return {
        s["name"]: SandboxShop(
            s["name"],
            s["domain"],
            s["base_url"],
            s["graphql_url"],
            s["access_token"],
            [loc["id"] for loc in s["locations"] if loc["active"]],
        )
        for s in manifest["shops"]
    }


async def _run(console: Console, data_dir: Path, procs: Processes, *, once: bool, seed: int) -> int:
    rng = random.Random(seed)  # noqa: S311 (a reproducible simulated day, not a secret)
    app_secret = secrets.token_urlsafe(24)
    database_url = os.environ.get("STOCKSYNC_DATABASE_URL") or f"sqlite:///{data_dir / 'demo.db'}"
    env, settings = stocksync_env(data_dir, database_url, app_secret)
    shown = make_url(database_url).render_as_string(hide_password=True)
    console.print(f"database: {shown}")
    await upgrade_async(settings.resolved_database_url)

    config = data_dir / "sandbox.toml"
    manifest_path = data_dir / "sandbox.json"
    sandbox_config(config, app_secret, seed)
    start_sandbox(procs, config, manifest_path, env)
    web_url = start_web(procs, env)
    start_worker(procs, env)
    app = build_app(settings)
    async with httpx.AsyncClient(timeout=30.0) as http:
        try:
            await wait_manifest(manifest_path, procs)
            await wait_ready(http, f"{web_url}/readyz", procs)
            return await _play(console, app, http, procs, manifest_path, web_url, rng, once)
        finally:
            await app.close()


async def _play(  # noqa: PLR0915  the demo's day, told in order
    console: Console,
    app: App,
    http: httpx.AsyncClient,
    procs: Processes,
    manifest_path: Path,
    web_url: str,
    rng: random.Random,
    once: bool,
) -> int:
    from stocksync.sandbox.manifest import read_manifest

    manifest = read_manifest(manifest_path)
    shops = shops_from_manifest(manifest)
    merchant = Merchant(http, str(manifest["admin_url"]), shops)
    console.print(f"sandbox at {manifest['base_url']}, stocksync at {web_url}")
    hook = web_url + WEBHOOK_PATH
    source_id, _ = await install(app, shops[SOURCE], "source", hook)
    destination_ids: list[int] = []
    for i, name in enumerate(DESTINATIONS):
        dest_id, dest_locations = await install(app, shops[name], "destination", hook)
        destination_ids.append(dest_id)
        record = await connect_with_own_key(
            app.runtime,
            vault=app.vault,
            source_store_id=source_id,
            destination_store_id=dest_id,
            receiving_location=dest_locations[0],
            # One retailer also counts orders still awaiting payment (B15).
            settings=ConnectionSettings(count_pending=(i == 1)),
        )
        report = await import_products(app.runtime, record.id)
        console.print(
            f"connected {name} with the source's key; imported {len(report.products)} products, "
            f"{report.linked_variants} variants"
        )
    links, shared = await load_links(app)
    skus = sorted({link.sku for link in links})
    world = World(merchant, links, shared, skus)
    source_variants = await merchant.variants(SOURCE)
    dest_variants = {name: await merchant.variants(name) for name in DESTINATIONS}
    day = Day(merchant, rng, source_variants, dest_variants, shops[SOURCE].location_ids, skus)
    plan = day.script()
    storm = range(len(plan) // 2, len(plan) // 2 + 4)
    fault_steps = set(rng.sample(range(len(plan)), k=4))
    started = time.monotonic()
    snapshot = await world.snapshot()
    with Live(world.table(snapshot, "a day begins"), console=console, refresh_per_second=4) as live:
        for hour, action in enumerate(plan):
            procs.check()
            if hour == storm.start:
                await day.webhook_storm(on=True)
            if hour in storm:
                # A burst: several changes at once, their webhooks duplicated and reordered.
                await asyncio.gather(day.step("restock"), day.step("sale"), day.step(action))
            else:
                await day.step(action)
            if hour == storm.stop - 1:
                await day.webhook_storm(on=False)
            if hour in fault_steps:
                await day.inject_fault()
            snapshot = await world.snapshot()
            live.update(world.table(snapshot, f"hour {hour + 1}: {action}"))
            await asyncio.sleep(0.15)  # pacing, so that the table can be watched
        # The periodic safety nets, run now rather than in ten minutes: orders polled from
        # each destination (B17) and a reconciliation of the source (B19).
        for dest_id in destination_ids:
            await backfill_orders(app.runtime, dest_id)
        await reconcile_source(app.runtime, source_id)
        deadline = time.monotonic() + DEADLINE_SECONDS
        agreed = 0
        while time.monotonic() < deadline:
            procs.check()
            snapshot = await world.snapshot()
            diffs = World.differences(snapshot, await held_units(app))
            pending = await outstanding(app)
            live.update(
                world.table(snapshot, f"settling: {len(diffs)} differences, {pending} pending")
            )
            # Three agreeing reads in a row with nothing pending: settled, not a coincidence.
            agreed = agreed + 1 if not diffs and pending == 0 else 0
            if agreed >= 3:
                break
            await asyncio.sleep(0.3)  # polling the stores for the live table
    elapsed = time.monotonic() - started
    console.print()  # the live table's last frame stays above the summary
    stats = await merchant.admin("GET", "/stats")
    delivered = sum(int(s.get("webhooks_sent", 0)) for s in stats.values())
    duplicated = sum(int(s.get("webhooks_duplicated", 0)) for s in stats.values())
    reordered = sum(int(s.get("webhooks_reordered", 0)) for s in stats.values())
    served_5xx = sum(int(s.get("errors_5xx", 0)) for s in stats.values())
    console.print(
        f"{delivered} webhooks delivered ({duplicated} duplicated, {reordered} reordered); "
        f"{day.counters.faults} API faults injected ({served_5xx} 5xx answers served)"
    )
    console.print(
        "merchant activity: "
        + ", ".join(f"{n} {a}" for a, n in sorted(day.counters.actions.items()))
    )
    diffs = World.differences(snapshot, await held_units(app))
    if agreed < 3:
        console.print(f"[red]stores do not agree within {DEADLINE_SECONDS:.0f} s:[/red]")
        for line in diffs or ["levels agree but work is still pending"]:
            console.print(f"  {line}")
        console.print(f"logs in {procs.log_dir}")
        return 1
    console.print(
        f"[green]all destinations agree with the source[/green] "
        f"({len(links)} linked variants, {elapsed:.1f} s)"
    )
    console.print(
        f"stocksync web app (webhooks and API): {web_url}; API reference at {web_url}/docs, "
        f"health at {web_url}/readyz, metrics at {web_url}/metrics"
    )
    console.print(f"sandbox shops' admin endpoint: {manifest['admin_url']}")
    console.print(f"logs in {procs.log_dir}")
    if not once:
        console.print("Running; press Ctrl-C to stop.")
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                procs.check()
                await asyncio.sleep(1.0)  # idle: the processes keep serving
    return 0
