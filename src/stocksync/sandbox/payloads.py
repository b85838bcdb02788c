"""Webhook bodies in Shopify's REST representation (ids as integers, snake_case fields).

Only fields that Shopify documents for each topic are sent; a field the sandbox has no real
value for is left out rather than invented, so that a client never learns to depend on
something Shopify does not send.
"""

from __future__ import annotations

import base64
import hashlib
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from stocksync.sandbox.ids import gid
from stocksync.sandbox.timefmt import iso_offset

if TYPE_CHECKING:
    from stocksync.sandbox.state import (
        Fulfillment,
        Image,
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
    """locations/create|update|activate|deactivate: the REST Location. The sandbox's shops
    are US shops and their locations have no street address: the country is set, the rest of
    the address is null (as Shopify shows for a location without one)."""
    return {
        "id": loc.id,
        "name": loc.name,
        "address1": None,
        "address2": None,
        "city": None,
        "zip": None,
        "province": None,
        "country": "US",
        "phone": None,
        "created_at": iso_offset(loc.created_at),
        "updated_at": iso_offset(loc.updated_at),
        "country_code": "US",
        "country_name": "United States",
        "province_code": None,
        "legacy": False,
        "active": loc.is_active,
        "admin_graphql_api_id": loc.gid,
        "localized_country_name": "United States",
        "localized_province_name": None,
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


def inventory_item_delete_payload(item: InventoryItem) -> dict[str, Any]:
    """inventory_items/delete: the id and the origin fields (which the sandbox does not keep)."""
    return {
        "id": item.id,
        "country_code_of_origin": None,
        "province_code_of_origin": None,
        "harmonized_system_code": None,
        "country_harmonized_system_codes": [],
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
        "media": [_media(product, image, pos) for pos, image in enumerate(product.images, 1)],
        "variant_gids": [
            {
                "admin_graphql_api_id": shop.variants[v].gid,
                "updated_at": iso_offset(shop.variants[v].updated_at),
            }
            for v in product.variant_ids
        ],
        # The sandbox has no bundles and no product taxonomy.
        "has_variants_that_requires_components": False,
        "category": None,
    }


def _media(product: Product, image: Image, position: int) -> dict[str, Any]:
    """The sandbox's product images are its media (images only, always processed)."""
    return {
        "id": image.id,
        "product_id": product.id,
        "position": position,
        "created_at": iso_offset(product.created_at),
        "updated_at": iso_offset(product.updated_at),
        "alt": image.alt_text,
        "status": "READY",
        "media_content_type": "IMAGE",
        "preview_image": {
            "width": image.width,
            "height": image.height,
            "src": image.url,
            "status": "READY",
        },
        "variant_ids": [],
        "admin_graphql_api_id": gid("MediaImage", image.id),
    }


def money(amount: Decimal) -> str:
    return f"{amount:.2f}"


def money_set(amount: Decimal, currency: str) -> dict[str, Any]:
    """A `*_set` field: the amount in the shop's and the customer's currency (one currency
    on the sandbox, so both are the same)."""
    value = {"amount": money(amount), "currency_code": currency}
    return {"shop_money": dict(value), "presentment_money": dict(value)}


_ZERO = Decimal(0)


def _line_base(shop: Shop, order: Order, line: LineItem) -> dict[str, Any]:
    """The line item keys every payload carries (an order's, a refund's, a fulfilment's)."""
    variant = shop.variants.get(line.variant_id) if line.variant_id is not None else None
    item = shop.items.get(variant.inventory_item_id) if variant is not None else None
    product = shop.products.get(line.product_id) if line.product_id is not None else None
    return {
        "id": line.id,
        "admin_graphql_api_id": line.gid,
        "fulfillable_quantity": max(0, line.unfulfilled),
        "fulfillment_service": "manual",
        "fulfillment_status": (
            "fulfilled"
            if line.fulfilled and line.unfulfilled <= 0
            else "partial"
            if line.fulfilled
            else None
        ),
        "gift_card": False,
        "grams": round(item.weight_value * 1000) if item is not None else 0,
        "name": f"{line.title} - {line.variant_title}" if line.variant_title else line.title,
        "price": money(Decimal(line.price)),
        "price_set": money_set(Decimal(line.price), order.currency),
        "product_exists": product is not None,
        "product_id": line.product_id,
        "properties": [],
        "quantity": line.quantity,
        "requires_shipping": item.requires_shipping if item is not None else True,
        "sku": line.sku,
        "taxable": variant.taxable if variant is not None else True,
        "title": line.title,
        "total_discount": money(_ZERO),
        "total_discount_set": money_set(_ZERO, order.currency),
        "variant_id": line.variant_id,
        # "shopify" when Shopify tracks the variant's inventory, null when it does not.
        "variant_inventory_management": "shopify" if item is not None and item.tracked else None,
        "variant_title": line.variant_title,
        "vendor": (product.vendor or None) if product is not None else None,
        "tax_lines": [],
        "duties": [],
        "discount_allocations": [],
    }


def line_item_payload(shop: Shop, order: Order, line: LineItem) -> dict[str, Any]:
    """An order's line item: the common keys plus its current quantity (ordered units less
    those edited out and refunded)."""
    return {
        **_line_base(shop, order, line),
        "attributed_staffs": [],
        "current_quantity": line.current_quantity,
        "sales_line_item_group_id": None,
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


def _token(order: Order) -> str:
    return hashlib.sha256(f"order-{order.id}".encode()).hexdigest()[:32]


def _totals(order: Order) -> dict[str, Any]:
    """Money fields: totals from the lines as placed and edited, `current_*` from the units
    still on the order, outstanding from what was received less what was refunded. No
    discounts, taxes, shipping, duties or tips exist on the sandbox."""
    cur = order.currency
    total, current = order.total_price, order.current_total_price
    out: dict[str, Any] = {}
    for name, amount in (
        ("current_subtotal_price", current),
        ("current_total_discounts", _ZERO),
        ("current_total_price", current),
        ("current_total_tax", _ZERO),
        ("subtotal_price", total),
        ("total_discounts", _ZERO),
        ("total_line_items_price", total),
        ("total_price", total),
        ("total_tax", _ZERO),
    ):
        out[name] = money(amount)
        out[name + "_set"] = money_set(amount, cur)
    for name in (
        "current_shipping_price_set",
        "total_shipping_price_set",
        "total_cash_rounding_payment_adjustment_set",
        "total_cash_rounding_refund_adjustment_set",
    ):
        out[name] = money_set(_ZERO, cur)
    out["total_outstanding"] = money(order.total_outstanding)
    out["total_tip_received"] = money(_ZERO)
    for name in (
        "current_total_additional_fees_set",
        "current_total_duties_set",
        "original_total_additional_fees_set",
        "original_total_duties_set",
    ):
        out[name] = None
    return out


def order_payload(shop: Shop, order: Order) -> dict[str, Any]:
    """The REST Order. The sandbox's orders have no customer (its key is left out) and no
    addresses (null, as Shopify sends for an order without them); discounts, shipping lines
    and taxes are empty."""
    token = _token(order)
    payload: dict[str, Any] = {
        "id": order.id,
        "admin_graphql_api_id": order.gid,
        "app_id": None,
        "browser_ip": None,
        "buyer_accepts_marketing": False,
        "cancel_reason": order.cancel_reason.lower() if order.cancel_reason else None,
        "cancelled_at": iso_offset(order.cancelled_at) if order.cancelled_at else None,
        "cart_token": None,
        "checkout_id": None,
        "checkout_token": None,
        "client_details": None,
        "closed_at": iso_offset(order.closed_at) if order.closed_at else None,
        "confirmation_number": token[:9].upper(),
        "confirmed": True,
        "contact_email": order.email,
        "created_at": iso_offset(order.created_at),
        "currency": order.currency,
        "customer_locale": None,
        "device_id": None,
        "discount_codes": [],
        "duties_included": False,
        "email": order.email,
        "estimated_taxes": False,
        "financial_status": _FINANCIAL.get(order.financial_status, order.financial_status.lower()),
        "fulfillment_status": _FULFILMENT.get(order.fulfillment_status),
        "landing_site": None,
        "landing_site_ref": None,
        # The point-of-sale location of the sale: none for an online order.
        "location_id": None,
        "merchant_business_entity_id": base64.b64encode(str(shop.id).encode()).decode(),
        "merchant_of_record_app_id": None,
        "name": order.name,
        "note": order.note,
        "note_attributes": [],
        "number": order.number - 1000,
        "order_number": order.number,
        "order_status_url": (
            f"https://{shop.domain}/{shop.id}/orders/{token}/authenticate?key={token[:16]}"
        ),
        "payment_gateway_names": ["manual"] if order.received > 0 else [],
        "phone": None,
        "po_number": None,
        "presentment_currency": order.currency,
        "processed_at": iso_offset(order.created_at),
        "reference": None,
        "referring_site": None,
        "source_identifier": None,
        "source_name": order.source_name,
        "source_url": None,
        "tags": ", ".join(order.tags),
        "tax_exempt": False,
        "tax_lines": [],
        "taxes_included": False,
        "test": order.test,
        "token": token,
        "total_weight": sum(
            _line_base(shop, order, li)["grams"] * li.current_quantity for li in order.line_items
        ),
        "updated_at": iso_offset(order.updated_at),
        "user_id": None,
        "billing_address": None,
        "discount_applications": [],
        "fulfillments": [_fulfillment_body(shop, order, f) for f in order.fulfillments],
        "line_items": [line_item_payload(shop, order, li) for li in order.line_items],
        "payment_terms": None,
        "refunds": [_refund_body(shop, order, r) for r in order.refunds],
        "shipping_address": None,
        "shipping_lines": [],
        "returns": [],
        "line_item_groups": [],
    }
    payload.update(_totals(order))
    return payload


def _fulfillment_body(shop: Shop, order: Order, fulfillment: Fulfillment) -> dict[str, Any]:
    return {
        "id": fulfillment.id,
        "order_id": order.id,
        "status": fulfillment.status.lower(),
        "created_at": iso_offset(fulfillment.created_at),
        "service": "manual",
        "updated_at": iso_offset(fulfillment.created_at),
        "tracking_company": None,
        "shipment_status": None,
        "location_id": fulfillment.location_id,
        "origin_address": None,
        "email": order.email,
        # Where the parcel goes: the order's shipping address, which the sandbox has none of.
        "destination": None,
        "line_items": [
            {**_line_base(shop, order, li), "quantity": qty}
            for _, line_id, qty in fulfillment.lines
            if (li := order.line(line_id)) is not None
        ],
        "tracking_number": None,
        "tracking_numbers": [],
        "tracking_url": None,
        "tracking_urls": [],
        "receipt": {},
        "name": fulfillment.name,
        "admin_graphql_api_id": fulfillment.gid,
    }


def fulfillment_payload(shop: Shop, order: Order, fulfillment: Fulfillment) -> dict[str, Any]:
    return _fulfillment_body(shop, order, fulfillment)


def _refund_body(shop: Shop, order: Order, refund: Refund) -> dict[str, Any]:
    lines = []
    for rl in refund.lines:
        li = order.line(rl.line_item_id)
        assert li is not None
        subtotal = Decimal(rl.subtotal)
        lines.append(
            {
                "id": rl.id,
                "line_item_id": rl.line_item_id,
                # Where the units were restocked: null when they were not.
                "location_id": rl.location_id if rl.restocked else None,
                "quantity": rl.quantity,
                "restock_type": rl.restock_type.lower(),
                "subtotal": float(subtotal),
                "subtotal_set": money_set(subtotal, order.currency),
                "total_tax": 0.0,
                "total_tax_set": money_set(_ZERO, order.currency),
                # The line as it is now; Shopify sends no current_quantity here.
                "line_item": _line_base(shop, order, li),
            }
        )
    return {
        "id": refund.id,
        "order_id": order.id,
        "created_at": iso_offset(refund.created_at),
        "note": refund.note,
        "user_id": None,
        "processed_at": iso_offset(refund.created_at),
        "duties": [],
        "total_duties_set": money_set(_ZERO, order.currency),
        "return": None,
        "restock": any(rl.restocked for rl in refund.lines),
        "additional_fees": [],
        "total_additional_fees_set": money_set(_ZERO, order.currency),
        "refund_shipping_lines": [],
        "admin_graphql_api_id": refund.gid,
        "order_adjustments": [],
        "refund_line_items": lines,
        "transactions": [_refund_transaction(order, refund)] if refund.transaction_id else [],
    }


def _refund_transaction(order: Order, refund: Refund) -> dict[str, Any]:
    """The refund transaction paying `refund.amount` back (the sandbox's payments are manual:
    no gateway, no authorisation, settled at once)."""
    assert refund.transaction_id is not None
    unsettled = {"amount": money(_ZERO), "currency": order.currency}
    return {
        "id": refund.transaction_id,
        "order_id": order.id,
        "kind": "refund",
        "gateway": "manual",
        "status": "success",
        "message": None,
        "created_at": iso_offset(refund.created_at),
        "test": order.test,
        "authorization": None,
        "location_id": None,
        "user_id": None,
        "parent_id": None,
        "processed_at": iso_offset(refund.created_at),
        "device_id": None,
        "error_code": None,
        "source_name": order.source_name,
        "receipt": {},
        "amount": money(refund.amount),
        "currency": order.currency,
        "payment_id": f"{order.name}.{order.refunds.index(refund) + 1}",
        "total_unsettled_set": {
            "presentment_money": dict(unsettled),
            "shop_money": dict(unsettled),
        },
        "manual_payment_gateway": True,
        "amount_rounding": None,
        "admin_graphql_api_id": gid("OrderTransaction", refund.transaction_id),
    }


def refund_payload(shop: Shop, order: Order, refund: Refund) -> dict[str, Any]:
    return _refund_body(shop, order, refund)


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
    """app/uninstalled: the REST Shop. Every sandbox shop is a US shop selling in USD on UTC
    time, with no address of its own; the rest comes from its state."""
    locations = shop.active_locations() or list(shop.locations.values())
    return {
        "id": shop.id,
        "name": shop.name,
        "email": shop.email,
        "domain": shop.domain,
        "province": None,
        "country": "US",
        "address1": None,
        "zip": None,
        "city": None,
        "source": None,
        "phone": None,
        "latitude": None,
        "longitude": None,
        "primary_locale": "en",
        "address2": None,
        "created_at": iso_offset(shop.created_at),
        "updated_at": iso_offset(shop.created_at),
        "country_code": "US",
        "country_name": "United States",
        "currency": "USD",
        "customer_email": None,
        "timezone": "(GMT+00:00) UTC",
        "iana_timezone": "UTC",
        "shop_owner": shop.name,
        "money_format": "${{amount}}",
        "money_with_currency_format": "${{amount}} USD",
        "weight_unit": "kg",
        "province_code": None,
        "taxes_included": False,
        "auto_configure_tax_inclusivity": None,
        "tax_shipping": None,
        "county_taxes": True,
        "plan_display_name": shop.plan.replace("_", " ").title(),
        "plan_name": shop.plan,
        "has_discounts": False,
        "has_gift_cards": False,
        "myshopify_domain": shop.domain,
        "google_apps_domain": None,
        "google_apps_login_enabled": None,
        "money_in_emails_format": "${{amount}}",
        "money_with_currency_in_emails_format": "${{amount}} USD",
        "eligible_for_payments": True,
        "requires_extra_payments_agreement": False,
        "password_enabled": False,
        "has_storefront": True,
        "finances": True,
        "primary_location_id": locations[0].id if locations else None,
        "checkout_api_supported": True,
        "multi_location_enabled": True,
        "setup_required": False,
        "pre_launch_enabled": False,
        "enabled_presentment_currencies": ["USD"],
        "marketing_sms_consent_enabled_at_checkout": False,
        "transactional_sms_disabled": False,
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
