"""Shopify's answers as the domain's values: Admin GraphQL nodes (products, variants, orders,
levels) and the instants Shopify writes, for the adapter, the bulk operations and the webhooks
alike.

* Shopify's instants are ISO-8601 with whole seconds (``2025-01-01T12:00:00-05:00``); the
  engine's version text is fixed-width UTC with microseconds (:func:`format_version`), and a
  level's time is whole epoch seconds (:func:`epoch_seconds`), as level webhooks give it;
* refund line restock types (GraphQL's ``RestockType``, webhooks' ``restock_type``):
  ``return``, ``cancel`` and the older ``legacy_restock`` may restock; ``no_restock`` never
  does. Whether units were restocked is ``RefundLineItem.restocked`` when it is given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from stocksync.domain.orders import parse_instant
from stocksync.domain.orders import version_text as format_version
from stocksync.domain.ports import (
    OrderLine,
    OrderSnapshot,
    Product,
    ProductDraft,
    Refund,
    RefundLine,
    Variant,
)
from stocksync.platforms.shopify.ids import numeric_id

# Restock types that may return units to stock, in lower case (GraphQL writes them in upper).
RESTOCKING_TYPES = frozenset({"return", "cancel", "legacy_restock"})
WEIGHT_UNITS = {
    "kg": "KILOGRAMS",
    "g": "GRAMS",
    "lb": "POUNDS",
    "lbs": "POUNDS",
    "oz": "OUNCES",
}


def normalise_version(text: str) -> str:
    """Any ISO-8601 instant (``Z`` or an offset) as :func:`format_version` writes it."""
    return format_version(parse_instant(text))


def epoch_seconds(value: Any) -> int | None:
    """Shopify's ``updated_at`` (``2025-01-01T12:00:00-05:00``, whole seconds). None when it is
    missing or unreadable: the level is then read instead of trusted, never misordered."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return int(parsed.timestamp())


def available(node: Mapping[str, Any] | None) -> int | None:
    if not node:
        return None  # unknown or deleted item
    level = node.get("inventoryLevel")
    if not level:
        return None  # not stocked at the location
    for quantity in level.get("quantities") or []:
        if quantity.get("name") == "available":
            return int(quantity["quantity"])
    return None


def level_time(node: Mapping[str, Any] | None) -> int | None:
    """When the level last changed (``InventoryLevel.updatedAt``), as its webhooks'
    ``updated_at`` gives it: whole epoch seconds."""
    return epoch_seconds(((node or {}).get("inventoryLevel") or {}).get("updatedAt"))


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def variant_from_node(node: Mapping[str, Any]) -> Variant:
    item = node.get("inventoryItem") or {}
    weight = ((item.get("measurement") or {}).get("weight")) or {}
    weight_value = weight.get("value")
    return Variant(
        id=numeric_id(node["id"], "ProductVariant"),
        item_id=numeric_id(item["id"], "InventoryItem"),
        sku=node.get("sku") or "",
        tracked=bool(item.get("tracked", True)),
        title=node.get("title") or "",
        barcode=node.get("barcode"),
        price=_text(node.get("price")),
        compare_at_price=_text(node.get("compareAtPrice")),
        weight=float(weight_value) if weight_value is not None else None,
        weight_unit=weight.get("unit") if weight_value is not None else None,
        option_values=tuple(str(o["value"]) for o in node.get("selectedOptions") or []),
        continue_selling=node.get("inventoryPolicy") == "CONTINUE",
        product_id=numeric_id(node["product"]["id"], "Product") if node.get("product") else None,
    )


def product_from_node(
    node: Mapping[str, Any], variants: Sequence[Mapping[str, Any]] | None = None
) -> Product:
    variant_nodes = variants if variants is not None else node["variants"]["nodes"]
    images = node.get("images") or {}
    updated = node.get("updatedAt")
    return Product(
        id=numeric_id(node["id"], "Product"),
        title=node.get("title") or "",
        variants=tuple(variant_from_node(v) for v in variant_nodes),
        description=node.get("descriptionHtml") or "",
        vendor=node.get("vendor") or "",
        product_type=node.get("productType") or "",
        tags=tuple(node.get("tags") or ()),
        status=str(node.get("status") or "ACTIVE").lower(),
        images=tuple(str(i["url"]) for i in images.get("nodes") or []),
        options=tuple(str(o["name"]) for o in node.get("options") or []),
        updated_at=parse_instant(updated) if updated else None,
    )


