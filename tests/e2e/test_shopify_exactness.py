"""Exactly once against Shopify's order lifecycle, end to end over real HTTP (B15-B18, B24).

The sandbox, stocksync's web process and its worker run as separate processes on loopback,
on SQLite and on PostgreSQL; three destinations count paid orders only. One stack plays the
sequences that used to lose, double or re-sell units, each on its own SKU:

- history: a destination that already sells a product, with paid orders placed before
  stocksync was installed, is linked to the source by SKU at import; the periodic order
  backfill (which runs: a later order whose webhooks were all dropped is counted through it)
  never counts the old orders (B15).
- checkout: a customer buys every unit a destination shows; the order stays unpaid for a
  while on a paid-only connection. A watcher reading the destination every 100 ms never sees
  the sold-out variant above 0; once paid, the source and every other destination go down
  (B24).
- deposit: a partially paid order (a deposit taken at checkout) gets money back without any
  line, which Shopify shows as partially refunded; on a paid-only connection it was never paid
  in full, so it never counts (B15); its units stay held on the destination that sold them.
- outage: the source is unreachable for longer than the job applying a sale may retry; once
  it answers again the periodic job applies the sale, exactly once (B17).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from stocksync.demo_shopify import MARK_PAID, ORDER_CREATE
from stocksync.domain.connection import ConnectionSettings
from stocksync.platforms.shopify.ids import numeric_id
from stocksync.storage.tables import ledger
from tests.e2e.shopify_stack import (
    SOURCE,
    Stack,
    install_and_import,
    running_stack,
    start_stack_worker,
)

SEED = 20_261_207
NORTH, SOUTH, EAST = "retailer-north", "retailer-south", "retailer-east"
DESTINATIONS = (NORTH, SOUTH, EAST)
PRODUCTS, VARIANTS = 4, 1
PERIODIC_SECONDS = 2
# A sale's job gives up quickly, so that the outage outlasts its retries.
JOB_MAX_ATTEMPTS = 2
OLD_ORDERS, OLD_UNITS = 3, 4
UNPAID_SECONDS = 5.0  # how long the checkout stays unpaid while the watcher looks
WITHIN = 45.0

pytestmark = pytest.mark.timeout(300)

REFUND_MONEY = """
mutation($input: RefundInput!) {
  refundCreate(input: $input) {
    order { displayFinancialStatus }
    userErrors { field message }
  }
}"""
PRODUCT_SET = """
mutation($input: ProductSetInput!) {
  productSet(input: $input, synchronous: true) {
    product { id variants(first: 5) { nodes { id sku } } }
    userErrors { code message }
  }
}"""


@pytest.fixture
async def stack(tmp_path: Path, db_url: str) -> AsyncIterator[Stack]:
    async with running_stack(
        tmp_path,
        db_url,
        destinations=DESTINATIONS,
        products=PRODUCTS,
        variants=VARIANTS,
        seed=SEED,
        periodic_seconds=str(PERIODIC_SECONDS),
        job_max_attempts=str(JOB_MAX_ATTEMPTS),
        # The product's default: the checkout must stay off its store by its order, not by a
        # grace that happens to outlast the watch.
        sale_grace_seconds="60",
    ) as running:
        yield running


async def order(
    stack: Stack, shop: str, variant: str, quantity: int, status: str, behaviour: str
) -> str:
    data = await stack.merchant.gql(
        shop,
        ORDER_CREATE,
        {
            "order": {
                "lineItems": [{"variantId": variant, "quantity": quantity}],
                "financialStatus": status,
                "email": "buyer@example.com",
            },
            "options": {"inventoryBehaviour": behaviour},
        },
    )
    return str(data["orderCreate"]["order"]["id"])


async def ledger_of(stack: Stack, shop: str, order_gid: str) -> list[tuple[int, str]]:
    """(delta, status) of every ledger row of one destination order."""
    async with stack.app.db.connect() as conn:
        rows = (
            await conn.execute(
                select(ledger.c.order_id, ledger.c.delta, ledger.c.status).where(
                    ledger.c.destination_store_id == stack.store_ids[shop]
                )
            )
        ).all()
    wanted = numeric_id(order_gid)
    return [(int(r[1]), r[2]) for r in rows if numeric_id(r[0]) == wanted]


async def source_levels(stack: Stack) -> dict[str, int]:
    """SKU -> the source's level summed over its shared locations, read from the sandbox."""
    return (await stack.levels())[SOURCE]


