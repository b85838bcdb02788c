"""Merchant-side actions on the sandbox (through its Admin API), for the adapter's tests."""

from __future__ import annotations

from typing import Any

from tests.sandbox.helpers import create_order, make_product
from tests.sandbox.test_quantity_states import (
    EDIT_BEGIN,
    EDIT_COMMIT,
    EDIT_SET,
    REFUND,
    _cancel,
)
from tests.shopify.conftest import Env

SET_BY_MERCHANT = """
mutation($input: InventorySetQuantitiesInput!) {
  inventorySetQuantities(input: $input) { userErrors { code message } }
}"""


def number(gid: str) -> str:
    return gid.rsplit("/", 1)[-1]


async def product(env: Env, title: str, skus: list[str], stock: int = 10) -> list[dict[str, Any]]:
    loc = f"gid://shopify/Location/{env.warehouse}"
    return await make_product(env.admin, title, skus, {loc: stock})


async def merchant_set(env: Env, item: str, location: str, quantity: int) -> None:
    data = await env.admin.data(
        SET_BY_MERCHANT,
        {
            "input": {
                "name": "available",
                "reason": "correction",
                "ignoreCompareQuantity": True,
                "quantities": [
                    {
                        "inventoryItemId": f"gid://shopify/InventoryItem/{item}",
                        "locationId": f"gid://shopify/Location/{location}",
                        "quantity": quantity,
                    }
                ],
            }
        },
    )
    assert data["inventorySetQuantities"]["userErrors"] == []


async def order(env: Env, variant_gid: str, quantity: int, status: str = "PAID") -> dict[str, Any]:
    return await create_order(env.admin, variant_gid, quantity, financial_status=status)


async def refund(env: Env, order_gid: str, line_gid: str, quantity: int, restock: str) -> None:
    item = {"lineItemId": line_gid, "quantity": quantity, "restockType": restock}
    data = await env.admin.data(
        REFUND, {"input": {"orderId": order_gid, "refundLineItems": [item]}}
    )
    assert data["refundCreate"]["userErrors"] == []


async def edit_quantity(env: Env, order_gid: str, line_index: int, quantity: int) -> None:
    begin = await env.admin.data(EDIT_BEGIN, {"id": order_gid})
    calc = begin["orderEditBegin"]["calculatedOrder"]
    line = calc["lineItems"]["nodes"][line_index]
    await env.admin.data(
        EDIT_SET, {"id": calc["id"], "line": line["id"], "qty": quantity, "restock": True}
    )
    commit = await env.admin.data(EDIT_COMMIT, {"id": calc["id"]})
    assert commit["orderEditCommit"]["userErrors"] == []


async def cancel(env: Env, order_gid: str, restock: bool) -> None:
    await _cancel(env.admin, order_gid, restock)
