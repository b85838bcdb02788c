"""Shopify webhooks: signature verification and parsing into the engine's inbound events.

Shopify relies on:

* ``X-Shopify-Hmac-Sha256`` is the base64 HMAC-SHA256 of the *raw* request body keyed with
  the app's client secret; during a secret rotation both secrets may sign, so each
  configured secret is tried; comparison is constant-time;
* bodies are the REST representation: snake_case fields and ids as JSON integers, which
  exceed 2**53 (``json.loads`` keeps them exact; nothing here goes through a float);
* topics used: ``inventory_levels/update`` (``inventory_item_id``, ``location_id``,
  ``available``, ``updated_at``), ``inventory_levels/disconnect``,
  ``orders/create|paid|updated|cancelled`` (a whole order: ``line_items[]`` with ``id``,
  ``variant_id``, ``sku``, ``quantity``, ``current_quantity``; ``financial_status``,
  ``cancelled_at``, ``updated_at``, ``total_outstanding``, ``refunds[]`` with
  ``refund_line_items[]``),
  ``orders/edited`` (``order_edit.order_id``), ``refunds/create`` (a refund with ``order_id``
  and ``refund_line_items[]`` carrying ``restock_type``), ``products/create|update`` and
  ``products/delete`` (``id``), ``locations/create|update|activate|deactivate|delete``
  (``id``).

Ids become decimal text, the same convention as the GraphQL client (see :mod:`.ids`), and
order quantities follow the client's reading: units ordered after edits, refunds not
subtracted, i.e. ``current_quantity`` plus the units refunded on the line.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from stocksync.domain.events import (
    InboundEvent,
    LevelChanged,
    LocationsChanged,
    OrderEdited,
    OrderSeen,
    ProductChanged,
    ProductDeleted,
    RefundSeen,
)
from stocksync.domain.ports import OrderLine, OrderSnapshot, Refund, RefundLine
from stocksync.platforms.shopify.ids import InvalidIdError, numeric_id
from stocksync.platforms.shopify.mapping import RESTOCKING_TYPES, epoch_seconds, normalise_version

ORDER_TOPICS = frozenset({"orders/create", "orders/paid", "orders/updated", "orders/cancelled"})


class WebhookPayloadError(ValueError):
    """A webhook body that cannot be read as its topic's payload."""