async def test_old_orders_sold_out_stock_and_an_outage_stay_exact(stack: Stack) -> None:  # noqa: PLR0915  one scenario, read in order
    m = stack.merchant
    source_variants = await m.variants(SOURCE)
    # The source's levels before anything happens: the catalog is seeded, no webhook yet.
    start_read = await m.levels(SOURCE, [numeric_id(item) for _, item in source_variants.values()])
    start: dict[str, int] = {}
    for sku, (_variant, item) in source_variants.items():
        start[sku] = sum(start_read[numeric_id(item)].values())
    # Most stock first: the checkout buys out a variant that has units to sell.
    skus = sorted(start, key=lambda s: (-start[s], s))
    checkout_sku, history_sku, outage_sku, deposit_sku = skus[0], skus[1], skus[2], skus[3]
    assert start[checkout_sku] > 0
    assert start[outage_sku] >= 2

    # --- history: the destination sold the product before stocksync was installed ----------
    made = await m.gql(
        NORTH,
        PRODUCT_SET,
        {
            "input": {
                "title": "Our own listing",
                "productOptions": [{"name": "Title", "values": [{"name": "Default Title"}]}],
                "variants": [
                    {
                        "optionValues": [{"optionName": "Title", "name": "Default Title"}],
                        "price": "10.00",
                        "inventoryItem": {"sku": history_sku, "tracked": True},
                    }
                ],
            }
        },
    )
    own_variant = made["productSet"]["product"]["variants"]["nodes"][0]["id"]
    old_orders = [
        await order(stack, NORTH, own_variant, OLD_UNITS, "PAID", "BYPASS")
        for _ in range(OLD_ORDERS)
    ]

    paid_only = ConnectionSettings()
    await install_and_import(stack, {name: paid_only for name in DESTINATIONS})
    variants = {name: await m.variants(name) for name in DESTINATIONS}
    assert variants[NORTH][history_sku][0] == own_variant, "linked to the existing product"
    start_stack_worker(stack)
    await stack.settle(WITHIN)

    async def everywhere(sku: str, level: int) -> bool:
        found = await stack.levels()
        return all(found[name][sku] == max(0, level) for name in found)

    def shown(sku: str) -> Callable[[], Awaitable[str]]:
        async def describe() -> str:
            found = await stack.levels()
            return ", ".join(f"{name} {found[name][sku]}" for name in found)

        return describe

    # A later order whose every webhook is dropped: only the backfill can count it, so once it
    # is counted, the backfill has run over the old orders too.
    await m.faults(NORTH, webhook_drop={"next": 3, "rate": 0.0})
    later = await order(stack, NORTH, own_variant, 1, "PAID", "DECREMENT_IGNORING_POLICY")
    await stack.until(
        "the order without webhooks is counted by the backfill",
        lambda: everywhere(history_sku, start[history_sku] - 1),
        WITHIN,
        shown(history_sku),
    )
    assert (await m.fault_state(NORTH))["webhook_drop"]["next"] == 0

    async def applied_once() -> bool:
        # The source shows the sale once the adjustment is made; the row is marked applied
        # when the worker commits just after, so the two are not seen at one instant.
        return await ledger_of(stack, NORTH, later) == [(-1, "applied")]

    await stack.until("the later order's ledger row is applied, once", applied_once, WITHIN)
    for old in old_orders:
        assert await ledger_of(stack, NORTH, old) == [], "an order placed before install counted"

    # --- checkout: every unit bought, paid later; never shown for sale again ---------------
    units = start[checkout_sku]
    south_item = variants[SOUTH][checkout_sku][1]
    south_location = next(
        link.receiving_location for link in stack.links if link.destination == SOUTH
    )
    seen_after_checkout: list[int] = []
    watching = True

    async def watch() -> None:
        while watching:
            read = await m.levels(SOUTH, [numeric_id(south_item)])
            seen_after_checkout.append(read[numeric_id(south_item)].get(south_location, 0))
            await asyncio.sleep(0.1)  # the watcher's polling period, not a synchronisation

    checkout = await order(
        stack, SOUTH, variants[SOUTH][checkout_sku][0], units, "PENDING", "DECREMENT_OBEYING_POLICY"
    )
    watcher = asyncio.create_task(watch())
    try:
        unpaid_until = time.monotonic() + UNPAID_SECONDS
        await stack.until(
            "the unpaid checkout is held", lambda: _after(unpaid_until), UNPAID_SECONDS + 5
        )
        assert (await source_levels(stack))[checkout_sku] == units, "an unpaid order counted"
        await m.gql(SOUTH, MARK_PAID, {"id": checkout})
        await stack.until(
            "the paid checkout reaches the source and every destination",
            lambda: everywhere(checkout_sku, 0),
            WITHIN,
            shown(checkout_sku),
        )
        await stack.settle(WITHIN)
    finally:
        watching = False
        await watcher
    assert seen_after_checkout
    assert max(seen_after_checkout) == 0, (
        f"sold-out stock shown for sale again: {seen_after_checkout}"
    )
    assert (await source_levels(stack))[checkout_sku] == 0
    assert await ledger_of(stack, SOUTH, checkout) == [(-units, "applied")]

    # --- deposit: partially paid, then money back without a line; never paid in full -------
    deposit = await m.gql(
        NORTH,
        ORDER_CREATE,
        {
            "order": {
                "lineItems": [{"variantId": variants[NORTH][deposit_sku][0], "quantity": 1}],
                "financialStatus": "PARTIALLY_PAID",
                "email": "buyer@example.com",
                "transactions": [
                    {
                        "kind": "SALE",
                        "gateway": "manual",
                        "amountSet": {"shopMoney": {"amount": "0.02", "currencyCode": "USD"}},
                    }
                ],
            },
            "options": {"inventoryBehaviour": "DECREMENT_IGNORING_POLICY"},
        },
    )
    deposit_id = str(deposit["orderCreate"]["order"]["id"])
    refunded = await m.gql(
        NORTH,
        REFUND_MONEY,
        {
            "input": {
                "orderId": deposit_id,
                "transactions": [
                    {"orderId": deposit_id, "kind": "REFUND", "gateway": "manual", "amount": "0.01"}
                ],
            }
        },
    )
    assert refunded["refundCreate"]["order"]["displayFinancialStatus"] == "PARTIALLY_REFUNDED"
    await stack.settle(WITHIN)
    assert await ledger_of(stack, NORTH, deposit_id) == [], "a deposit counted as paid"
    assert (await source_levels(stack))[deposit_sku] == start[deposit_sku]

    # --- outage: the sale's job gives up; the periodic job applies it later ----------------
    await m.faults(SOURCE, unreachable=True)
    sale = await order(
        stack, EAST, variants[EAST][outage_sku][0], 2, "PAID", "DECREMENT_IGNORING_POLICY"
    )

    async def given_up() -> bool:
        rows = await ledger_of(stack, EAST, sale)
        return rows == [(-2, "pending")] and await _dead_lettered(stack)

    await stack.until("the sale's job gives up while the source is down", given_up, WITHIN)
    await m.faults(SOURCE, unreachable=False)
    await stack.until(
        "the sale reaches the source once it answers",
        lambda: everywhere(outage_sku, start[outage_sku] - 2),
        WITHIN,
        shown(outage_sku),
    )
    await stack.settle(WITHIN)
    assert await ledger_of(stack, EAST, sale) == [(-2, "applied")]

    # Every level exact at the end.
    expected = dict(start)
    expected[history_sku] -= 1
    expected[checkout_sku] = 0
    expected[outage_sku] -= 2
    levels = await stack.levels()
    assert levels[SOURCE] == expected
    for name in DESTINATIONS:
        # The deposit order is open: its unit stays held where it was sold.
        held = {deposit_sku: 1} if name == NORTH else {}
        assert levels[name] == {
            sku: max(0, level - held.get(sku, 0)) for sku, level in expected.items()
        }


async def _after(instant: float) -> bool:
    return time.monotonic() >= instant


async def _dead_lettered(stack: Stack) -> bool:
    """Whether a job applying sales to the source was given up (its activity log entry)."""
    from stocksync.storage.tables import activity_log

    async with stack.app.db.connect() as conn:
        rows = (
            await conn.execute(
                select(activity_log.c.message).where(activity_log.c.kind == "job_dead_lettered")
            )
        ).all()
    return any("apply_ledger" in str(r[0]) for r in rows)
