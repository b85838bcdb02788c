"""Every webhook the sandbox sends has the keys and value types of Shopify's documented sample
for its topic (tests/sandbox/webhook_samples/, see the README there).

The sandbox is driven over its HTTP API through one shop's life (catalog, sales, payments,
edits, fulfilments, refunds, cancellations, locations, a bulk query, privacy requests and the
uninstall) and each delivery is compared with the documented key structure:
- coverage: at least 90% of the documented key paths are present;
- nothing invented: no key path outside the documented sample (EXTRA_ALLOWED says why for
  each exception, and is empty today);
- types: every value has the documented type (money as strings, ids as integers, ...).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stocksync.sandbox import ManualClock, Sandbox
from stocksync.sandbox.bulk import RUN_DELAY
from stocksync.sandbox.state import Shop
from tests.sandbox.conftest import Admin, Receiver, eventually, subscribe
from tests.sandbox.helpers import create_order, location_ids, make_product
from tests.sandbox.test_quantity_states import (
    EDIT_BEGIN,
    EDIT_COMMIT,
    EDIT_SET,
    MARK_PAID,
    _cancel,
    _fulfil,
    _refund,
)

SAMPLES = Path(__file__).parent / "webhook_samples"
MIN_COVERAGE = 0.90

# Documented subtrees the sandbox cannot fill because it has no such thing: they are left out
# of the coverage count (and must then be absent from the payload, never faked).
NOT_MODELLED = {
    # orderCreate on the sandbox accepts no customer (see the "Known differences" in
    # stocksync.sandbox). Its addresses, which it has none of either, are sent as null, as
    # Shopify does for an order without them.
    "order": ("customer",),
}
# Key paths the sandbox sends that the documented sample lacks, each with why. Empty: none.
EXTRA_ALLOWED: dict[str, dict[str, str]] = {}

TOPIC_ENUMS = (
    "ORDERS_CREATE",
    "ORDERS_UPDATED",
    "ORDERS_PAID",
    "ORDERS_CANCELLED",
    "ORDERS_FULFILLED",
    "ORDERS_PARTIALLY_FULFILLED",
    "ORDERS_EDITED",
    "REFUNDS_CREATE",
    "FULFILLMENTS_CREATE",
    "INVENTORY_LEVELS_UPDATE",
    "INVENTORY_LEVELS_CONNECT",
    "INVENTORY_ITEMS_CREATE",
    "INVENTORY_ITEMS_DELETE",
    "PRODUCTS_CREATE",
    "PRODUCTS_UPDATE",
    "PRODUCTS_DELETE",
    "LOCATIONS_UPDATE",
    "LOCATIONS_ACTIVATE",
    "LOCATIONS_DEACTIVATE",
    "LOCATIONS_DELETE",
    "BULK_OPERATIONS_FINISH",
    "APP_UNINSTALLED",
)
PRIVACY_TOPICS = ("customers/data_request", "customers/redact", "shop/redact")
FULFIL_ONE = """mutation($fo: ID!, $line: ID!) { fulfillmentCreate(fulfillment: {
  lineItemsByFulfillmentOrder: [{fulfillmentOrderId: $fo,
    fulfillmentOrderLineItems: [{id: $line, quantity: 1}]}]}) {
  fulfillment { id } userErrors { field message } } }"""
RUN_BULK = """mutation($q: String!) { bulkOperationRunQuery(query: $q) {
  bulkOperation { id status } userErrors { field message code } } }"""
ACTIVATE = """mutation($i: ID!, $l: ID!) { inventoryActivate(inventoryItemId: $i, locationId: $l,
  available: 4) { inventoryLevel { id } userErrors { message } } }"""
DELETE_VARIANTS = """mutation($id: ID!, $v: [ID!]!) { productVariantsBulkDelete(productId: $id,
  variantsIds: $v) { product { id } userErrors { code } } }"""
DELETE_PRODUCT = """mutation($id: ID!) { productDelete(input: {id: $id}) { deletedProductId
  userErrors { message } } }"""


# ------------------------------------------------------------------------ structure
def load_samples() -> dict[str, tuple[str, dict[str, Any]]]:
    """topic -> (sample name, sample document)."""
    by_topic: dict[str, tuple[str, dict[str, Any]]] = {}
    for path in sorted(SAMPLES.glob("*.json")):
        doc = json.loads(path.read_text())
        for topic in doc["topics"]:
            by_topic[topic] = (path.stem, doc)
    return by_topic


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def flatten(node: dict[str, Any], prefix: str = "") -> dict[str, list[Any]]:
    """Key path -> every value seen there (list items under `key[]`)."""
    out: dict[str, list[Any]] = {}
    for key, value in node.items():
        path = f"{prefix}{key}"
        out.setdefault(path, []).append(value)
        if isinstance(value, dict):
            for sub, values in flatten(value, path + ".").items():
                out.setdefault(sub, []).extend(values)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    for sub, values in flatten(item, path + "[].").items():
                        out.setdefault(sub, []).extend(values)
    return out


def documented(doc: dict[str, Any]) -> dict[str, str]:
    """The sample's paths plus, for lists the sample shows empty (an order's refunds and
    fulfillments), the paths of the resource they hold, from that resource's own sample."""
    paths: dict[str, str] = dict(doc["paths"])
    for key, item_paths in doc.get("list_items", {}).items():
        paths.update({f"{key}[].{sub}": kind for sub, kind in item_paths.items()})
    return paths


