"""What the engine needs from a store's platform, and the typed errors a platform raises.

Adapters (``stocksync.platforms.*``) implement :class:`StorePlatform`; the engine never sees
GraphQL or REST. Identifiers are the platform's own, as strings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

# --- values exchanged with a platform -------------------------------------------------------


@dataclass(frozen=True)
class PlatformLocation:
    id: str
    name: str
    active: bool = True


@dataclass(frozen=True)
class LevelWrite:
    """Set ``item_id`` at ``location_id`` to ``quantity`` if it is still ``compare``.

    ``compare`` is the level stocksync last read or wrote there; ``None`` means unknown (the
    adapter writes without a compare only when the platform offers no other way)."""

    item_id: str
    location_id: str
    quantity: int
    compare: int | None


@dataclass(frozen=True)
class LevelAdjustment:
    """A relative change of one item's level at one location (a sale, a restock)."""

    item_id: str
    location_id: str
    delta: int


class LevelsRead(dict[tuple[str, str], int | None]):
    """Levels read, per (item, location): the available quantity, ``None`` where the item is
    not stocked there. ``updated_at`` gives, where the platform says (Shopify:
    ``InventoryLevel.updatedAt``), when each level last changed, in whole epoch seconds on the
    clock of its level reports: a report older than that is older than what was read."""

    def __init__(
        self,
        levels: Mapping[tuple[str, str], int | None] | None = None,
        updated_at: Mapping[tuple[str, str], int] | None = None,
    ) -> None:
        super().__init__(levels or {})
        self.updated_at: dict[tuple[str, str], int] = dict(updated_at or {})


@dataclass(frozen=True)
class SetOutcome:
    """Result of a batch of :class:`LevelWrite`.

    A batch is atomic: when ``stale`` is not empty, nothing of it was applied and the listed
    items' compare values were out of date."""

    stale: tuple[str, ...] = ()
    # When the platform applied the batch, in whole epoch seconds, if it says (Shopify: the
    # adjustment group's ``createdAt``). The levels' webhooks carry the same clock, so a report
    # older than this is from before our write and must not stand for the level after it.
    changed_at: int | None = None

    @property
    def applied(self) -> bool:
        return not self.stale


@dataclass(frozen=True)
class Variant:
    id: str
    item_id: str
    sku: str
    tracked: bool = True
    title: str = ""
    barcode: str | None = None
    price: str | None = None  # decimal as text: money never passes through a float
    compare_at_price: str | None = None
    weight: float | None = None
    weight_unit: str | None = None
    option_values: tuple[str, ...] = ()
    continue_selling: bool = False  # sell when out of stock
    # The product it belongs to, where a lookup by SKU found it; not part of its identity.
    product_id: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Product:
    id: str
    title: str
    variants: tuple[Variant, ...]
    description: str = ""
    vendor: str = ""
    product_type: str = ""
    tags: tuple[str, ...] = ()
    status: str = "active"
    images: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    updated_at: datetime | None = None


@dataclass(frozen=True)
class OrderLine:
    id: str
    variant_id: str | None
    sku: str
    quantity: int  # units ordered after edits; refunds do not reduce it


@dataclass(frozen=True)
class RefundLine:
    id: str  # the refund line's own id: the natural key of a restock
    line_id: str
    quantity: int
    restock: bool  # the platform says the units were restocked
    location_id: str | None = None
    # False when the platform's copy names a restocking type without saying whether the
    # units were restocked (Shopify's refund webhooks): ``restock`` is then only a hint, and
    # the order's read (``RefundLineItem.restocked``) decides (B16).
    restock_confirmed: bool = True


@dataclass(frozen=True)
class Refund:
    id: str
    lines: tuple[RefundLine, ...]


@dataclass(frozen=True)
class OrderSnapshot:
    """An order as the platform reports it at ``version`` (its last-modified instant)."""

    id: str
    financial_status: str
    cancelled: bool
    version: str  # ISO-8601 instant, comparable as text once normalised to UTC
    lines: tuple[OrderLine, ...]
    refunds: tuple[Refund, ...] = ()
    # When the order was placed (ISO-8601 UTC, normalised like ``version``), or None when the
    # platform does not say. An order placed before its variant's link, or before the store
    # was installed, never counts (B15, B16).
    created_at: str | None = None
    # Whether the platform shows the order paid in full at ``version`` (Shopify's
    # ``Order.fullyPaid``, or no balance outstanding on a paid order): True when it does,
    # False when it shows a balance owed, None when the snapshot cannot tell. The engine
    # remembers a True for good: "paid" means paid in full at some point (B15).
    paid_in_full: bool | None = None