def product_set_input(draft: ProductDraft, status: str) -> dict[str, Any]:
    options = list(draft.options)
    variants_in: list[dict[str, Any]] = []
    if not options:
        # Shopify's products always have an option; a product without one has "Title" with
        # the single value "Default Title".
        options = ["Title"]
    values: dict[str, list[str]] = {name: [] for name in options}
    for variant in draft.variants:
        chosen = list(variant.option_values) or ["Default Title"]
        option_values = []
        for name, value in zip(options, chosen, strict=False):
            if value not in values[name]:
                values[name].append(value)
            option_values.append({"optionName": name, "name": value})
        item: dict[str, Any] = {"sku": variant.sku, "tracked": variant.tracked}
        if variant.weight is not None:
            unit = variant.weight_unit or "KILOGRAMS"
            item["measurement"] = {
                "weight": {"value": variant.weight, "unit": WEIGHT_UNITS.get(unit.lower(), unit)}
            }
        entry: dict[str, Any] = {
            "optionValues": option_values,
            "price": variant.price if variant.price is not None else "0.00",
            "compareAtPrice": variant.compare_at_price,
            "inventoryPolicy": "CONTINUE" if variant.continue_selling else "DENY",
            "inventoryItem": item,
        }
        if variant.barcode is not None:
            entry["barcode"] = variant.barcode
        variants_in.append(entry)
    input_: dict[str, Any] = {
        "title": draft.title,
        "descriptionHtml": draft.description,
        "vendor": draft.vendor,
        "productType": draft.product_type,
        "tags": list(draft.tags),
        "status": status,
        "productOptions": [
            {"name": name, "values": [{"name": v} for v in values[name]]} for name in options
        ],
        "variants": variants_in,
    }
    if draft.images:
        input_["files"] = [{"originalSource": url, "contentType": "IMAGE"} for url in draft.images]
    return input_


def order_from_node(
    node: Mapping[str, Any],
    lines: Sequence[Mapping[str, Any]],
    refunds: Sequence[Mapping[str, Any]],
) -> OrderSnapshot:
    refund_values: list[Refund] = []
    refunded: dict[str, int] = {}
    for refund in refunds:
        refund_id = numeric_id(refund["id"], "Refund")
        refund_lines: list[RefundLine] = []
        for index, rl in enumerate(refund["refundLineItems"]["nodes"]):
            line_id = numeric_id(rl["lineItem"]["id"], "LineItem")
            # B16: restocked only if Shopify says so, whatever the restock type; the type is
            # the fallback of a copy without the flag
            restocked = rl.get("restocked")
            restock = (
                restocked
                if isinstance(restocked, bool)
                else str(rl.get("restockType") or "").lower() in RESTOCKING_TYPES
            )
            location = rl.get("location") or {}
            quantity = int(rl["quantity"])
            refunded[line_id] = refunded.get(line_id, 0) + quantity
            refund_lines.append(
                RefundLine(
                    # the id is only null in suggested refunds; a stable stand-in otherwise
                    id=numeric_id(rl["id"]) if rl.get("id") else f"{refund_id}-{index}",
                    line_id=line_id,
                    quantity=quantity,
                    restock=restock,
                    location_id=(
                        numeric_id(location["id"], "Location")
                        if restock and location.get("id")
                        else None
                    ),
                )
            )
        refund_values.append(Refund(refund_id, tuple(refund_lines)))
    order_lines = []
    for li in lines:
        line_id = numeric_id(li["id"], "LineItem")
        variant = li.get("variant")
        current = li.get("currentQuantity")
        # units ordered after edits = currentQuantity (minus edits and refunds) + refunded
        quantity = (
            int(current) + refunded.get(line_id, 0) if current is not None else int(li["quantity"])
        )
        order_lines.append(
            OrderLine(
                id=line_id,
                variant_id=numeric_id(variant["id"], "ProductVariant") if variant else None,
                sku=li.get("sku") or "",
                quantity=quantity,
            )
        )
    status = node.get("displayFinancialStatus")
    fully_paid = node.get("fullyPaid")
    return OrderSnapshot(
        id=numeric_id(node["id"], "Order"),
        financial_status=str(status).lower() if status else "unknown",
        cancelled=node.get("cancelledAt") is not None,
        version=normalise_version(str(node["updatedAt"])),
        lines=tuple(order_lines),
        refunds=tuple(refund_values),
        created_at=normalise_version(str(node["createdAt"])) if node.get("createdAt") else None,
        paid_in_full=fully_paid if isinstance(fully_paid, bool) else None,
    )
