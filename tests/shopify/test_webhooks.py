"""Webhook parsing and signatures: on the sandbox's own deliveries (checked against what the
client reads for the same objects) and on payloads shaped like Shopify's documentation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import replace

import pytest

from stocksync.domain.events import (
    LevelChanged,
    LocationsChanged,
    OrderEdited,
    OrderSeen,
    ProductChanged,
    ProductDeleted,
    RefundSeen,
)
from stocksync.domain.ports import LevelWrite, OrderLine, OrderSnapshot, Refund, RefundLine
from stocksync.platforms.shopify import WebhookPayloadError, parse_webhook, verify_hmac
from tests.sandbox.conftest import Receiver, subscribe
from tests.sandbox.test_webhook_payloads import load_samples, problems
from tests.shopify.conftest import APP_SECRET, Env
from tests.shopify.helpers import cancel, edit_quantity, number, order, product, refund

TOPICS = (
    "INVENTORY_LEVELS_UPDATE",
    "ORDERS_CREATE",
    "ORDERS_UPDATED",
    "ORDERS_CANCELLED",
    "ORDERS_EDITED",
    "REFUNDS_CREATE",
    "PRODUCTS_CREATE",
    "PRODUCTS_UPDATE",
    "PRODUCTS_DELETE",
)
DELETE = """
mutation($id: ID!) { productDelete(input: {id: $id}) { deletedProductId userErrors { message } } }
"""


async def test_sandbox_deliveries_parse_to_what_the_client_reads(
    env: Env, receiver: Receiver
) -> None:
    await subscribe(env.admin, receiver, *TOPICS)
    platform = env.platform()
    (variant,) = await product(env, "Mug", ["MUG"], stock=10)
    item = number(variant["inventoryItem"]["id"])
    await platform.set_levels([LevelWrite(item, env.warehouse, 8, 10)])
    placed = await order(env, variant["id"], 3)
    line = placed["lineItems"]["nodes"][0]["id"]
    env.time.clock.advance(1)
    await refund(env, placed["id"], line, 1, "CANCEL")
    env.time.clock.advance(1)
    await edit_quantity(env, placed["id"], 0, 1)
    env.time.clock.advance(1)
    await cancel(env, placed["id"], restock=True)
    read = await platform.get_order(number(placed["id"]))  # before its variant is deleted
    product_id = str(env.shop.variants[int(number(variant["id"]))].product_id)
    await env.admin.data(DELETE, {"id": f"gid://shopify/Product/{product_id}"})
    await receiver.wait(
        lambda items: (
            {"products/delete", "orders/cancelled"} <= {r.topic for r in items}
            and len([r for r in items if r.topic == "refunds/create"]) == 2
        )
    )

    for received in receiver.items:
        header = received.headers["x-shopify-hmac-sha256"]
        assert verify_hmac([APP_SECRET], received.body, header)
    events = [(r.topic, parse_webhook(r.topic, r.body)) for r in receiver.items]
    levels = [
        e for t, e in events if t == "inventory_levels/update" and isinstance(e, LevelChanged)
    ]
    assert (item, env.warehouse, 8) in [(e.item_id, e.location_id, e.available) for e in levels]
    assert all(e.changed_at is not None for e in levels)
    assert ("products/create", ProductChanged(product_id)) in events
    assert ("products/delete", ProductDeleted(product_id)) in events
    assert ("orders/edited", OrderEdited(number(placed["id"]))) in events
    refunds = [e for t, e in events if isinstance(e, RefundSeen)]
    assert [(r.order_id, [(x.quantity, x.restock) for x in r.refund.lines]) for r in refunds] == [
        (number(placed["id"]), [(1, True)]),
        (number(placed["id"]), [(1, True)]),
    ]
    # the newest order webhook (deliveries may arrive in any order) is what the client reads
    seen = [e for t, e in events if isinstance(e, OrderSeen)]
    last_order = max(seen, key=lambda e: e.order.version)
    # ... except payment in full, which a refunded order's webhook cannot tell, and whether
    # refund lines were restocked, which it only hints at by their type (its read says both)
    assert read is not None
    assert read.paid_in_full is True
    assert all(rl.restock_confirmed for r in read.refunds for rl in r.lines)
    hinted = tuple(
        replace(r, lines=tuple(replace(rl, restock_confirmed=not rl.restock) for rl in r.lines))
        for r in read.refunds
    )
    assert last_order.order == replace(read, paid_in_full=None, refunds=hinted)
    assert last_order.order.cancelled is True
    assert [ln.quantity for ln in last_order.order.lines] == [2]  # 3 ordered, 1 edited out


# ---------------------------------------------------------------- documented payloads
LEVEL_UPDATE = b"""{
  "inventory_item_id": 9223372036854775001,
  "location_id": 9007199254740993,
  "available": 6,
  "updated_at": "2025-01-01T10:00:00-05:00",
  "admin_graphql_api_id": "gid://shopify/InventoryLevel/9007199254740993?inventory_item_id=9223372036854775001"
}"""

ORDER = b"""{
  "id": 9007199254740995,
  "admin_graphql_api_id": "gid://shopify/Order/9007199254740995",
  "cancelled_at": null,
  "created_at": "2025-03-01T08:00:00-05:00",
  "updated_at": "2025-03-01T08:05:06-05:00",
  "financial_status": "PAID",
  "line_items": [
    {"id": 9007199254740997, "variant_id": 9007199254740999, "sku": "IPOD2008PINK",
     "quantity": 4, "current_quantity": 1, "price": "199.00"},
    {"id": 9007199254741001, "variant_id": null, "sku": null, "quantity": 1,
     "price": "5.00"}
  ],
  "refunds": [
    {"id": 9007199254741003, "order_id": 9007199254740995,
     "refund_line_items": [
       {"id": 9007199254741005, "line_item_id": 9007199254740997, "quantity": 2,
        "location_id": 9007199254740993, "restock_type": "return", "subtotal": 398.0}
     ]}
  ]
}"""

REFUND = b"""{
  "id": 9007199254741007,
  "order_id": 9007199254740995,
  "created_at": "2025-03-02T08:00:00-05:00",
  "restock": false,
  "refund_line_items": [
    {"id": 9007199254741009, "line_item_id": 9007199254740997, "quantity": 1,
     "location_id": null, "restock_type": "no_restock"},
    {"id": 9007199254741011, "line_item_id": 9007199254740997, "quantity": 1,
     "location_id": 9007199254740993, "restock_type": "legacy_restock"}
  ]
}"""


@pytest.mark.parametrize(
    ("topic", "body"),
    [("inventory_levels/update", LEVEL_UPDATE), ("orders/paid", ORDER), ("refunds/create", REFUND)],
)
def test_these_payloads_use_only_documented_keys_and_types(topic: str, body: bytes) -> None:
    """The payloads above are cut down from Shopify's samples (tests/sandbox/webhook_samples):
    fewer keys, but none that Shopify does not send and no value of another type."""
    name, doc = load_samples()[topic]
    found = [p for p in problems(name, doc, json.loads(body)) if not p.startswith("coverage")]
    assert found == []


def test_documented_inventory_level_update() -> None:
    # 2025-01-01T15:00:00Z: the time of the change, whole seconds since the epoch.
    assert parse_webhook("inventory_levels/update", LEVEL_UPDATE) == LevelChanged(
        "9223372036854775001", "9007199254740993", 6, 1_735_743_600
    )
    no_time = LEVEL_UPDATE.replace(b"2025-01-01T10:00:00-05:00", b"yesterday")
    assert parse_webhook("inventory_levels/update", no_time) == LevelChanged(
        "9223372036854775001", "9007199254740993", 6, None
    )
    disconnect = b'{"inventory_item_id": 9223372036854775001, "location_id": 9007199254740993}'
    assert parse_webhook("inventory_levels/disconnect", disconnect) == LevelChanged(
        "9223372036854775001", "9007199254740993", None
    )


@pytest.mark.parametrize("topic", ["orders/create", "orders/paid", "orders/updated"])
def test_documented_order(topic: str) -> None:
    assert parse_webhook(topic, ORDER) == OrderSeen(
        OrderSnapshot(
            id="9007199254740995",
            financial_status="paid",
            cancelled=False,
            version="2025-03-01T13:05:06.000000Z",
            created_at="2025-03-01T13:00:00.000000Z",
            lines=(
                # 4 ordered, 1 edited out, 2 refunded: 1 current + 2 refunded = 3
                OrderLine("9007199254740997", "9007199254740999", "IPOD2008PINK", 3),
                # no current_quantity (older payloads): quantity is all there is
                OrderLine("9007199254741001", None, "", 1),
            ),
            refunds=(
                Refund(
                    "9007199254741003",
                    (
                        # a restocking type: whether restocked, only the order says
                        RefundLine(
                            "9007199254741005",
                            "9007199254740997",
                            2,
                            True,
                            "9007199254740993",
                            restock_confirmed=False,
                        ),
                    ),
                ),
            ),
            paid_in_full=True,  # "paid"
        )
    )


@pytest.mark.parametrize(
    ("status", "outstanding", "expected"),
    [
        ("paid", None, True),
        ("paid", "0.00", True),
        ("paid", "12.50", False),  # a balance owed is never paid in full
        ("partially_paid", "70.00", False),
        ("partially_paid", None, False),
        ("pending", None, False),
        ("authorized", "0.00", False),
        ("voided", "0.00", False),
        # a deposit refunded in part owes its balance: never paid in full
        ("partially_refunded", "70.00", False),
        # money went back and nothing is owed: paid in full once, or a deposit refunded and
        # cancelled; the webhook cannot tell, the order's fullyPaid can
        ("partially_refunded", "0.00", None),
        ("refunded", None, None),
    ],
)
def test_order_webhook_reports_what_it_shows_of_payment_in_full(
    status: str, outstanding: str | None, expected: bool | None
) -> None:
    body = json.loads(ORDER)
    body["financial_status"] = status
    if outstanding is None:
        body.pop("total_outstanding", None)
    else:
        body["total_outstanding"] = outstanding
    event = parse_webhook("orders/updated", json.dumps(body).encode())
    assert isinstance(event, OrderSeen)
    assert event.order.paid_in_full is expected


def test_documented_cancelled_order() -> None:
    body = json.loads(ORDER)
    body["cancelled_at"] = "2025-03-01T08:05:06-05:00"
    body["financial_status"] = "voided"
    event = parse_webhook("orders/cancelled", json.dumps(body).encode())
    assert isinstance(event, OrderSeen)
    assert (event.order.cancelled, event.order.financial_status) == (True, "voided")


def test_documented_refund_and_edit() -> None:
    assert parse_webhook("refunds/create", REFUND) == RefundSeen(
        "9007199254740995",
        Refund(
            "9007199254741007",
            (
                RefundLine("9007199254741009", "9007199254740997", 1, False, None),
                RefundLine(
                    "9007199254741011",
                    "9007199254740997",
                    1,
                    True,
                    "9007199254740993",
                    restock_confirmed=False,
                ),
            ),
        ),
    )
    edited = b'{"order_edit": {"id": 9007199254741013, "order_id": 9007199254740995}}'
    assert parse_webhook("orders/edited", edited) == OrderEdited("9007199254740995")


def test_products() -> None:
    body = b'{"id": 9007199254741015, "title": "IPod Nano - 8GB \xe2\x9c\x93", "variants": []}'
    assert parse_webhook("products/update", body) == ProductChanged("9007199254741015")
    assert parse_webhook("products/create", body) == ProductChanged("9007199254741015")
    assert parse_webhook("products/delete", b'{"id": 9007199254741015}') == ProductDeleted(
        "9007199254741015"
    )


@pytest.mark.parametrize(
    "topic",
    [
        "locations/create",
        "locations/update",
        "locations/activate",
        "locations/deactivate",
        "locations/delete",
    ],
)
def test_locations(topic: str) -> None:
    body = b'{"id": 9007199254740993, "name": "Back room", "active": false}'
    assert parse_webhook(topic, body) == LocationsChanged("9007199254740993")


async def test_sandbox_location_changes_arrive_as_location_events(
    env: Env, receiver: Receiver
) -> None:
    await subscribe(
        env.admin, receiver, "LOCATIONS_UPDATE", "LOCATIONS_DEACTIVATE", "LOCATIONS_DELETE"
    )
    store = env.shop.add_location("Back room")
    env.shop.deactivate_location(store.id)
    env.shop.delete_location(store.id)
    await receiver.wait(lambda items: len(items) == 3)
    events = sorted((r.topic, parse_webhook(r.topic, r.body)) for r in receiver.items)
    assert events == [
        (topic, LocationsChanged(str(store.id)))
        for topic in ("locations/deactivate", "locations/delete", "locations/update")
    ]


def test_other_topics_are_ignored_without_reading_the_body() -> None:
    assert parse_webhook("customers/create", b'{"id": 1}') is None
    assert parse_webhook("carts/update", b"not json at all") is None


@pytest.mark.parametrize(
    ("topic", "body", "fragment"),
    [
        ("orders/create", b"{not json", "not valid JSON"),
        ("orders/create", b"\xff\xfe", "not valid JSON"),
        ("products/update", b"[1, 2]", "not a JSON object"),
        ("products/delete", b"{}", "missing 'id'"),
        ("inventory_levels/update", b'{"inventory_item_id": 1.5, "location_id": 2}', "not an id"),
        (
            "inventory_levels/update",
            b'{"inventory_item_id": 1, "location_id": 2, "available": "6"}',
            "not an integer",
        ),
        (
            "orders/updated",
            b'{"id": 1, "line_items": "x", "updated_at": "2025-01-01T00:00:00Z"}',
            "not a list",
        ),
        ("orders/updated", b'{"id": 1, "line_items": []}', "updated_at"),
        ("orders/edited", b'{"id": 1}', "order_edit"),
    ],
)
def test_malformed_payloads_raise_a_plain_error(topic: str, body: bytes, fragment: str) -> None:
    with pytest.raises(WebhookPayloadError, match=fragment) as raised:
        parse_webhook(topic, body)
    assert isinstance(raised.value, ValueError)
    assert raised.value.args[0].startswith(topic)


def _signature(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def test_hmac_verification() -> None:
    body = ORDER
    header = _signature("s3cret", body)
    assert verify_hmac(["s3cret"], body, header)
    assert verify_hmac(["old-secret", "s3cret"], body, header)  # during a rotation
    assert verify_hmac("s3cret", body, header)  # a bare str is one secret
    assert not verify_hmac(["s3cret"], body.replace(b"PAID", b"paid"), header)  # tampered
    assert not verify_hmac(["wrong"], body, header)
    assert not verify_hmac([], body, header)
    assert not verify_hmac(["s3cret"], body, "")
    assert not verify_hmac(["s3cret"], body, None)
    assert not verify_hmac(["s3cret"], body, "ünïcode")
    assert not verify_hmac([""], body, _signature("", body))  # an empty secret never matches


def test_an_order_payload_says_when_the_order_was_created() -> None:
    """``created_at`` (B15: an order placed before its variant's link never counts), normalised
    to UTC like ``updated_at``; a payload without it reads as not known."""
    event = parse_webhook("orders/paid", ORDER)
    assert isinstance(event, OrderSeen)
    assert event.order.created_at == "2025-03-01T13:00:00.000000Z"
    body = json.loads(ORDER)
    del body["created_at"]
    event = parse_webhook("orders/paid", json.dumps(body).encode())
    assert isinstance(event, OrderSeen)
    assert event.order.created_at is None