@dataclass(frozen=True)
class ProductDraft:
    """A product to create on a destination at import (B7)."""

    title: str
    variants: tuple[Variant, ...]
    description: str = ""
    vendor: str = ""
    product_type: str = ""
    tags: tuple[str, ...] = ()
    status: str = "active"
    images: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    extra: Mapping[str, str] = field(default_factory=dict)


# --- errors -----------------------------------------------------------------------------------


class PlatformError(Exception):
    """Base of every error a platform adapter raises."""


class TransientPlatformError(PlatformError):
    """Timeouts, 5xx, a lost connection: retrying later may succeed."""


class ThrottledError(TransientPlatformError):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentPlatformError(PlatformError):
    """Retrying the same call cannot succeed (bad input, missing scope)."""


class AuthError(PermanentPlatformError):
    """The store's credentials were refused."""


class NotFoundError(PermanentPlatformError):
    pass


class LocationInactiveError(PermanentPlatformError):
    """A location is deactivated or deleted: reported, never retried in a loop."""

    def __init__(self, message: str, location_id: str) -> None:
        super().__init__(message)
        self.location_id = location_id


class UserErrors(PermanentPlatformError):
    """The platform refused the input; ``codes`` are its own error codes."""

    def __init__(self, message: str, codes: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.codes = tuple(codes)


class IdempotencyConflictError(PermanentPlatformError):
    """An idempotency key was reused with a different input."""


class IdempotencyKeySpentError(TransientPlatformError):
    """The platform recorded an earlier attempt under this idempotency key as failed (nothing
    was applied): the same change must be sent again under a new key."""


# --- the port -----------------------------------------------------------------------------------


@runtime_checkable
class StorePlatform(Protocol):
    """One store on its platform, as the engine sees it."""

    async def list_locations(self) -> list[PlatformLocation]: ...

    async def read_levels(self, item_ids: Sequence[str], location_ids: Sequence[str]) -> LevelsRead:
        """Available quantity per (item, location); ``None`` where the item is not stocked;
        with each level's time of change where the platform gives it."""
        ...

    async def set_levels(self, writes: Sequence[LevelWrite]) -> SetOutcome:
        """Absolute sets with compare-and-swap, in one atomic batch (at most the batch size).

        An item not yet stocked at the location is activated there by the adapter."""
        ...

    async def adjust_level(
        self, item_id: str, location_id: str, delta: int, idempotency_key: str
    ) -> None:
        """Relative change; a retry with the same key and input has no second effect."""
        ...

    async def adjust_levels(self, changes: Sequence[LevelAdjustment], idempotency_key: str) -> None:
        """Relative changes in one atomic call (at most the batch size): all apply or none.
        A retry with the same key and changes has no second effect. A change the platform
        refuses for good raises :class:`PermanentPlatformError` and applies nothing;
        :class:`IdempotencyKeySpentError` asks for the same changes under a new key."""
        ...

    async def list_products(self) -> list[Product]: ...

    async def get_product(self, product_id: str) -> Product | None: ...

    async def find_variants_by_sku(self, skus: Sequence[str]) -> dict[str, list[Variant]]:
        """Existing variants carrying each SKU (lookup before create, so retries never
        duplicate a product)."""
        ...

    async def create_product(self, draft: ProductDraft) -> Product: ...

    async def get_order(self, order_id: str) -> OrderSnapshot | None: ...

    async def orders_changed_since(self, since: str | None) -> list[OrderSnapshot]:
        """Orders (with their refunds) modified after ``since`` (a version), oldest first."""
        ...


@dataclass
class SubscriptionReport:
    """What a check of a store's webhook subscriptions found, and what it did about it."""

    existing: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # found missing and not (yet) created
    failed: dict[str, str] = field(default_factory=dict)  # topic -> why it could not be created

    @property
    def complete(self) -> bool:
        return not self.missing and not self.failed


@runtime_checkable
class WebhookSubscriptions(Protocol):
    """A platform whose webhooks are subscribed by API, and can disappear.

    Shopify deletes an API-created subscription once its deliveries have failed for long
    enough; a store that is no longer told about changes would drift until reconciliation,
    so the engine checks them periodically and on demand."""

    async def ensure_subscriptions(
        self, *, source: bool, destination: bool, callback_url: str, create: bool = True
    ) -> SubscriptionReport:
        """Compare the subscriptions to ``callback_url`` with the topics the roles need;
        create the missing ones unless ``create`` is false."""
        ...
