"""(available, committed, on_hand) after each order event, as Shopify documents them.

Starting level: 10 available at the Warehouse. Orders of 3 units.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.sandbox.conftest import Admin, eventually
from tests.sandbox.helpers import create_order, location_ids, make_product, triple

FULFIL = """
mutation($fo: ID!) {
  fulfillmentCreate(fulfillment: {lineItemsByFulfillmentOrder: [{fulfillmentOrderId: $fo}]}) {
    fulfillment { id status totalQuantity }
    userErrors { field message }
  }
}"""
CANCEL = """
mutation($id: ID!, $restock: Boolean!) {
  orderCancel(orderId: $id, reason: CUSTOMER, refund: false, restock: $restock) {
    job { id done }
    orderCancelUserErrors { field message code }
  }
}"""
JOB = "query($id: ID!) { job(id: $id) { id done } }"
REFUND = """
mutation($input: RefundInput!) {
  refundCreate(input: $input) {
    refund { id refundLineItems(first: 5) { nodes { quantity restockType restocked location {
      id } } } }
    userErrors { field message }
  }
}"""
MARK_PAID = """
mutation($id: ID!) { orderMarkAsPaid(input: {id: $id}) { order { displayFinancialStatus }
  userErrors { message } } }"""
EDIT_BEGIN = """
mutation($id: ID!) { orderEditBegin(id: $id) {
  calculatedOrder { id lineItems(first: 5) { nodes { id quantity } } } userErrors { message } } }"""
EDIT_SET = """
mutation($id: ID!, $line: ID!, $qty: Int!, $restock: Boolean) {
  orderEditSetQuantity(id: $id, lineItemId: $line, quantity: $qty, restock: $restock) {
    calculatedLineItem { quantity } userErrors { message } } }"""
EDIT_COMMIT = """
mutation($id: ID!) { orderEditCommit(id: $id) { order { id edited } userErrors { message } } }"""
FINANCIAL_STATUS = "query($id: ID!) { order(id: $id) { displayFinancialStatus } }"


async def _setup(admin: Admin) -> tuple[str, str, str]:
    warehouse = (await location_ids(admin))[0]
    variant = (await make_product(admin, "Mug", ["MUG-1"], {warehouse: 10}))[0]
    return variant["id"], variant["inventoryItem"]["id"], warehouse


async def _cancel(admin: Admin, order_id: str, restock: bool) -> None:
    data = await admin.data(CANCEL, {"id": order_id, "restock": restock})
    job = data["orderCancel"]["job"]
    assert job["done"] is False
    done: list[bool] = []

    async def poll() -> bool:
        result = await admin.data(JOB, {"id": job["id"]})
        done.append(result["job"]["done"])
        return bool(done[-1])

    for _ in range(200):
        if await poll():
            break
    assert done[-1] is True


async def _fulfil(admin: Admin, order: dict[str, Any]) -> None:
    fo = order["fulfillmentOrders"]["nodes"][0]["id"]
    data = await admin.data(FULFIL, {"fo": fo})
    assert data["fulfillmentCreate"]["userErrors"] == []


async def _refund(
    admin: Admin,
    order: dict[str, Any],
    restock_type: str,
    qty: int = 3,
    location: str | None = None,
) -> dict[str, Any]:
    line = order["lineItems"]["nodes"][0]["id"]
    item: dict[str, Any] = {"lineItemId": line, "quantity": qty, "restockType": restock_type}
    if location:
        item["locationId"] = location
    data = await admin.data(REFUND, {"input": {"orderId": order["id"], "refundLineItems": [item]}})
    assert data["refundCreate"]["userErrors"] == []
    refund: dict[str, Any] = data["refundCreate"]["refund"]
    return refund


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        ("BYPASS", (10, 0, 10)),
        ("DECREMENT_OBEYING_POLICY", (7, 3, 10)),
        ("DECREMENT_IGNORING_POLICY", (7, 3, 10)),
    ],
)
async def test_order_created(admin: Admin, behaviour: str, expected: tuple[int, int, int]) -> None:
    variant, item, loc = await _setup(admin)
    await create_order(admin, variant, 3, behaviour)
    assert await triple(admin, item, loc) == expected


async def test_default_inventory_behaviour_is_bypass(admin: Admin) -> None:
    variant, item, loc = await _setup(admin)
    data = await admin.data(
        "mutation($o: OrderCreateOrderInput!) { orderCreate(order: $o) { order { id } "
        "userErrors { message } } }",
        {"o": {"lineItems": [{"variantId": variant, "quantity": 3}], "financialStatus": "PAID"}},
    )
    assert data["orderCreate"]["userErrors"] == []
    assert await triple(admin, item, loc) == (10, 0, 10)


async def test_paid_changes_nothing(admin: Admin) -> None:
    variant, item, loc = await _setup(admin)
    order = await create_order(admin, variant, 3, financial_status="PENDING")
    assert order["displayFinancialStatus"] == "PENDING"
    data = await admin.data(MARK_PAID, {"id": order["id"]})
    assert data["orderMarkAsPaid"]["order"]["displayFinancialStatus"] == "PAID"
    assert await triple(admin, item, loc) == (7, 3, 10)


async def test_fulfilled(admin: Admin) -> None:
    variant, item, loc = await _setup(admin)
    order = await create_order(admin, variant, 3)
    await _fulfil(admin, order)
    assert await triple(admin, item, loc) == (7, 0, 7)


async def test_cancelled_with_restock(admin: Admin) -> None:
    variant, item, loc = await _setup(admin)
    order = await create_order(admin, variant, 3)
    await _cancel(admin, order["id"], restock=True)
    assert await triple(admin, item, loc) == (10, 0, 10)
    data = await admin.data(
        "query($id: ID!) { order(id: $id) { cancelledAt displayFulfillmentStatus "
        "refunds { refundLineItems(first: 5) { nodes { quantity restockType restocked } } } } }",
        {"id": order["id"]},
    )
    assert data["order"]["cancelledAt"] is not None
    assert data["order"]["displayFulfillmentStatus"] == "RESTOCKED"
    # Shopify records a restocking cancellation as a refund with restock type `cancel`.
    assert data["order"]["refunds"][0]["refundLineItems"]["nodes"] == [
        {"quantity": 3, "restockType": "CANCEL", "restocked": True}
    ]


async def test_cancelled_without_restock(admin: Admin) -> None:
    variant, item, loc = await _setup(admin)
    order = await create_order(admin, variant, 3)
    await _cancel(admin, order["id"], restock=False)
    assert await triple(admin, item, loc) == (7, 0, 7)


async def test_refund_no_restock(admin: Admin) -> None:
    variant, item, loc = await _setup(admin)
    order = await create_order(admin, variant, 3)
    await _fulfil(admin, order)
    refund = await _refund(admin, order, "NO_RESTOCK")
    assert refund["refundLineItems"]["nodes"][0]["restocked"] is False
    assert await triple(admin, item, loc) == (7, 0, 7)


async def test_refund_cancel_unfulfilled_units(admin: Admin) -> None:
    variant, item, loc = await _setup(admin)
    order = await create_order(admin, variant, 3)
    refund = await _refund(admin, order, "CANCEL", qty=2)
    assert refund["refundLineItems"]["nodes"][0] == {
        "quantity": 2,
        "restockType": "CANCEL",
        "restocked": True,
        "location": {"id": loc},
    }
    assert await triple(admin, item, loc) == (9, 1, 10)


async def test_refund_return_fulfilled_units(admin: Admin) -> None:
    variant, item, loc = await _setup(admin)
    order = await create_order(admin, variant, 3)
    await _fulfil(admin, order)
    await _refund(admin, order, "RETURN", qty=2)
    assert await triple(admin, item, loc) == (9, 0, 9)


async def test_refund_return_at_another_location(admin: Admin) -> None:
    variant, item, loc = await _setup(admin)
    store = (await location_ids(admin))[1]
    await admin.data(
        "mutation($i: ID!, $l: ID!) { inventoryActivate(inventoryItemId: $i, locationId: $l) "
        "{ inventoryLevel { id } userErrors { message } } }",
        {"i": item, "l": store},
    )
    order = await create_order(admin, variant, 3)
    await _fulfil(admin, order)
    await _refund(admin, order, "RETURN", qty=1, location=store)
    assert await triple(admin, item, loc) == (7, 0, 7)
    assert await triple(admin, item, store) == (1, 0, 1)


async def test_refund_return_rejects_unfulfilled_units(admin: Admin) -> None:
    variant, _, _ = await _setup(admin)
    order = await create_order(admin, variant, 3)
    line = order["lineItems"]["nodes"][0]["id"]
    data = await admin.data(
        REFUND,
        {
            "input": {
                "orderId": order["id"],
                "refundLineItems": [{"lineItemId": line, "quantity": 1, "restockType": "RETURN"}],
            }
        },
    )
    assert data["refundCreate"]["userErrors"] == [
        {
            "field": ["refundLineItems", "0", "quantity"],
            "message": "Cannot return more units than were fulfilled.",
        }
    ]


@pytest.mark.parametrize(
    ("new_quantity", "restock", "expected"),
    [(5, False, (5, 5, 10)), (1, True, (9, 1, 10)), (1, False, (7, 1, 8))],
)
async def test_edited(
    admin: Admin, new_quantity: int, restock: bool, expected: tuple[int, int, int]
) -> None:
    variant, item, loc = await _setup(admin)
    order = await create_order(admin, variant, 3)
    begin = await admin.data(EDIT_BEGIN, {"id": order["id"]})
    calc = begin["orderEditBegin"]["calculatedOrder"]
    line = calc["lineItems"]["nodes"][0]
    assert line["quantity"] == 3
    data = await admin.data(
        EDIT_SET, {"id": calc["id"], "line": line["id"], "qty": new_quantity, "restock": restock}
    )
    assert data["orderEditSetQuantity"]["calculatedLineItem"]["quantity"] == new_quantity
    # Nothing changes before the commit.
    assert await triple(admin, item, loc) == (7, 3, 10)
    commit = await admin.data(EDIT_COMMIT, {"id": calc["id"]})
    assert commit["orderEditCommit"]["order"]["edited"] is True
    assert await triple(admin, item, loc) == expected
    # Units added to a paid order leave a balance to pay; units removed do not.
    status = await admin.data(FINANCIAL_STATUS, {"id": order["id"]})
    assert status["order"]["displayFinancialStatus"] == (
        "PARTIALLY_PAID" if new_quantity > 3 else "PAID"
    )


async def test_obeying_policy_refuses_oversell_and_ignoring_allows_it(admin: Admin) -> None:
    variant, item, loc = await _setup(admin)
    from tests.sandbox.helpers import ORDER_CREATE

    data = await admin.data(
        ORDER_CREATE,
        {
            "order": {"lineItems": [{"variantId": variant, "quantity": 11}]},
            "options": {"inventoryBehaviour": "DECREMENT_OBEYING_POLICY"},
        },
    )
    assert data["orderCreate"]["order"] is None
    assert data["orderCreate"]["userErrors"][0]["code"] == "INVENTORY_CLAIM_FAILED"
    await create_order(admin, variant, 11, "DECREMENT_IGNORING_POLICY")
    assert await triple(admin, item, loc) == (-1, 11, 10)


async def test_eventually_helper_times_out() -> None:
    with pytest.raises(AssertionError):
        await eventually(lambda: False, within=0.01)
