"""Webhook bodies in Shopify's REST representation (ids as integers, snake_case fields).

Only fields that Shopify documents for each topic are sent; a field the sandbox has no real
value for is left out rather than invented, so that a client never learns to depend on
something Shopify does not send.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stocksync.sandbox.ids import gid
from stocksync.sandbox.timefmt import iso_offset

if TYPE_CHECKING:
    from stocksync.sandbox.state import (
        Fulfillment,
        InventoryItem,
        InventoryLevel,
        LineItem,
        Location,
        Order,
        OrderEdit,
        Product,
        Refund,
        Shop,
        Variant,
    )


def location_payload(loc: Location) -> dict[str, Any]:
    """locations/create|update|activate|deactivate: the REST location, without an address
    (the sandbox has none)."""
    return {
        "id": loc.id,
        "name": loc.name,
        "active": loc.is_active,
        "created_at": iso_offset(loc.created_at),
        "updated_at": iso_offset(loc.updated_at),
        "admin_graphql_api_id": loc.gid,
    }


def inventory_level_payload(level: InventoryLevel) -> dict[str, Any]:
    return {
        "inventory_item_id": level.item_id,
        "location_id": level.location_id,
        "available": level.available,
        "updated_at": iso_offset(level.updated_at),
        "admin_graphql_api_id": level.gid,
    }


def inventory_item_payload(shop: Shop, item: InventoryItem, variant: Variant) -> dict[str, Any]:
    return {
        "id": item.id,
        "sku": variant.sku or "",
        "created_at": iso_offset(item.created_at),
        "updated_at": iso_offset(item.updated_at),
        "requires_shipping": item.requires_shipping,
        "cost": None,
        "country_code_of_origin": None,
        "province_code_of_origin": None,
        "harmonized_system_code": None,
        "tracked": item.tracked,
        "country_harmonized_system_codes": [],
        "admin_graphql_api_id": item.gid,
    }


def variant_payload(shop: Shop, variant: Variant) -> dict[str, Any]:
    options = [value for _, value in variant.option_values] + [None, None, None]
    return {
        "id": variant.id,
        "product_id": variant.product_id,
        "title": variant.title,
        "price": variant.price,
        "position": variant.position,
        "inventory_policy": variant.inventory_policy.lower(),
        "compare_at_price": variant.compare_at_price,
        "option1": options[0] if variant.option_values else "Default Title",
        "option2": options[1],
        "option3": options[2],
        "created_at": iso_offset(variant.created_at),
        "updated_at": iso_offset(variant.updated_at),
        "taxable": variant.taxable,
        "barcode": variant.barcode,
        "sku": variant.sku or "",
        "inventory_item_id": variant.inventory_item_id,
        "inventory_quantity": shop.variant_inventory_quantity(variant),
        "old_inventory_quantity": shop.variant_inventory_quantity(variant),
        "image_id": None,
        "admin_graphql_api_id": variant.gid,
    }


def product_payload(shop: Shop, product: Product) -> dict[str, Any]:
    images: list[dict[str, Any]] = [
        {
            "id": image.id,
            "product_id": product.id,
            "position": pos,
            "created_at": iso_offset(product.created_at),
            "updated_at": iso_offset(product.updated_at),
            "alt": image.alt_text,
            "width": image.width,
            "height": image.height,
            "src": image.url,
            "variant_ids": [],
            "admin_graphql_api_id": image.gid,
        }
        for pos, image in enumerate(product.images, start=1)
    ]
    return {
        "admin_graphql_api_id": product.gid,
        "body_html": product.description_html,
        "created_at": iso_offset(product.created_at),
        "handle": product.handle,
        "id": product.id,
        "product_type": product.product_type,
        "published_at": iso_offset(product.published_at) if product.published_at else None,
        "template_suffix": None,
        "title": product.title,
        "updated_at": iso_offset(product.updated_at),
        "vendor": product.vendor,
        "status": product.status.lower(),
        "published_scope": "global",
        "tags": ", ".join(product.tags),
        "variants": [variant_payload(shop, shop.variants[v]) for v in product.variant_ids],
        "options": [
            {
                "name": opt.name,
                "id": opt.id,
                "product_id": product.id,
                "position": opt.position,
                "values": list(opt.values),
            }
            for opt in product.options
        ],
        "images": images,
        "image": images[0] if images else None,
        "variant_gids": [
            {
                "admin_graphql_api_id": shop.variants[v].gid,
                "updated_at": iso_offset(shop.variants[v].updated_at),
            }
            for v in product.variant_ids
        ],
    }


def line_item_payload(line: LineItem) -> dict[str, Any]:
    return {
        "id": line.id,
        "admin_graphql_api_id": line.gid,
        "variant_id": line.variant_id,
        "product_id": line.product_id,
        "sku": line.sku,
        "title": line.title,
        "variant_title": line.variant_title,
        "name": f"{line.title} - {line.variant_title}" if line.variant_title else line.title,
        "quantity": line.quantity,
        "current_quantity": line.current_quantity,
        "fulfillable_quantity": max(0, line.unfulfilled),
        "fulfillment_status": (
            "fulfilled"
            if line.fulfilled and line.unfulfilled <= 0
            else "partial"
            if line.fulfilled
            else None
        ),
        "price": line.price,
        "requires_shipping": True,
        "taxable": True,
        "gift_card": False,
    }


_FINANCIAL = {
    "PENDING": "pending",
    "AUTHORIZED": "authorized",
    "PARTIALLY_PAID": "partially_paid",
    "PAID": "paid",
    "PARTIALLY_REFUNDED": "partially_refunded",
    "REFUNDED": "refunded",
    "VOIDED": "voided",
    "EXPIRED": "expired",
}
_FULFILMENT = {"FULFILLED": "fulfilled", "PARTIALLY_FULFILLED": "partial", "RESTOCKED": "restocked"}


def order_payload(shop: Shop, order: Order) -> dict[str, Any]:
    total = sum(float(li.price) * li.current_quantity for li in order.line_items)
    return {
        "id": order.id,
        "admin_graphql_api_id": order.gid,
        "name": order.name,
        "order_number": order.number,
        "number": order.number - 1000,
        "email": order.email,
        "created_at": iso_offset(order.created_at),
        "updated_at": iso_offset(order.updated_at),
        "processed_at": iso_offset(order.created_at),
        "cancelled_at": iso_offset(order.cancelled_at) if order.cancelled_at else None,
        "cancel_reason": order.cancel_reason.lower() if order.cancel_reason else None,
        "closed_at": iso_offset(order.closed_at) if order.closed_at else None,
        "financial_status": _FINANCIAL.get(order.financial_status, order.financial_status.lower()),
        "fulfillment_status": _FULFILMENT.get(order.fulfillment_status),
        "currency": order.currency,
        "total_price": f"{total:.2f}",
        "subtotal_price": f"{total:.2f}",
        "test": order.test,
        "tags": ", ".join(order.tags),
        "note": order.note,
        "line_items": [line_item_payload(li) for li in order.line_items],
        "fulfillments": [_fulfillment_body(order, f) for f in order.fulfillments],
        "refunds": [_refund_body(order, r) for r in order.refunds],
    }


def _fulfillment_body(order: Order, fulfillment: Fulfillment) -> dict[str, Any]:
    return {
        "id": fulfillment.id,
        "admin_graphql_api_id": fulfillment.gid,
        "order_id": order.id,
        "name": fulfillment.name,
        "status": fulfillment.status.lower(),
        "created_at": iso_offset(fulfillment.created_at),
        "updated_at": iso_offset(fulfillment.created_at),
        "location_id": fulfillment.location_id,
        "line_items": [
            {**line_item_payload(li), "quantity": qty}
            for _, line_id, qty in fulfillment.lines
            if (li := order.line(line_id)) is not None
        ],
    }


def fulfillment_payload(shop: Shop, order: Order, fulfillment: Fulfillment) -> dict[str, Any]:
    return _fulfillment_body(order, fulfillment)


def _refund_body(order: Order, refund: Refund) -> dict[str, Any]:
    lines = []
    for rl in refund.lines:
        li = order.line(rl.line_item_id)
        assert li is not None
        lines.append(
            {
                "id": rl.id,
                "quantity": rl.quantity,
                "line_item_id": rl.line_item_id,
                "location_id": rl.location_id,
                "restock_type": rl.restock_type.lower(),
                "subtotal": float(rl.subtotal),
                "total_tax": 0.0,
                "line_item": line_item_payload(li),
            }
        )
    return {
        "id": refund.id,
        "admin_graphql_api_id": refund.gid,
        "order_id": order.id,
        "created_at": iso_offset(refund.created_at),
        "processed_at": iso_offset(refund.created_at),
        "note": refund.note,
        "restock": any(rl.restocked for rl in refund.lines),
        "user_id": None,
        "refund_line_items": lines,
        "transactions": [],
        "order_adjustments": [],
    }


def refund_payload(shop: Shop, order: Order, refund: Refund) -> dict[str, Any]:
    return _refund_body(order, refund)


def order_edit_payload(
    shop: Shop,
    order: Order,
    edit: OrderEdit,
    additions: list[dict[str, int]],
    removals: list[dict[str, int]],
) -> dict[str, Any]:
    return {
        "order_edit": {
            "id": edit.id,
            "app_id": None,
            "created_at": iso_offset(edit.created_at),
            "notify_customer": False,
            "order_id": order.id,
            "staff_note": "",
            "user_id": None,
            "line_items": {"additions": additions, "removals": removals},
            "discounts": {"line_item": {"additions": [], "removals": []}},
            "shipping_lines": {"additions": [], "removals": []},
        }
    }


def shop_payload(shop: Shop) -> dict[str, Any]:
    return {
        "id": shop.id,
        "name": shop.name,
        "domain": shop.domain,
        "myshopify_domain": shop.domain,
        "plan_name": shop.plan,
    }


def bulk_finish_payload(
    op_gid: str, status: str, created: float, completed: float | None, error_code: str | None
) -> dict[str, Any]:
    return {
        "admin_graphql_api_id": op_gid,
        "completed_at": iso_offset(completed) if completed else None,
        "created_at": iso_offset(created),
        "error_code": error_code.lower() if error_code else None,
        "status": status.lower(),
        "type": "query",
    }


def product_gid(product_id: int) -> str:
    return gid("Product", product_id)