def _covered(path: str, seen: dict[str, list[Any]], kinds: dict[str, str]) -> bool:
    if path in seen:
        return True
    # Under a list the sandbox sends empty, or an object documented as nullable that it sends
    # as null, there is nothing to carry the key: Shopify sends the same for the same state.
    parts = path.split(".")
    for end in range(1, len(parts)):
        parent = ".".join(parts[:end])
        if parent.endswith("[]"):
            values = seen.get(parent[:-2])
            if values is not None and all(v == [] for v in values):
                return True
        elif parent in seen and all(v is None for v in seen[parent]):
            return "null" in kinds.get(parent, "").split("|")
    return False


def problems(name: str, doc: dict[str, Any], payload: dict[str, Any]) -> list[str]:
    """What differs between one delivery and the documented sample (empty when nothing)."""
    kinds = documented(doc)
    seen = flatten(payload)
    skipped = NOT_MODELLED.get(name, ())
    found: list[str] = []
    for root in skipped:
        if root in seen:
            found.append(f"{root}: sent, but listed as not modelled")
    counted = [p for p in doc["paths"] if not any(p == r or p.startswith(r + ".") for r in skipped)]
    missing = [p for p in counted if not _covered(p, seen, kinds)]
    coverage = 1 - len(missing) / len(counted)
    if coverage < MIN_COVERAGE:
        found.append(
            f"coverage {coverage:.0%} < {MIN_COVERAGE:.0%}; {len(missing)} missing: {missing[:12]}"
        )
    allowed = EXTRA_ALLOWED.get(name, {})
    for path, values in seen.items():
        if path not in kinds:
            if path not in allowed:
                found.append(f"{path}: not in the documented sample")
            continue
        wanted = set(kinds[path].split("|"))
        if "number" in wanted:
            wanted.add("integer")
        for value in values:
            if type_name(value) not in wanted:
                found.append(f"{path}: {type_name(value)} {value!r}, documented {kinds[path]}")
                break
    return found


