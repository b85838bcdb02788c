"""Orders over real HTTP: creation options, statuses, fulfilment orders, backfill queries."""

from __future__ import annotations

from stocksync.sandbox import ManualClock
from stocksync.sandbox.timefmt import iso_z
from tests.sandbox.conftest import Admin
from tests.sandbox.helpers import ORDER_CREATE, create_order, location_ids, make_product
from tests.sandbox.test_quantity_states import FULFIL, MARK_PAID, _refund

ORDER = """
query($id: ID!) { order(id: $id) {
  name displayFinancialStatus displayFulfillmentStatus fullyPaid unpaid canMarkAsPaid closed
  subtotalLineItemsQuantity currentSubtotalLineItemsQuantity totalPriceSet { shopMoney { amount
    currencyCode } }
  lineItems(first: 5) { nodes { sku quantity currentQuantity unfulfilledQuantity
    refundableQuantity variant { id } } }
  fulfillments { name status totalQuantity fulfillmentLineItems(first: 5) { nodes { quantity
    lineItem { sku } } } }
  refunds { refundLineItems(first: 5) { nodes { quantity restockType } } }
} }"""


async def test_financial_statuses(admin: Admin) -> None:
    loc = (await location_ids(admin))[0]
    variant = (await make_product(admin, "Pen", ["PEN-1"], {loc: 50}))[0]
    for status in ("PAID", "PENDING", "AUTHORIZED", "PARTIALLY_PAID"):
        order = await create_order(admin, variant["id"], 1, financial_status=status)
        assert order["displayFinancialStatus"] == status
        data = await admin.data(ORDER, {"id": order["id"]})
        assert data["order"]["canMarkAsPaid"] is (status != "PAID")
    pending = await create_order(admin, variant["id"], 1, financial_status="PENDING")
    paid = await admin.data(MARK_PAID, {"id": pending["id"]})
    assert paid["orderMarkAsPaid"]["order"]["displayFinancialStatus"] == "PAID"
    again = await admin.data(MARK_PAID, {"id": pending["id"]})
    assert again["orderMarkAsPaid"]["userErrors"] == [
        {"message": "Order cannot be marked as paid."}
    ]


async def test_order_with_custom_line_and_partial_fulfilment(admin: Admin) -> None:
    loc = (await location_ids(admin))[0]
    variant = (await make_product(admin, "Pen", ["PEN-1"], {loc: 50}))[0]
    data = await admin.data(
        ORDER_CREATE,
        {
            "order": {
                "lineItems": [
                    {
                        "variantId": variant["id"],
                        "quantity": 4,
                        "priceSet": {"shopMoney": {"amount": "2.50", "currencyCode": "USD"}},
                    },
                    {"title": "Gift wrap", "quantity": 1, "sku": "WRAP"},
                ],
                "financialStatus": "PAID",
            },
            "options": {"inventoryBehaviour": "DECREMENT_OBEYING_POLICY"},
        },
    )
    order = data["orderCreate"]["order"]
    assert order["name"] == "#1001"
    fo = order["fulfillmentOrders"]["nodes"][0]
    assert fo["assignedLocation"]["location"]["id"] == loc
    fo_line = fo["lineItems"]["nodes"][0]
    part = await admin.data(
        "mutation($fo: ID!, $line: ID!) { fulfillmentCreate(fulfillment: "
        "{lineItemsByFulfillmentOrder: "
        "[{fulfillmentOrderId: $fo, fulfillmentOrderLineItems: [{id: $line, quantity: 3}]}]}) "
        "{ fulfillment { totalQuantity } userErrors { message } } }",
        {"fo": fo["id"], "line": fo_line["id"]},
    )
    assert part["fulfillmentCreate"]["fulfillment"]["totalQuantity"] == 3
    state = (await admin.data(ORDER, {"id": order["id"]}))["order"]
    assert state["displayFulfillmentStatus"] == "PARTIALLY_FULFILLED"
    assert state["totalPriceSet"]["shopMoney"] == {"amount": "10.00", "currencyCode": "USD"}
    assert state["lineItems"]["nodes"][0]["unfulfilledQuantity"] == 1
    too_many = await admin.data(
        "mutation($fo: ID!, $line: ID!) { fulfillmentCreate(fulfillment: "
        "{lineItemsByFulfillmentOrder: "
        "[{fulfillmentOrderId: $fo, fulfillmentOrderLineItems: [{id: $line, quantity: 3}]}]}) "
        "{ fulfillment { id } userErrors { message } } }",
        {"fo": fo["id"], "line": fo_line["id"]},
    )
    assert too_many["fulfillmentCreate"]["userErrors"] == [
        {"message": "Invalid quantity 3: 1 remaining."}
    ]
    rest = await admin.data(FULFIL, {"fo": fo["id"]})
    assert rest["fulfillmentCreate"]["fulfillment"]["totalQuantity"] == 2
    state = (await admin.data(ORDER, {"id": order["id"]}))["order"]
    assert state["displayFulfillmentStatus"] == "FULFILLED"
    assert [f["name"] for f in state["fulfillments"]] == ["#1001.1", "#1001.2"]


async def test_refund_updates_quantities_and_status(admin: Admin) -> None:
    loc = (await location_ids(admin))[0]
    variant = (await make_product(admin, "Pen", ["PEN-1"], {loc: 50}))[0]
    order = await create_order(admin, variant["id"], 3)
    await _refund(admin, order, "CANCEL", qty=1)
    state = (await admin.data(ORDER, {"id": order["id"]}))["order"]
    line = state["lineItems"]["nodes"][0]
    assert (line["quantity"], line["currentQuantity"], line["unfulfilledQuantity"]) == (3, 2, 2)
    assert state["displayFinancialStatus"] == "PARTIALLY_REFUNDED"
    assert state["refunds"][0]["refundLineItems"]["nodes"] == [
        {"quantity": 1, "restockType": "CANCEL"}
    ]


