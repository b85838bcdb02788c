"""Webhooks as Shopify sends them: topics, headers, signature, payload fields and types,
retries with backoff on the sandbox clock, subscription removal, delivery faults."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from stocksync.sandbox import ManualClock, Sandbox
from stocksync.sandbox.state import Shop
from stocksync.sandbox.webhooks import RETRY_DELAYS
from tests.sandbox.conftest import APP_SECRET, Admin, Receiver, eventually, subscribe
from tests.sandbox.helpers import create_order, location_ids, make_product
from tests.sandbox.test_quantity_states import _cancel, _fulfil, _refund

HEADERS = (
    "x-shopify-topic",
    "x-shopify-hmac-sha256",
    "x-shopify-shop-domain",
    "x-shopify-webhook-id",
    "x-shopify-event-id",
    "x-shopify-triggered-at",
    "x-shopify-api-version",
)
BIG = 2**53

LINE_ITEM_FIELDS = {
    "id": int,
    "admin_graphql_api_id": str,
    "variant_id": int,
    "product_id": int,
    "sku": str,
    "title": str,
    "variant_title": str,
    "name": str,
    "quantity": int,
    "current_quantity": int,
    "fulfillable_quantity": int,
    "fulfillment_status": (str, type(None)),
    "price": str,
    "requires_shipping": bool,
    "taxable": bool,
    "gift_card": bool,
}


def _check(payload: dict[str, Any], spec: dict[str, Any], exact: bool = True) -> None:
    """These fields (exactly these, unless `exact` is false: the full documented structure
    is checked in test_webhook_payloads.py), with these types."""
    if exact:
        assert set(payload) == set(spec), set(payload) ^ set(spec)
    else:
        assert set(spec) <= set(payload), set(spec) - set(payload)
    for key, kind in spec.items():
        assert isinstance(payload[key], kind), (key, payload[key])


async def _setup(admin: Admin, receiver: Receiver, *topics: str) -> tuple[dict[str, Any], str]:
    await subscribe(admin, receiver, *topics)
    loc = (await location_ids(admin))[0]
    variant = (await make_product(admin, "Scarf", ["SCARF-1"], {loc: 10}))[0]
    return variant, loc


async def test_signed_headers_and_inventory_level_payload(
    admin: Admin, receiver: Receiver, shop: Shop
) -> None:
    variant, loc = await _setup(admin, receiver, "INVENTORY_LEVELS_UPDATE")
    await create_order(admin, variant["id"], 2)
    await receiver.wait(lambda items: len(items) == 1)
    hook = receiver.items[-1]
    for name in HEADERS:
        assert hook.headers[name]
    expected = base64.b64encode(
        hmac.new(APP_SECRET.encode(), hook.body, hashlib.sha256).digest()
    ).decode()
    assert hook.headers["x-shopify-hmac-sha256"] == expected
    assert hook.headers["x-shopify-topic"] == "inventory_levels/update"
    assert hook.headers["x-shopify-shop-domain"] == "acme.myshopify.com"
    assert hook.headers["x-shopify-api-version"] == "2025-01"
    payload = hook.json()
    _check(
        payload,
        {
            "inventory_item_id": int,
            "location_id": int,
            "available": int,
            "updated_at": str,
            "admin_graphql_api_id": str,
        },
    )
    assert payload["available"] == 8
    assert payload["inventory_item_id"] > BIG
    assert payload["location_id"] > BIG
    assert f"gid://shopify/Location/{payload['location_id']}" == loc
    assert payload["admin_graphql_api_id"].endswith(
        f"?inventory_item_id={payload['inventory_item_id']}"
    )


async def test_purchase_fires_order_and_level_topics_but_not_products_update(
    admin: Admin, receiver: Receiver
) -> None:
    variant, _ = await _setup(
        admin,
        receiver,
        "PRODUCTS_UPDATE",
        "ORDERS_CREATE",
        "ORDERS_PAID",
        "INVENTORY_LEVELS_UPDATE",
    )
    await receiver.wait(lambda items: len(items) >= 1)  # the variants' creation updated the product
    before = len(receiver.items)
    await create_order(admin, variant["id"], 1)
    await receiver.wait(lambda items: len(items) >= before + 3)
    assert sorted(receiver.topics()[before:]) == [
        "inventory_levels/update",
        "orders/create",
        "orders/paid",
    ]


async def test_order_payloads(admin: Admin, receiver: Receiver) -> None:
    variant, _ = await _setup(
        admin,
        receiver,
        "ORDERS_CREATE",
        "ORDERS_CANCELLED",
        "REFUNDS_CREATE",
        "ORDERS_FULFILLED",
        "ORDERS_EDITED",
        "ORDERS_UPDATED",
    )
    order = await create_order(admin, variant["id"], 3)
    await receiver.wait(lambda items: "orders/create" in [r.topic for r in items])
    created = receiver.of("orders/create")[0].json()
    assert created["financial_status"] == "paid"
    assert created["cancelled_at"] is None
    assert created["id"] > BIG
    assert isinstance(created["id"], int)
    _check(created["line_items"][0], LINE_ITEM_FIELDS, exact=False)
    assert created["line_items"][0]["sku"] == "SCARF-1"
    assert created["line_items"][0]["quantity"] == 3
    await _refund(admin, order, "CANCEL", qty=1)
    await receiver.wait(lambda items: bool([r for r in items if r.topic == "refunds/create"]))
    refund = receiver.of("refunds/create")[0].json()
    assert refund["order_id"] == created["id"]
    line = refund["refund_line_items"][0]
    _check(
        line,
        {
            "id": int,
            "quantity": int,
            "line_item_id": int,
            "location_id": int,
            "restock_type": str,
            "subtotal": float,
            "subtotal_set": dict,
            "total_tax": float,
            "total_tax_set": dict,
            "line_item": dict,
        },
    )
    assert (line["quantity"], line["restock_type"]) == (1, "cancel")
    assert line["line_item_id"] == created["line_items"][0]["id"]
    # A refund's line item is the line without its current quantity (Shopify sends none there).
    assert "current_quantity" not in line["line_item"]
    _check(
        line["line_item"],
        {k: v for k, v in LINE_ITEM_FIELDS.items() if k != "current_quantity"},
        exact=False,
    )
    await _cancel(admin, order["id"], restock=True)
    await receiver.wait(lambda items: bool([r for r in items if r.topic == "orders/cancelled"]))
    cancelled = receiver.of("orders/cancelled")[0].json()
    assert isinstance(cancelled["cancelled_at"], str)
    assert [
        r.json()["refund_line_items"][0]["restock_type"] for r in receiver.of("refunds/create")
    ] == ["cancel", "cancel"]


async def test_orders_edited_payload(admin: Admin, receiver: Receiver) -> None:
    from tests.sandbox.test_quantity_states import EDIT_BEGIN, EDIT_COMMIT, EDIT_SET

    variant, _ = await _setup(admin, receiver, "ORDERS_EDITED")
    order = await create_order(admin, variant["id"], 3)
    calc = (await admin.data(EDIT_BEGIN, {"id": order["id"]}))["orderEditBegin"]["calculatedOrder"]
    line = calc["lineItems"]["nodes"][0]["id"]
    await admin.data(EDIT_SET, {"id": calc["id"], "line": line, "qty": 5, "restock": False})
    await admin.data(EDIT_COMMIT, {"id": calc["id"]})
    await receiver.wait(lambda items: len(items) == 1)
    edit = receiver.items[0].json()["order_edit"]
    assert edit["order_id"] == int(order["id"].rsplit("/", 1)[1])
    assert edit["line_items"]["additions"] == [{"id": int(line.rsplit("/", 1)[1]), "delta": 2}]
    assert edit["line_items"]["removals"] == []


async def test_products_payload(admin: Admin, receiver: Receiver) -> None:
    await subscribe(admin, receiver, "PRODUCTS_CREATE")
    loc = (await location_ids(admin))[0]
    await make_product(admin, "Scarf", ["SCARF-1"], {loc: 10})
    await receiver.wait(lambda items: len(items) == 1)
    product = receiver.items[0].json()
    assert product["id"] > BIG
    assert product["title"] == "Scarf"
    variant = product["variants"][0]
    for key, kind in {
        "id": int,
        "sku": str,
        "inventory_item_id": int,
        "inventory_quantity": int,
        "price": str,
        "product_id": int,
        "admin_graphql_api_id": str,
    }.items():
        assert isinstance(variant[key], kind), key


async def test_retries_follow_the_clock_then_the_subscription_is_removed(
    admin: Admin, receiver: Receiver, sandbox: Sandbox, clock: ManualClock, shop: Shop
) -> None:
    receiver.status = [500] * (len(RETRY_DELAYS) + 1)
    variant, _ = await _setup(admin, receiver, "ORDERS_CREATE")
    await create_order(admin, variant["id"], 1)
    await receiver.wait(lambda items: len(items) == 1)
    for attempt, delay in enumerate(RETRY_DELAYS, start=2):
        await eventually(lambda: clock.pending_sleepers() == 1)
        clock.advance(delay - 1)
        assert len(receiver.items) == attempt - 1
        clock.advance(1)
        await receiver.wait(lambda items, n=attempt: len(items) == n)  # type: ignore[misc]
    ids = {r.headers["x-shopify-webhook-id"] for r in receiver.items}
    assert len(ids) == 1  # the same webhook, retried
    await eventually(lambda: sandbox.webhooks.of_shop(shop) == [])
    assert sandbox.stats_of(shop).subscriptions_removed == 1
    assert sum(RETRY_DELAYS) < 4 * 3600


async def test_a_retry_that_succeeds_keeps_the_subscription(
    admin: Admin, receiver: Receiver, sandbox: Sandbox, clock: ManualClock, shop: Shop
) -> None:
    receiver.status = [503]
    variant, _ = await _setup(admin, receiver, "ORDERS_CREATE")
    await create_order(admin, variant["id"], 1)
    await receiver.wait(lambda items: len(items) == 1)
    await eventually(lambda: clock.pending_sleepers() == 1)
    clock.advance(RETRY_DELAYS[0])
    await receiver.wait(lambda items: len(items) == 2)
    await eventually(lambda: sandbox.stats_of(shop).webhooks_sent == 1)
    assert len(sandbox.webhooks.of_shop(shop)) == 1


async def test_drop_and_duplicate_faults(
    admin: Admin, receiver: Receiver, sandbox: Sandbox, shop: Shop
) -> None:
    variant, _ = await _setup(admin, receiver, "ORDERS_CREATE")
    sandbox.set_faults("acme", webhook_drop={"next": 1})
    await create_order(admin, variant["id"], 1)
    sandbox.set_faults("acme", **{"webhook_duplicate.next": 1})
    second = await create_order(admin, variant["id"], 1)
    await receiver.wait(lambda items: len(items) == 2)
    assert {r.json()["id"] for r in receiver.items} == {int(second["id"].rsplit("/", 1)[1])}
    assert len({r.headers["x-shopify-webhook-id"] for r in receiver.items}) == 1
    stats = sandbox.stats_of(shop)
    await eventually(lambda: stats.webhooks_sent == 2)
    assert (stats.webhooks_dropped, stats.webhooks_duplicated, stats.webhooks_sent) == (1, 1, 2)


async def test_reorder_and_delay_faults(
    admin: Admin, receiver: Receiver, sandbox: Sandbox, clock: ManualClock
) -> None:
    variant, _ = await _setup(admin, receiver, "ORDERS_CREATE")
    sandbox.set_faults("acme", webhook_reorder={"next": 1})
    first = await create_order(admin, variant["id"], 1)
    second = await create_order(admin, variant["id"], 1)
    await receiver.wait(lambda items: len(items) == 1)
    await eventually(lambda: clock.pending_sleepers() == 1)
    clock.advance(2.0)
    await receiver.wait(lambda items: len(items) == 2)
    numbers = [r.json()["name"] for r in receiver.items]
    assert numbers == [second["name"], first["name"]]
    sandbox.set_faults("acme", webhook_delay_s=30)
    await create_order(admin, variant["id"], 1)
    await eventually(lambda: clock.pending_sleepers() == 1)
    assert len(receiver.items) == 2
    clock.advance(30)
    await receiver.wait(lambda items: len(items) == 3)


async def test_subscriptions_query_and_delete(admin: Admin, receiver: Receiver) -> None:
    await subscribe(admin, receiver, "ORDERS_CREATE", "REFUNDS_CREATE")
    dup = await admin.data(
        "mutation($u: URL!) { webhookSubscriptionCreate(topic: ORDERS_CREATE, "
        "webhookSubscription: {callbackUrl: $u}) "
        "{ webhookSubscription { id } userErrors { field message } } }",
        {"u": receiver.url},
    )
    assert (
        dup["webhookSubscriptionCreate"]["userErrors"][0]["message"]
        == "Address for this topic has already been taken"
    )
    listed = await admin.data(
        "{ webhookSubscriptions(first: 10) { nodes { id topic callbackUrl endpoint { "
        "__typename ... on WebhookHttpEndpoint { callbackUrl } } } } }"
    )
    nodes = listed["webhookSubscriptions"]["nodes"]
    assert [n["topic"] for n in nodes] == ["ORDERS_CREATE", "REFUNDS_CREATE"]
    assert nodes[0]["endpoint"] == {
        "__typename": "WebhookHttpEndpoint",
        "callbackUrl": receiver.url,
    }
    deleted = await admin.data(
        "mutation($id: ID!) { webhookSubscriptionDelete(id: $id) { "
        "deletedWebhookSubscriptionId userErrors { message } } }",
        {"id": nodes[0]["id"]},
    )
    assert deleted["webhookSubscriptionDelete"]["deletedWebhookSubscriptionId"] == nodes[0]["id"]
    filtered = await admin.data(
        "{ webhookSubscriptions(first: 10, topics: [ORDERS_CREATE]) { nodes { id } } }"
    )
    assert filtered["webhookSubscriptions"]["nodes"] == []


async def test_privacy_webhooks_go_to_the_configured_url(
    admin: Admin, receiver: Receiver, sandbox: Sandbox, shop: Shop
) -> None:
    sandbox.app.customers_redact_url = receiver.url
    sandbox.app.shop_redact_url = receiver.url
    assert sandbox.send_privacy_webhook(shop, "customers/redact") is True
    assert sandbox.send_privacy_webhook(shop, "customers/data_request") is False  # no URL set
    response = await admin.http.post(
        f"{sandbox.base_url}/_sandbox/shops/acme/privacy", json={"topic": "shop/redact"}
    )
    assert response.json() == {"sent": True}
    await receiver.wait(lambda items: len(items) == 2)
    assert sorted(receiver.topics()) == ["customers/redact", "shop/redact"]
    redact = receiver.of("shop/redact")[0]
    assert redact.json() == {"shop_id": shop.id, "shop_domain": "acme.myshopify.com"}
    assert (
        redact.headers["x-shopify-hmac-sha256"]
        == base64.b64encode(
            hmac.new(APP_SECRET.encode(), redact.body, hashlib.sha256).digest()
        ).decode()
    )


async def test_fulfilment_topics(admin: Admin, receiver: Receiver) -> None:
    variant, _ = await _setup(admin, receiver, "ORDERS_FULFILLED", "FULFILLMENTS_CREATE")
    order = await create_order(admin, variant["id"], 2)
    await _fulfil(admin, order)
    await receiver.wait(lambda items: len(items) == 2)
    assert sorted(receiver.topics()) == ["fulfillments/create", "orders/fulfilled"]
    assert receiver.of("orders/fulfilled")[0].json()["fulfillment_status"] == "fulfilled"
