"""GraphQL documents and small helpers shared by the sandbox tests."""

from __future__ import annotations

from typing import Any

from tests.sandbox.conftest import Admin

CREATE_PRODUCT = """
mutation($product: ProductCreateInput!) {
  productCreate(product: $product) {
    product { id title variants(first: 5) { nodes { id inventoryItem { id } } } }
    userErrors { field message }
  }
}"""

BULK_CREATE = """
mutation($productId: ID!, $variants: [ProductVariantsBulkInput!]!) {
  productVariantsBulkCreate(productId: $productId, variants: $variants,
                            strategy: REMOVE_STANDALONE_VARIANT) {
    productVariants { id sku inventoryItem { id tracked } }
    userErrors { field message code }
  }
}"""

LEVEL = """
query($item: ID!, $loc: ID!) {
  inventoryItem(id: $item) {
    inventoryLevel(locationId: $loc) {
      id
      quantities(names: ["available", "committed", "on_hand", "incoming", "reserved"]) {
        name quantity
      }
    }
  }
}"""

ORDER_CREATE = """
mutation($order: OrderCreateOrderInput!, $options: OrderCreateOptionsInput) {
  orderCreate(order: $order, options: $options) {
    order {
      id name displayFinancialStatus displayFulfillmentStatus
      lineItems(first: 10) { nodes { id sku quantity currentQuantity unfulfilledQuantity } }
      fulfillmentOrders(first: 5) {
        nodes { id status assignedLocation { location { id } }
                lineItems(first: 10) { nodes { id remainingQuantity totalQuantity lineItem { id
                  } } } }
      }
    }
    userErrors { field message code }
  }
}"""


async def location_ids(admin: Admin) -> list[str]:
    data = await admin.data("{ locations(first: 10, sortKey: ID) { nodes { id } } }")
    return [n["id"] for n in data["locations"]["nodes"]]


async def make_product(
    admin: Admin,
    title: str,
    skus: list[str],
    stock: dict[str, int],
    tracked: bool = True,
    policy: str = "DENY",
) -> list[dict[str, Any]]:
    """A product with one variant per SKU, each with `stock[location_id]` units."""
    created = await admin.data(
        CREATE_PRODUCT,
        {
            "product": {
                "title": title,
                "productOptions": [{"name": "Size", "values": [{"name": s} for s in skus]}],
            }
        },
    )
    product_id = created["productCreate"]["product"]["id"]
    variants = [
        {
            "optionValues": [{"optionName": "Size", "name": sku}],
            "price": "10.00",
            "inventoryPolicy": policy,
            "inventoryItem": {"sku": sku, "tracked": tracked},
            "inventoryQuantities": [
                {"locationId": loc, "availableQuantity": qty} for loc, qty in stock.items()
            ],
        }
        for sku in skus
    ]
    data = await admin.data(BULK_CREATE, {"productId": product_id, "variants": variants})
    assert data["productVariantsBulkCreate"]["userErrors"] == []
    result: list[dict[str, Any]] = data["productVariantsBulkCreate"]["productVariants"]
    return result


async def quantities(admin: Admin, item: str, loc: str) -> dict[str, int]:
    data = await admin.data(LEVEL, {"item": item, "loc": loc})
    level = data["inventoryItem"]["inventoryLevel"]
    return {q["name"]: q["quantity"] for q in level["quantities"]}


async def triple(admin: Admin, item: str, loc: str) -> tuple[int, int, int]:
    q = await quantities(admin, item, loc)
    return q["available"], q["committed"], q["on_hand"]


async def create_order(
    admin: Admin,
    variant_id: str,
    quantity: int,
    behaviour: str = "DECREMENT_OBEYING_POLICY",
    financial_status: str = "PAID",
) -> dict[str, Any]:
    data = await admin.data(
        ORDER_CREATE,
        {
            "order": {
                "lineItems": [{"variantId": variant_id, "quantity": quantity}],
                "financialStatus": financial_status,
                "email": "buyer@example.com",
            },
            "options": {"inventoryBehaviour": behaviour},
        },
    )
    assert data["orderCreate"]["userErrors"] == [], data
    order: dict[str, Any] = data["orderCreate"]["order"]
    return order