def sign(secret: str, raw_body: bytes) -> str:
    """The ``X-Shopify-Hmac-Sha256`` value of ``raw_body`` for ``secret``."""
    digest = hmac.new(secret.encode("utf-8"), raw_body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_hmac(secrets: Sequence[str], raw_body: bytes, header_value: str | None) -> bool:
    """True when ``header_value`` is the signature of ``raw_body`` under one of ``secrets``."""
    if isinstance(secrets, str):  # a lone secret, not a sequence of one-letter secrets
        secrets = [secrets]
    if not header_value:
        return False
    given = header_value.strip().encode("utf-8", errors="replace")
    matched = False
    for secret in secrets:
        if secret:
            # every secret is compared (no early exit), so timing reveals nothing either
            matched |= hmac.compare_digest(sign(secret, raw_body).encode("ascii"), given)
    return matched


def followed(topic: str) -> bool:
    """Whether the engine acts on ``topic`` (others are answered and not stored)."""
    return topic.strip().lower() in _HANDLERS


def parse_webhook(topic: str, body: bytes) -> InboundEvent | None:
    """The event a webhook reports; None for topics the engine does not follow."""
    topic = topic.strip().lower()
    handler = _HANDLERS.get(topic)
    if handler is None:
        return None
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WebhookPayloadError(f"{topic}: the body is not valid JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise WebhookPayloadError(f"{topic}: the body is not a JSON object")
    try:
        return handler(payload)
    except WebhookPayloadError as exc:
        raise WebhookPayloadError(f"{topic}: {exc}") from None
    except (InvalidIdError, KeyError, TypeError, ValueError) as exc:
        raise WebhookPayloadError(f"{topic}: unexpected payload ({exc!r})") from None


# ---------------------------------------------------------------------------- fields
def _id(payload: Mapping[str, Any], key: str) -> str:
    if key not in payload or payload[key] is None:
        raise WebhookPayloadError(f"missing {key!r}")
    return numeric_id(payload[key])


def _optional_id(payload: Mapping[str, Any], key: str) -> str | None:
    value = payload.get(key)
    return None if value is None else numeric_id(value)


def _int(payload: Mapping[str, Any], key: str) -> int:
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise WebhookPayloadError(f"{key!r} is not an integer: {value!r}")
    return value


def _list(payload: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = payload.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise WebhookPayloadError(f"{key!r} is not a list of objects")
    return value


# --------------------------------------------------------------------------- topics
def _level_update(payload: Mapping[str, Any]) -> InboundEvent:
    available = payload.get("available")
    if available is not None and (isinstance(available, bool) or not isinstance(available, int)):
        raise WebhookPayloadError(f"'available' is not an integer: {available!r}")
    return LevelChanged(
        _id(payload, "inventory_item_id"),
        _id(payload, "location_id"),
        available,
        epoch_seconds(payload.get("updated_at")),
    )


def _instant_or_none(value: Any) -> str | None:
    """An ISO-8601 instant as UTC version text, or None when absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        return normalise_version(value)
    except ValueError:
        return None


def _level_disconnect(payload: Mapping[str, Any]) -> InboundEvent:
    return LevelChanged(_id(payload, "inventory_item_id"), _id(payload, "location_id"), None)


def refund_from_payload(payload: Mapping[str, Any]) -> Refund:
    """A refund as its webhook shows it. ``refund_line_items[]`` name a ``restock_type`` but
    not whether the units were restocked (GraphQL's ``RefundLineItem.restocked``): a line of
    a restocking type is only a hint, confirmed by reading the order; ``no_restock`` is final."""
    refund_id = _id(payload, "id")
    lines = []
    for rl in _list(payload, "refund_line_items"):
        restock = str(rl.get("restock_type") or "").lower() in RESTOCKING_TYPES
        lines.append(
            RefundLine(
                id=_id(rl, "id"),
                line_id=_id(rl, "line_item_id"),
                quantity=_int(rl, "quantity"),
                restock=restock,
                location_id=_optional_id(rl, "location_id") if restock else None,
                restock_confirmed=not restock,
            )
        )
    return Refund(refund_id, tuple(lines))


def order_from_payload(payload: Mapping[str, Any]) -> OrderSnapshot:
    refunds = tuple(refund_from_payload(r) for r in _list(payload, "refunds"))
    refunded: dict[str, int] = {}
    for refund in refunds:
        for rl in refund.lines:
            refunded[rl.line_id] = refunded.get(rl.line_id, 0) + rl.quantity
    lines = []
    for li in _list(payload, "line_items"):
        line_id = _id(li, "id")
        # current_quantity (since 2024-01) excludes edited-out and refunded units, like
        # GraphQL's currentQuantity; without it, quantity (units ever ordered) is all we have.
        if li.get("current_quantity") is not None:
            quantity = _int(li, "current_quantity") + refunded.get(line_id, 0)
        else:
            quantity = _int(li, "quantity")
        lines.append(
            OrderLine(
                id=line_id,
                variant_id=_optional_id(li, "variant_id"),
                sku=str(li.get("sku") or ""),
                quantity=quantity,
            )
        )
    updated_at = payload.get("updated_at")
    if not isinstance(updated_at, str):
        raise WebhookPayloadError("missing 'updated_at'")
    created_at = payload.get("created_at")
    return OrderSnapshot(
        id=_id(payload, "id"),
        financial_status=str(payload.get("financial_status") or "unknown").lower(),
        cancelled=payload.get("cancelled_at") is not None,
        version=normalise_version(updated_at),
        lines=tuple(lines),
        refunds=refunds,
        # Unknown (None) rather than refused: the engine then takes the order as placed when
        # first seen, the safe reading (see domain.orders.order_counts_for_link).
        created_at=_instant_or_none(created_at),
        paid_in_full=paid_in_full_from_payload(payload),
    )


_UNPAID_STATUSES = frozenset({"pending", "authorized", "partially_paid", "voided", "expired"})


def _outstanding(payload: Mapping[str, Any]) -> Decimal | None:
    """``total_outstanding`` (a decimal string in the shop's currency), None if absent."""
    value = payload.get("total_outstanding")
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def paid_in_full_from_payload(payload: Mapping[str, Any]) -> bool | None:
    """What an order webhook shows of payment in full: ``paid`` with nothing outstanding is;
    a status before payment in full, or a balance outstanding, is not; a refunded state with
    nothing outstanding cannot tell (a deposit refunded and cancelled owes nothing either),
    so the engine reads the order (``Order.fullyPaid``)."""
    status = str(payload.get("financial_status") or "").strip().lower()
    outstanding = _outstanding(payload)
    if outstanding is not None and outstanding > 0:
        return False
    if status == "paid":
        return True
    if status in _UNPAID_STATUSES:
        return False
    return None


def _order(payload: Mapping[str, Any]) -> InboundEvent:
    return OrderSeen(order_from_payload(payload))


def _order_edited(payload: Mapping[str, Any]) -> InboundEvent:
    edit = payload.get("order_edit")
    if not isinstance(edit, dict):
        raise WebhookPayloadError("missing 'order_edit'")
    return OrderEdited(_id(edit, "order_id"))


def _refund(payload: Mapping[str, Any]) -> InboundEvent:
    return RefundSeen(_id(payload, "order_id"), refund_from_payload(payload))


def _product(payload: Mapping[str, Any]) -> InboundEvent:
    return ProductChanged(_id(payload, "id"))


def _product_delete(payload: Mapping[str, Any]) -> InboundEvent:
    return ProductDeleted(_id(payload, "id"))


def _location(payload: Mapping[str, Any]) -> InboundEvent:
    return LocationsChanged(_id(payload, "id"))


LOCATION_TOPICS = (
    "locations/create",
    "locations/update",
    "locations/activate",
    "locations/deactivate",
    "locations/delete",
)


_HANDLERS = {
    "inventory_levels/update": _level_update,
    "inventory_levels/disconnect": _level_disconnect,
    **{topic: _order for topic in ORDER_TOPICS},
    "orders/edited": _order_edited,
    "refunds/create": _refund,
    "products/create": _product,
    "products/update": _product,
    "products/delete": _product_delete,
    **{topic: _location for topic in LOCATION_TOPICS},
}
