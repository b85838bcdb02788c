"""Inbound events, normalised: what a platform told us, in the engine's own words.

A platform adapter turns a webhook (or a polled change) into one of these. They carry what
happened and to which identities. A reported stock level is used only with the platform's
time of the change, so that a stale or reordered report is recognised as such (see
``engine/levels_reported.py``); without that time the engine reads the level itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from stocksync.domain.ports import OrderSnapshot, Refund


@dataclass(frozen=True)
class LevelChanged:
    """A store's available quantity of an item changed at a location."""

    item_id: str
    location_id: str
    available: int | None  # what the platform reported
    # When the platform says the level changed (whole seconds since the epoch, the platform's
    # clock). Reports of one level are ordered by it; None when the platform gives no time.
    changed_at: int | None = None


@dataclass(frozen=True)
class OrderSeen:
    """An order was created, paid, updated or cancelled; the snapshot is as of that moment."""

    order: OrderSnapshot


@dataclass(frozen=True)
class OrderEdited:
    """Units of an order's lines were added or removed; the current order must be read."""

    order_id: str


@dataclass(frozen=True)
class RefundSeen:
    """A refund (a restocking cancellation included) was recorded on an order."""

    order_id: str
    refund: Refund


@dataclass(frozen=True)
class ProductChanged:
    product_id: str


@dataclass(frozen=True)
class ProductDeleted:
    product_id: str


@dataclass(frozen=True)
class LocationsChanged:
    """A location was created, activated, deactivated, renamed or deleted: the store's
    locations are read again (a source's shared total, a destination's receiving location)."""

    location_id: str


@dataclass(frozen=True)
class AppUninstalled:
    """The merchant removed the app: connections are suspended, the token erased (B5)."""


@dataclass(frozen=True)
class PrivacyRequest:
    """A mandatory privacy webhook: ``customers/data_request``, ``customers/redact`` or
    ``shop/redact`` (the last erases the store's data)."""

    topic: str


InboundEvent = (
    LevelChanged
    | OrderSeen
    | OrderEdited
    | RefundSeen
    | ProductChanged
    | ProductDeleted
    | LocationsChanged
    | AppUninstalled
    | PrivacyRequest
)