# ------------------------------------------------------------------------- scenario
async def _drive(admin: Admin, sandbox: Sandbox, shop: Shop, clock: ManualClock) -> None:
    """One shop's life over the HTTP API: every topic the sandbox emits fires at least once."""
    warehouse, store = (await location_ids(admin))[:2]
    variants = await make_product(admin, "Scarf", ["SCARF-S", "SCARF-M"], {warehouse: 20})
    variant = variants[0]["id"]
    # Paid at checkout, then fulfilled in two parts, refunded (one returned), cancelled.
    paid = await create_order(admin, variant, 3)
    await _refund(admin, paid, "CANCEL", qty=1)
    # A pending order paid later, edited up (a balance is outstanding), partly fulfilled.
    pending = await create_order(admin, variant, 2, financial_status="PENDING")
    await admin.data(MARK_PAID, {"id": pending["id"]})
    calc = (await admin.data(EDIT_BEGIN, {"id": pending["id"]}))["orderEditBegin"][
        "calculatedOrder"
    ]
    line = calc["lineItems"]["nodes"][0]["id"]
    await admin.data(EDIT_SET, {"id": calc["id"], "line": line, "qty": 4, "restock": False})
    await admin.data(EDIT_COMMIT, {"id": calc["id"]})
    await _fulfil(admin, paid)
    await _refund(admin, paid, "RETURN", qty=1, location=warehouse)
    fo = pending["fulfillmentOrders"]["nodes"][0]
    part = {"fo": fo["id"], "line": fo["lineItems"]["nodes"][0]["id"]}
    shipped = await admin.data(FULFIL_ONE, part)
    assert shipped["fulfillmentCreate"]["userErrors"] == []
    await _cancel(admin, pending["id"], restock=True)
    # Stock connected at a second location; a variant and then the product deleted.
    item = variants[1]["inventoryItem"]["id"]
    activated = await admin.data(ACTIVATE, {"i": item, "l": store})
    assert activated["inventoryActivate"]["userErrors"] == []
    product = await _product_of(admin, variant)
    gone = await admin.data(DELETE_VARIANTS, {"id": product, "v": [variants[1]["id"]]})
    assert gone["productVariantsBulkDelete"]["userErrors"] == []
    # Locations have no Admin API mutation on the sandbox: the merchant's admin does this.
    depot = next(loc for loc in shop.locations.values() if not loc.is_active)
    shop.activate_location(depot.id)
    shop.deactivate_location(depot.id)
    shop.delete_location(depot.id)
    started = await admin.data(RUN_BULK, {"q": "{ products { edges { node { id title } } } }"})
    assert started["bulkOperationRunQuery"]["userErrors"] == []
    await eventually(lambda: clock.pending_sleepers() >= 1)
    clock.advance(RUN_DELAY)


async def _product_of(admin: Admin, variant_id: str) -> str:
    data = await admin.data(
        "query($id: ID!) { productVariant(id: $id) { product { id } } }", {"id": variant_id}
    )
    product_id: str = data["productVariant"]["product"]["id"]
    return product_id


async def _finish(admin: Admin, sandbox: Sandbox, shop: Shop, variant_product: str) -> None:
    deleted = await admin.data(DELETE_PRODUCT, {"id": variant_product})
    assert deleted["productDelete"]["userErrors"] == []
    base = f"{sandbox.base_url}/_sandbox/shops/{shop.name}"
    for topic in PRIVACY_TOPICS:
        response = await admin.http.post(f"{base}/privacy", json={"topic": topic})
        assert response.json() == {"sent": True}
    response = await admin.http.post(f"{base}/uninstall")
    assert response.status_code == 200


# ---------------------------------------------------------------------------- tests
async def test_every_emitted_topic_has_the_documented_keys_and_types(
    admin: Admin, receiver: Receiver, sandbox: Sandbox, shop: Shop, clock: ManualClock
) -> None:
    samples = load_samples()
    await subscribe(admin, receiver, *TOPIC_ENUMS)
    sandbox.app.customers_data_request_url = receiver.url
    sandbox.app.customers_redact_url = receiver.url
    sandbox.app.shop_redact_url = receiver.url
    await _drive(admin, sandbox, shop, clock)
    products = await admin.data("{ products(first: 5) { nodes { id } } }")
    await _finish(admin, sandbox, shop, products["products"]["nodes"][0]["id"])
    expected = {
        topic
        for topic in samples
        if topic not in ("locations/create", "inventory_items/update", "orders/partially_paid")
    }
    await receiver.wait(lambda items: expected <= {r.topic for r in items}, within=10)
    failures: dict[str, list[str]] = {}
    for received in receiver.items:
        name, doc = samples[received.topic]
        found = problems(name, doc, received.json())
        if found:
            failures.setdefault(received.topic, []).extend(found)
    assert failures == {}, json.dumps(
        {topic: sorted(set(found))[:40] for topic, found in failures.items()}, indent=1
    )