async def test_orders_backfill_by_updated_at(admin: Admin, clock: ManualClock) -> None:
    loc = (await location_ids(admin))[0]
    variant = (await make_product(admin, "Pen", ["PEN-1"], {loc: 50}))[0]
    first = await create_order(admin, variant["id"], 1)
    clock.advance(100)
    since = iso_z(clock.now())
    clock.advance(100)
    second = await create_order(admin, variant["id"], 1)
    clock.advance(100)
    await _refund(admin, first, "CANCEL", qty=1)  # updates the first order
    q = "query($q: String!) { orders(first: 10, query: $q, sortKey: UPDATED_AT) { nodes { id } } }"
    data = await admin.data(q, {"q": f"updated_at:>'{since}'"})
    assert [n["id"] for n in data["orders"]["nodes"]] == [second["id"], first["id"]]
    none = await admin.data(q, {"q": f"updated_at:>'{iso_z(clock.now())}'"})
    assert none["orders"]["nodes"] == []
    paid = await admin.data(
        '{ orders(first: 10, query: "financial_status:paid") { nodes { id } } }'
    )
    assert [n["id"] for n in paid["orders"]["nodes"]] == [second["id"]]


async def test_cancel_errors(admin: Admin) -> None:
    data = await admin.data(
        'mutation { orderCancel(orderId: "gid://shopify/Order/1", reason: OTHER, refund: '
        "false, restock: true) "
        "{ job { id } orderCancelUserErrors { code message } } }"
    )
    assert data["orderCancel"]["orderCancelUserErrors"] == [
        {"code": "NOT_FOUND", "message": "Order does not exist"}
    ]


REFUND_MONEY = """
mutation($input: RefundInput!) {
  refundCreate(input: $input) {
    refund { id }
    order { displayFinancialStatus fullyPaid }
    userErrors { field message }
  }
}"""


async def test_a_deposit_refunded_in_money_is_partially_refunded_and_never_fully_paid(
    admin: Admin,
) -> None:
    """A deposit (a sale of part of the total at checkout), then money given back without
    any line: Shopify's "partially refunded" (less refunded than was paid), yet never paid."""
    loc = (await location_ids(admin))[0]
    variant = (await make_product(admin, "Pen", ["PEN-1"], {loc: 50}))[0]
    data = await admin.data(
        ORDER_CREATE,
        {
            "order": {
                "lineItems": [
                    {
                        "variantId": variant["id"],
                        "quantity": 3,
                        "priceSet": {"shopMoney": {"amount": "10.00", "currencyCode": "USD"}},
                    }
                ],
                "financialStatus": "PARTIALLY_PAID",
                "transactions": [
                    {
                        "kind": "SALE",
                        "gateway": "manual",
                        "amountSet": {"shopMoney": {"amount": "5.00", "currencyCode": "USD"}},
                    }
                ],
            },
            "options": {"inventoryBehaviour": "DECREMENT_OBEYING_POLICY"},
        },
    )
    order = data["orderCreate"]["order"]
    assert order["displayFinancialStatus"] == "PARTIALLY_PAID"
    money = {"orderId": order["id"], "kind": "REFUND", "gateway": "manual"}
    too_much = await admin.data(
        REFUND_MONEY,
        {"input": {"orderId": order["id"], "transactions": [{**money, "amount": "6.00"}]}},
    )
    assert too_much["refundCreate"]["refund"] is None
    assert too_much["refundCreate"]["userErrors"]
    refunded = await admin.data(
        REFUND_MONEY,
        {"input": {"orderId": order["id"], "transactions": [{**money, "amount": "2.00"}]}},
    )
    assert refunded["refundCreate"]["userErrors"] == []
    assert refunded["refundCreate"]["order"] == {
        "displayFinancialStatus": "PARTIALLY_REFUNDED",
        "fullyPaid": False,
    }
    nothing = await admin.data(REFUND_MONEY, {"input": {"orderId": order["id"]}})
    assert nothing["refundCreate"]["userErrors"]


def test_a_payment_of_part_of_what_is_owed_leaves_the_order_partially_paid() -> None:
    """A deposit paid further (a capture of part of what is owed): still partially paid and
    not fully paid, ``orders/updated`` only; paying the rest makes it paid, ``orders/paid``."""
    from decimal import Decimal

    from stocksync.sandbox import Sandbox

    shop = Sandbox(clock=ManualClock(), seed=1).create_shop("deposits")
    loc = next(iter(shop.locations))
    product = shop.create_product(
        title="Pen", variants=[{"sku": "PEN", "price": "10.00", "quantities": {loc: 5}}]
    )
    sent: list[str] = []
    shop.emit = lambda topic, payload: sent.append(topic)
    order = shop.create_order(
        lines=[{"variant_id": product.variant_ids[0], "quantity": 2}],
        financial_status="PARTIALLY_PAID",
        received=Decimal("5.00"),
    )
    sent.clear()
    shop.capture_payment(order, Decimal("5.00"))
    assert (order.financial_status, order.fully_paid) == ("PARTIALLY_PAID", False)
    assert order.total_outstanding == Decimal("10.00")
    assert sent == ["orders/updated"]
    shop.capture_payment(order, Decimal("10.00"))
    assert (order.financial_status, order.fully_paid) == ("PAID", True)
    assert sent[1:] == ["orders/paid", "orders/updated"]
