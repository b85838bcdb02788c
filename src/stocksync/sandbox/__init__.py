"""Shopify sandbox: emulated Shopify shops speaking the real protocol over real HTTP.

The sandbox is written from Shopify's documentation and imports nothing from the rest of
stocksync, so that a misunderstanding of Shopify in the client is not mirrored here.

What is emulated
- Any number of shops on one server (`{server}/shops/NAME.myshopify.com`), each with an
  access token, locations (active and deactivated), a rate-limit plan and faults.
- Admin GraphQL (`POST /admin/api/{version}/graphql.json`, `X-Shopify-Access-Token`),
  executed by graphql-core against `schema.graphql`: a subset of the real 2025-01 schema
  (checked by tests), plus `schema_additions.graphql` (`changeFromQuantity`, the
  `@idempotent(key:)` directive and their error codes), served to versions from 2026-01.
  Fields outside the subset get Shopify's "Field 'x' doesn't exist on type 'Y'" error.
- Products and variants (create, set, update, delete, bulk variant create/update/delete,
  tags, status, publishing, images as URLs, tracking, inventory policy); `products`,
  `productVariants`, `inventoryItems`, `orders` with cursors and the `query:` search syntax.
- Inventory quantity states (available, committed, on_hand; incoming, reserved, damaged,
  safety_stock, quality_control kept at zero unless set), `inventorySetQuantities` with
  `compareQuantity`/`ignoreCompareQuantity` and, from 2026-01, `changeFromQuantity`;
  `inventoryAdjustQuantities`; `inventoryActivate`; documented userErrors codes;
  `@idempotent(key:)` on inventorySetQuantities, inventoryAdjustQuantities, refundCreate.
- Orders: `orderCreate` (inventoryBehaviour BYPASS by default; the DECREMENT_* options
  claim units: available -> committed), financial statuses, `orderMarkAsPaid`,
  `fulfillmentCreate` on fulfilment orders (committed and on_hand go down), `orderCancel`
  (asynchronous, returns a Job; with restock recorded as a refund with restock type
  `cancel`), `refundCreate` (NO_RESTOCK, CANCEL for unfulfilled units, RETURN for
  fulfilled ones, at a chosen location), order edits (begin / set quantity / commit).
- Webhooks signed with the app's secret, with Shopify's headers and REST-style payloads
  (64-bit integer ids), at-least-once delivery with 8 retries over about 4 hours on the
  sandbox clock, removal of API-created subscriptions after the last failure; privacy
  topics sent to the URLs of the app configuration; `app/uninstalled`.
- Cost-based rate limits: requested and actual query cost, a leaky bucket per shop with
  the plan's restore rate, `extensions.cost` on every answer, THROTTLED, MAX_COST_EXCEEDED.
- Bulk query operations (one at a time per shop), JSONL results with `__parentId`,
  `bulk_operations/finish`. OAuth authorization-code install flow with Shopify's HMAC.
- Faults per shop: latency, 5xx, throttling, timeouts, lost responses (write applied),
  races (a level changes just before a write), webhooks dropped, duplicated, delayed,
  reordered, and an unreachable shop; an admin endpoint (`/_sandbox/...`) reports per
  shop requests served, points spent, throttled answers and webhooks sent, dropped and
  duplicated.
- One clock for everything time-based (buckets, webhook retries, bulk runs, timestamps):
  real time, real time sped up (`--time-scale`), or stopped and moved by hand
  (`ManualClock`; `--manual-clock` with `POST /_sandbox/clock {"seconds": N}`).
- A seeded catalog generator (titles, tags including `stocksync-hidden`, SKUs with
  optional duplicates and blanks, images, prices, stock, some untracked variants).

Known differences from Shopify
- The consent screen is skipped: `/admin/oauth/authorize` redirects at once.
- An unreachable shop answers 503 (one server cannot refuse connections per shop).
- A lost response is a 502 after the write is applied; a timeout hangs, then 504.
- Orders are routed to the first active location that stocks enough units.
- inventory_levels/update fires when `available` changes (its payload carries only
  available); fulfilments, which change committed and on_hand only, do not fire it.
- An unfulfilled unit cancelled or refunded without restock leaves committed and on_hand;
  restocking units of a BYPASS order (never claimed) adds them to available.
- inventoryAdjustQuantities accepts the `available` and `on_hand` names only; 2026-04
  rules (mandatory changeFromQuantity and idempotency keys) are not enforced.
- Query cost counts connection wrappers (edges, nodes, pageInfo) in the connection's 2;
  mutations cost 10 regardless of the fields they return.
- `orderCreate` without `financialStatus` gives PENDING; `transactions`, customers,
  addresses, discounts, shipping and taxes are not accepted.
- A product created with `productCreate` keeps one variant (each option's first value);
  `REMOVE_STANDALONE_VARIANT` replaces it, as on Shopify since 2024-04.
- Webhook bodies carry the keys of Shopify's documented sample for each topic
  (tests/sandbox/webhook_samples/). An order has no customer, so that key is left out, and
  no addresses, so they are null; it has no discounts, taxes, shipping lines, duties or
  payment transactions, so those are empty or zero; `total_outstanding` is the current
  total less the payments received net of refunds (an order created `PARTIALLY_PAID` counts
  as nothing received).
- No REST Admin API, no storefront, no metafields, no customers, no draft orders, no
  markets, no multi-currency; money is USD.

Programmatic use (tests, demo, benchmarks)::

    from stocksync.sandbox import Sandbox, ManualClock, serve_in_task

    sandbox = Sandbox(clock=ManualClock(), seed=1)
    shop = sandbox.create_shop("source", locations=["Warehouse", "Store"])
    async with serve_in_task(sandbox) as running:
        url = sandbox.graphql_url(shop)        # token: shop.access_token
        sandbox.set_faults("source", error_5xx={"next": 1})
        sandbox.clock.advance(10)              # ManualClock only
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stocksync.sandbox.clock import Clock, ManualClock, ScaledClock
    from stocksync.sandbox.faults import Faults
    from stocksync.sandbox.oauth import AppConfig
    from stocksync.sandbox.sandbox import Sandbox
    from stocksync.sandbox.seed import SeedSpec, seed_shop
    from stocksync.sandbox.server import (
        RunningSandbox,
        SandboxProcess,
        run_on_loop,
        serve_in_task,
        serve_in_thread,
        start_subprocess,
    )

# Loaded on first use: the `stocksync` command mounts `stocksync sandbox` (stocksync.sandbox.cli)
# and would otherwise import the whole server, GraphQL included, on every start.
_HOMES = {
    "AppConfig": "oauth",
    "Clock": "clock",
    "Faults": "faults",
    "ManualClock": "clock",
    "RunningSandbox": "server",
    "Sandbox": "sandbox",
    "SandboxProcess": "server",
    "ScaledClock": "clock",
    "SeedSpec": "seed",
    "run_on_loop": "server",
    "seed_shop": "seed",
    "serve_in_task": "server",
    "serve_in_thread": "server",
    "start_subprocess": "server",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


__all__ = [
    "AppConfig",
    "Clock",
    "Faults",
    "ManualClock",
    "RunningSandbox",
    "Sandbox",
    "SandboxProcess",
    "ScaledClock",
    "SeedSpec",
    "run_on_loop",
    "seed_shop",
    "serve_in_task",
    "serve_in_thread",
    "start_subprocess",
]