def test_the_checker_finds_missing_invented_and_mistyped_keys() -> None:
    """The comparison itself: a payload with a key too many, a wrong type, too few keys."""
    doc = {"topics": [], "paths": {"a": "integer", "b": "string", "c": "array", "c[].d": "string"}}
    assert problems("x", doc, {"a": 1, "b": "s", "c": [{"d": "e"}]}) == []
    assert problems("x", doc, {"a": 1, "b": "s", "c": []}) == []  # empty list: nothing to key
    assert any(
        "not in the documented sample" in p
        for p in problems("x", doc, {"a": 1, "b": "s", "c": [], "z": 0})
    )
    assert any("documented string" in p for p in problems("x", doc, {"a": 1, "b": 2, "c": []}))
    assert any("coverage" in p for p in problems("x", doc, {"a": 1}))


async def test_order_money_adds_up_and_outstanding_follows_payments(
    admin: Admin, receiver: Receiver
) -> None:
    """Totals are the lines' prices times their quantities; outstanding is what is still owed:
    the whole order before payment, nothing once paid, the added units after an edit."""
    await subscribe(admin, receiver, "ORDERS_CREATE", "ORDERS_PAID", "ORDERS_UPDATED")
    loc = (await location_ids(admin))[0]
    variant = (await make_product(admin, "Mug", ["MUG-1"], {loc: 10}))[0]["id"]
    order = await create_order(admin, variant, 2, financial_status="PENDING")
    await admin.data(MARK_PAID, {"id": order["id"]})
    calc = (await admin.data(EDIT_BEGIN, {"id": order["id"]}))["orderEditBegin"]["calculatedOrder"]
    line = calc["lineItems"]["nodes"][0]["id"]
    await admin.data(EDIT_SET, {"id": calc["id"], "line": line, "qty": 3, "restock": False})
    await admin.data(EDIT_COMMIT, {"id": calc["id"]})
    await receiver.wait(lambda items: len([r for r in items if r.topic == "orders/updated"]) >= 2)
    created = receiver.of("orders/create")[0].json()
    paid = receiver.of("orders/paid")[0].json()
    edited = receiver.of("orders/updated")[-1].json()
    assert (created["financial_status"], created["total_outstanding"]) == ("pending", "20.00")
    assert (paid["financial_status"], paid["total_outstanding"]) == ("paid", "0.00")
    assert (edited["financial_status"], edited["total_outstanding"]) == ("partially_paid", "10.00")
    assert edited["current_total_price"] == edited["total_price"] == "30.00"
    assert edited["current_total_price_set"]["shop_money"] == {
        "amount": "30.00",
        "currency_code": "USD",
    }
    (item,) = edited["line_items"]
    assert (item["current_quantity"], item["fulfillable_quantity"]) == (3, 3)
    assert item["variant_inventory_management"] == "shopify"
    assert edited["source_name"] == "web"
    assert edited["created_at"] == created["created_at"]


async def test_a_refund_records_the_money_given_back(admin: Admin, receiver: Receiver) -> None:
    """A refund of paid units carries the refund transaction (its amount is the refunded
    lines' value); a cancellation that restocks without refunding gives no money back."""
    await subscribe(admin, receiver, "REFUNDS_CREATE")
    loc = (await location_ids(admin))[0]
    variant = (await make_product(admin, "Mug", ["MUG-1"], {loc: 10}))[0]["id"]
    order = await create_order(admin, variant, 3)
    await _refund(admin, order, "CANCEL", qty=1)
    await _cancel(admin, order["id"], restock=True)
    await receiver.wait(lambda items: len(items) == 2)
    first, second = sorted((r.json() for r in receiver.items), key=lambda r: r["id"])
    (transaction,) = first["transactions"]
    assert (transaction["kind"], transaction["status"], transaction["amount"]) == (
        "refund",
        "success",
        "10.00",
    )
    assert transaction["order_id"] == first["order_id"]
    assert first["refund_line_items"][0]["location_id"] is not None  # restocked there
    assert second["transactions"] == []  # orderCancel(refund: false): nothing paid back
    assert second["restock"] is True
