"""The state of one emulated shop: catalog, inventory with Shopify's quantity states, orders.

Every operation here is synchronous: the server runs on one asyncio loop and never awaits
in the middle of a state change, so each GraphQL mutation is applied atomically with respect
to every other request.

Quantity states follow Shopify's documentation:
- `available`: sellable units; `committed`: units in placed, unfulfilled orders;
- `on_hand` = available + committed + unavailable (reserved, damaged, safety stock, quality
  control); `incoming` is kept apart and stays at zero here.
- An order that claims inventory moves units from available to committed; a fulfilment
  removes them from committed (and so from on_hand); a restocking cancellation or refund of
  unfulfilled units moves them back to available; a returned (fulfilled) unit that is
  restocked goes back to available and on_hand; an unfulfilled unit cancelled without
  restock leaves committed and on_hand (it is written off, not made sellable again).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from stocksync.sandbox.ids import IdGenerator, gid, level_gid

# Reasons documented for inventory adjustments (the `reason` argument).
INVENTORY_REASONS = frozenset(
    {
        "correction",
        "cycle_count_available",
        "damaged",
        "movement_created",
        "movement_updated",
        "movement_received",
        "movement_canceled",
        "other",
        "promotion",
        "quality_control",
        "received",
        "reservation_created",
        "reservation_deleted",
        "reservation_updated",
        "restock",
        "safety_stock",
        "shrinkage",
    }
)
QUANTITY_NAMES = (
    "available",
    "committed",
    "damaged",
    "incoming",
    "on_hand",
    "quality_control",
    "reserved",
    "safety_stock",
)

EventSink = Callable[[str, dict[str, Any]], None]


class ShopError(Exception):
    """A user error: reported in the mutation's `userErrors`, never as a crash."""

    def __init__(self, message: str, code: str | None = None, field: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.field = field


@dataclass
class Location:
    id: int
    name: str
    created_at: float
    updated_at: float
    is_active: bool = True
    deactivated_at: float | None = None
    fulfills_online_orders: bool = True

    @property
    def gid(self) -> str:
        return gid("Location", self.id)


@dataclass
class Image:
    id: int
    url: str
    alt_text: str | None = None
    width: int | None = 800
    height: int | None = 800

    @property
    def gid(self) -> str:
        return gid("ProductImage", self.id)


@dataclass
class InventoryItem:
    id: int
    variant_id: int
    created_at: float
    updated_at: float
    tracked: bool = True
    requires_shipping: bool = True
    weight_value: float = 0.0
    weight_unit: str = "KILOGRAMS"

    @property
    def gid(self) -> str:
        return gid("InventoryItem", self.id)


@dataclass
class InventoryLevel:
    id: int
    item_id: int
    location_id: int
    created_at: float
    updated_at: float
    available: int = 0
    committed: int = 0
    reserved: int = 0
    damaged: int = 0
    safety_stock: int = 0
    quality_control: int = 0
    incoming: int = 0
    active: bool = True

    @property
    def gid(self) -> str:
        return level_gid(self.id, self.item_id)

    @property
    def unavailable(self) -> int:
        return self.reserved + self.damaged + self.safety_stock + self.quality_control

    @property
    def on_hand(self) -> int:
        return self.available + self.committed + self.unavailable

    def quantity(self, name: str) -> int:
        if name == "on_hand":
            return self.on_hand
        return int(getattr(self, name))


@dataclass
class Variant:
    id: int
    product_id: int
    inventory_item_id: int
    created_at: float
    updated_at: float
    sku: str | None = None
    barcode: str | None = None
    price: str = "0.00"
    compare_at_price: str | None = None
    position: int = 1
    inventory_policy: str = "DENY"
    taxable: bool = True
    option_values: list[tuple[str, str]] = field(default_factory=list)

    @property
    def gid(self) -> str:
        return gid("ProductVariant", self.id)

    @property
    def title(self) -> str:
        values = [value for _, value in self.option_values]
        return " / ".join(values) if values else "Default Title"


@dataclass
class ProductOption:
    id: int
    name: str
    position: int
    values: list[str]

    @property
    def gid(self) -> str:
        return gid("ProductOption", self.id)


@dataclass
class Product:
    id: int
    title: str
    handle: str
    created_at: float
    updated_at: float
    description_html: str = ""
    vendor: str = ""
    product_type: str = ""
    status: str = "ACTIVE"
    tags: list[str] = field(default_factory=list)
    options: list[ProductOption] = field(default_factory=list)
    variant_ids: list[int] = field(default_factory=list)
    images: list[Image] = field(default_factory=list)
    published_at: float | None = None
    publication_ids: set[int] = field(default_factory=set)

    @property
    def gid(self) -> str:
        return gid("Product", self.id)


@dataclass
class LineItem:
    id: int
    order_id: int
    variant_id: int | None
    product_id: int | None
    sku: str | None
    title: str
    variant_title: str | None
    quantity: int
    price: str
    location_id: int | None = None
    # Units removed by an order edit, refunded before fulfilment, and returned after it.
    removed: int = 0
    refunded_unfulfilled: int = 0
    returned: int = 0
    fulfilled: int = 0
    # Units still committed at `location_id` for this line (claimed, not shipped or released).
    claimed: int = 0

    @property
    def gid(self) -> str:
        return gid("LineItem", self.id)

    @property
    def current_quantity(self) -> int:
        return self.quantity - self.removed - self.refunded_unfulfilled - self.returned

    @property
    def unfulfilled(self) -> int:
        return self.quantity - self.removed - self.refunded_unfulfilled - self.fulfilled

    @property
    def refundable_fulfilled(self) -> int:
        return self.fulfilled - self.returned


@dataclass
class FulfillmentOrderLine:
    id: int
    line_item_id: int
    total_quantity: int
    remaining_quantity: int

    @property
    def gid(self) -> str:
        return gid("FulfillmentOrderLineItem", self.id)


@dataclass
class FulfillmentOrder:
    id: int
    order_id: int
    location_id: int | None
    created_at: float
    updated_at: float
    status: str = "OPEN"
    lines: list[FulfillmentOrderLine] = field(default_factory=list)

    @property
    def gid(self) -> str:
        return gid("FulfillmentOrder", self.id)


@dataclass
class Fulfillment:
    id: int
    order_id: int
    location_id: int | None
    created_at: float
    name: str
    lines: list[tuple[int, int, int]] = field(default_factory=list)  # (id, line_item_id, qty)
    status: str = "SUCCESS"

    @property
    def gid(self) -> str:
        return gid("Fulfillment", self.id)


@dataclass
class RefundLine:
    id: int
    line_item_id: int
    quantity: int
    restock_type: str  # RETURN / CANCEL / NO_RESTOCK / LEGACY_RESTOCK
    location_id: int | None
    restocked: bool
    subtotal: str

    @property
    def gid(self) -> str:
        return gid("RefundLineItem", self.id)


@dataclass
class Refund:
    id: int
    order_id: int
    created_at: float
    note: str | None
    lines: list[RefundLine]
    # Money given back to the customer, and the refund transaction that did it (None when
    # nothing was paid back: an unpaid order, or a cancellation without refund).
    amount: Decimal = Decimal("0.00")
    transaction_id: int | None = None

    @property
    def gid(self) -> str:
        return gid("Refund", self.id)


@dataclass
class OrderEdit:
    id: int
    order_id: int
    created_at: float
    # line item id -> new current quantity; restock flag for removals
    quantities: dict[int, int] = field(default_factory=dict)
    restock: dict[int, bool] = field(default_factory=dict)
    committed: bool = False

    @property
    def gid(self) -> str:
        return gid("CalculatedOrder", self.id)


@dataclass
class Order:
    id: int
    number: int
    created_at: float
    updated_at: float
    financial_status: str
    inventory_behaviour: str
    line_items: list[LineItem]
    currency: str = "USD"
    email: str | None = None
    test: bool = False
    cancelled_at: float | None = None
    cancel_reason: str | None = None
    closed_at: float | None = None
    edited: bool = False
    fulfillment_orders: list[FulfillmentOrder] = field(default_factory=list)
    fulfillments: list[Fulfillment] = field(default_factory=list)
    refunds: list[Refund] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    note: str | None = None
    # Money the customer has paid (before refunds): what `total_outstanding` is measured against.
    received: Decimal = Decimal("0.00")
    # The sandbox's orders stand for online-store checkouts.
    source_name: str = "web"
    # Order.fullyPaid: paid in full with nothing outstanding. Units added by an edit owe
    # their price until paid; refunds return money without making a balance owed.
    fully_paid: bool = False

    @property
    def gid(self) -> str:
        return gid("Order", self.id)

    @property
    def total_price(self) -> Decimal:
        """The order's lines as placed and edited (no discounts, taxes or shipping here)."""
        return sum(
            (Decimal(li.price) * (li.quantity - li.removed) for li in self.line_items), Decimal(0)
        )

    @property
    def current_total_price(self) -> Decimal:
        """What the customer owes for the units still on the order (after edits and refunds)."""
        return sum((Decimal(li.price) * li.current_quantity for li in self.line_items), Decimal(0))

    @property
    def refunded_amount(self) -> Decimal:
        """Money given back by the order's refunds."""
        return sum((refund.amount for refund in self.refunds), Decimal(0))

    @property
    def total_outstanding(self) -> Decimal:
        return max(Decimal(0), self.current_total_price - (self.received - self.refunded_amount))

    @property
    def name(self) -> str:
        return f"#{self.number}"

    @property
    def fulfillment_status(self) -> str:
        if self.cancelled_at is not None and all(li.fulfilled == 0 for li in self.line_items):
            restocked = any(line.restocked for refund in self.refunds for line in refund.lines)
            if restocked:
                return "RESTOCKED"
        open_units = sum(max(0, li.unfulfilled) for li in self.line_items)
        shipped = sum(li.fulfilled for li in self.line_items)
        if open_units == 0 and shipped > 0:
            return "FULFILLED"
        if shipped > 0:
            return "PARTIALLY_FULFILLED"
        return "UNFULFILLED"

    def line(self, line_item_id: int) -> LineItem | None:
        return next((li for li in self.line_items if li.id == line_item_id), None)


@dataclass
class AdjustmentChange:
    name: str
    delta: int
    quantity_after_change: int | None
    item_id: int
    location_id: int
    ledger_document_uri: str | None = None


@dataclass
class AdjustmentGroup:
    id: int
    created_at: float
    reason: str
    reference_document_uri: str | None
    changes: list[AdjustmentChange]

    @property
    def gid(self) -> str:
        return gid("InventoryAdjustmentGroup", self.id)


@dataclass
class Job:
    id: int
    done: bool = False

    @property
    def gid(self) -> str:
        return gid("Job", self.id)


@dataclass
class Publication:
    id: int
    name: str

    @property
    def gid(self) -> str:
        return gid("Publication", self.id)


def _handleize(title: str) -> str:
    out = "".join(c.lower() if c.isalnum() else "-" for c in title)
    while "--" in out:
        out = out.replace("--", "-")
    return out.strip("-") or "product"


class Shop:
    """One emulated shop. `emit` is called with (topic, REST-style payload) for each event."""

    def __init__(
        self,
        name: str,
        *,
        ids: IdGenerator,
        now: Callable[[], float],
        access_token: str | None = None,
        plan: str = "standard",
        location_names: list[str] | None = None,
    ) -> None:
        self.name = name
        self.domain = f"{name}.myshopify.com"
        self.ids = ids
        self.now = now
        self.plan = plan
        self.access_tokens: dict[str, str] = {}  # token -> granted scopes
        self.access_token = access_token or f"shpat_{secrets.token_hex(16)}"
        self.access_tokens[self.access_token] = "read_all,write_all"
        self.id = ids()
        self.created_at = now()
        self.email = f"owner@{name}.example.com"
        self.emit: EventSink = lambda topic, payload: None
        self.locations: dict[int, Location] = {}
        self.products: dict[int, Product] = {}
        self.variants: dict[int, Variant] = {}
        self.items: dict[int, InventoryItem] = {}
        self.levels: dict[tuple[int, int], InventoryLevel] = {}
        self.orders: dict[int, Order] = {}
        self.edits: dict[int, OrderEdit] = {}
        self.jobs: dict[int, Job] = {}
        self.adjustment_groups: dict[int, AdjustmentGroup] = {}
        self.idempotency: dict[tuple[str, str], tuple[str, Any]] = {}
        # (mutation, key) whose attempt failed: a later request under it is refused with
        # IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED ("retry with a new idempotency key")
        self.failed_idempotency: set[tuple[str, str]] = set()
        self.next_order_number = 1001
        self.publications = [
            Publication(ids(), "Online Store"),
            Publication(ids(), "Point of Sale"),
        ]
        for loc_name in location_names or ["Warehouse"]:
            self.add_location(loc_name)

    # ----------------------------------------------------------------- locations
    def add_location(self, name: str, active: bool = True) -> Location:
        t = self.now()
        loc = Location(self.ids(), name, t, t)
        self.locations[loc.id] = loc
        if not active:
            self.deactivate_location(loc.id)
        return loc

    def deactivate_location(self, location_id: int) -> None:
        loc = self.locations[location_id]
        loc.is_active = False
        loc.deactivated_at = loc.updated_at = self.now()
        self._emit_location("locations/deactivate", loc)
        self._emit_location("locations/update", loc)

    def activate_location(self, location_id: int) -> None:
        loc = self.locations[location_id]
        loc.is_active = True
        loc.deactivated_at = None
        loc.updated_at = self.now()
        self._emit_location("locations/activate", loc)
        self._emit_location("locations/update", loc)

    def delete_location(self, location_id: int) -> None:
        """Shopify deletes only a deactivated location; its inventory levels go with it."""
        loc = self.locations[location_id]
        if loc.is_active:
            raise ShopError("Location must be deactivated before it is deleted", None, ["id"])
        for key in [k for k in self.levels if k[1] == location_id]:
            del self.levels[key]
        del self.locations[location_id]
        self.emit("locations/delete", {"id": loc.id})

    def _emit_location(self, topic: str, loc: Location) -> None:
        from stocksync.sandbox.payloads import location_payload

        self.emit(topic, location_payload(loc))

    def active_locations(self) -> list[Location]:
        return [loc for loc in self.locations.values() if loc.is_active]

    # ------------------------------------------------------------------ products
    def create_product(
        self,
        *,
        title: str,
        description_html: str = "",
        vendor: str = "",
        product_type: str = "",
        status: str = "ACTIVE",
        tags: list[str] | None = None,
        handle: str | None = None,
        options: list[tuple[str, list[str]]] | None = None,
        variants: list[dict[str, Any]] | None = None,
        image_urls: list[tuple[str, str | None]] | None = None,
        emit: bool = True,
    ) -> Product:
        t = self.now()
        product = Product(
            self.ids(),
            title,
            handle or self._unique_handle(_handleize(title)),
            t,
            t,
            description_html=description_html,
            vendor=vendor,
            product_type=product_type,
            status=status,
            tags=_clean_tags(tags or []),
        )
        if status == "ACTIVE":
            product.published_at = t
            product.publication_ids = {p.id for p in self.publications}
        self.products[product.id] = product
        for pos, (opt_name, values) in enumerate(options or [], start=1):
            product.options.append(ProductOption(self.ids(), opt_name, pos, list(values)))
        for url, alt in image_urls or []:
            product.images.append(Image(self.ids(), url, alt))
        specs = variants or [{}]
        for spec in specs:
            self.add_variant(product, spec, emit=False)
        if not product.options:
            product.options.append(ProductOption(self.ids(), "Title", 1, ["Default Title"]))
        if emit:
            self.emit_product("products/create", product)
            for vid in product.variant_ids:
                self.emit_inventory_item("inventory_items/create", self.variants[vid])
        return product

    def _unique_handle(self, base: str) -> str:
        taken = {p.handle for p in self.products.values()}
        handle, n = base, 1
        while handle in taken:
            handle = f"{base}-{n}"
            n += 1
        return handle

    def add_variant(self, product: Product, spec: dict[str, Any], *, emit: bool = True) -> Variant:
        t = self.now()
        item_id, var_id = self.ids(), self.ids()
        option_values = list(spec.get("option_values") or [])
        for name, value in option_values:
            opt = next((o for o in product.options if o.name == name), None)
            if opt is None:
                opt = ProductOption(self.ids(), name, len(product.options) + 1, [])
                product.options.append(opt)
            if value not in opt.values:
                opt.values.append(value)
        variant = Variant(
            var_id,
            product.id,
            item_id,
            t,
            t,
            sku=spec.get("sku"),
            barcode=spec.get("barcode"),
            price=str(spec.get("price") or "0.00"),
            compare_at_price=spec.get("compare_at_price"),
            position=len(product.variant_ids) + 1,
            inventory_policy=spec.get("inventory_policy") or "DENY",
            taxable=bool(spec.get("taxable", True)),
            option_values=option_values,
        )
        item = InventoryItem(item_id, var_id, t, t, tracked=bool(spec.get("tracked", True)))
        if spec.get("weight") is not None:
            item.weight_value = float(spec["weight"])
        self.variants[var_id] = variant
        self.items[item_id] = item
        product.variant_ids.append(var_id)
        quantities: dict[int, int] = dict(spec.get("quantities") or {})
        stock_at = list(quantities) or [loc.id for loc in self.active_locations()[:1]]
        for loc_id in stock_at:
            level = self._connect(item, loc_id)
            level.available = quantities.get(loc_id, 0)
        if emit:
            self.emit_inventory_item("inventory_items/create", variant)
        return variant

    def update_variant(self, variant: Variant, spec: dict[str, Any]) -> None:
        for key in ("sku", "barcode", "compare_at_price", "inventory_policy", "taxable"):
            if key in spec:
                setattr(variant, key, spec[key])
        if "price" in spec and spec["price"] is not None:
            variant.price = str(spec["price"])
        if spec.get("option_values"):
            variant.option_values = list(spec["option_values"])
        item = self.items[variant.inventory_item_id]
        if "tracked" in spec and spec["tracked"] is not None:
            item.tracked = bool(spec["tracked"])
        if spec.get("weight") is not None:
            item.weight_value = float(spec["weight"])
        variant.updated_at = item.updated_at = self.now()

    def delete_variant(self, variant: Variant) -> None:
        product = self.products[variant.product_id]
        product.variant_ids.remove(variant.id)
        del self.variants[variant.id]
        item = self.items.pop(variant.inventory_item_id)
        for key in [k for k in self.levels if k[0] == item.id]:
            del self.levels[key]
        for pos, vid in enumerate(product.variant_ids, start=1):
            self.variants[vid].position = pos
        from stocksync.sandbox.payloads import inventory_item_delete_payload

        self.emit("inventory_items/delete", inventory_item_delete_payload(item))

    def delete_product(self, product: Product) -> None:
        for vid in list(product.variant_ids):
            self.delete_variant(self.variants[vid])
        del self.products[product.id]
        self.emit("products/delete", {"id": product.id})

    def touch_product(self, product: Product) -> None:
        product.updated_at = self.now()
        self.emit_product("products/update", product)

    def emit_product(self, topic: str, product: Product) -> None:
        from stocksync.sandbox.payloads import product_payload

        self.emit(topic, product_payload(self, product))

    def emit_inventory_item(self, topic: str, variant: Variant) -> None:
        from stocksync.sandbox.payloads import inventory_item_payload

        self.emit(
            topic, inventory_item_payload(self, self.items[variant.inventory_item_id], variant)
        )

    # ----------------------------------------------------------------- inventory
    def _connect(self, item: InventoryItem, location_id: int) -> InventoryLevel:
        key = (item.id, location_id)
        level = self.levels.get(key)
        if level is None:
            t = self.now()
            level = InventoryLevel(self.ids(), item.id, location_id, t, t)
            self.levels[key] = level
        level.active = True
        return level

    def level(self, item_id: int, location_id: int) -> InventoryLevel | None:
        level = self.levels.get((item_id, location_id))
        return level if level is not None and level.active else None

    def levels_of_item(self, item_id: int) -> list[InventoryLevel]:
        return [lv for (iid, _), lv in self.levels.items() if iid == item_id and lv.active]

    def levels_at(self, location_id: int) -> list[InventoryLevel]:
        return [lv for (_, lid), lv in self.levels.items() if lid == location_id and lv.active]

    def variant_inventory_quantity(self, variant: Variant) -> int:
        return sum(lv.available for lv in self.levels_of_item(variant.inventory_item_id))

    def activate(self, item_id: int, location_id: int, available: int | None) -> InventoryLevel:
        item = self.items.get(item_id)
        if item is None:
            raise ShopError("Inventory item does not exist", None, ["inventoryItemId"])
        loc = self.locations.get(location_id)
        if loc is None:
            raise ShopError("Location does not exist", None, ["locationId"])
        if not loc.is_active:
            raise ShopError("Location is not active", None, ["locationId"])
        existed = self.level(item_id, location_id) is not None
        level = self._connect(item, location_id)
        if not existed:
            self.emit("inventory_levels/connect", self._level_payload(level))
        if available is not None and available != level.available:
            self.change_level(level, "available", available - level.available)
        return level

    def change_level(self, level: InventoryLevel, name: str, delta: int) -> None:
        """Apply `delta` to a quantity; changes of on_hand are absorbed by available."""
        if delta == 0:
            return
        before = level.available
        if name in ("available", "on_hand"):
            level.available += delta
        else:
            setattr(level, name, getattr(level, name) + delta)
        level.updated_at = self.now()
        self.items[level.item_id].updated_at = level.updated_at
        if level.available != before:
            self.emit("inventory_levels/update", self._level_payload(level))

    def _level_payload(self, level: InventoryLevel) -> dict[str, Any]:
        from stocksync.sandbox.payloads import inventory_level_payload

        return inventory_level_payload(level)

    def record_adjustment(
        self, reason: str, uri: str | None, changes: list[AdjustmentChange]
    ) -> AdjustmentGroup:
        group = AdjustmentGroup(self.ids(), self.now(), reason, uri, changes)
        self.adjustment_groups[group.id] = group
        return group

    # -------------------------------------------------------------------- orders
    def create_order(
        self,
        *,
        lines: list[dict[str, Any]],
        financial_status: str = "PAID",
        inventory_behaviour: str = "BYPASS",
        email: str | None = None,
        test: bool = False,
        tags: list[str] | None = None,
        note: str | None = None,
        currency: str = "USD",
        received: Decimal | None = None,
    ) -> Order:
        """``received``: money taken at checkout (its successful sale and capture
        transactions); by default the whole total for a paid order and nothing otherwise."""
        t = self.now()
        order = Order(
            self.ids(),
            self.next_order_number,
            t,
            t,
            financial_status,
            inventory_behaviour,
            [],
            currency=currency,
            email=email,
            test=test,
            tags=tags or [],
            note=note,
        )
        claims: list[tuple[LineItem, InventoryLevel, int]] = []
        for index, spec in enumerate(lines):
            quantity = int(spec["quantity"])
            if quantity <= 0:
                raise ShopError(
                    "Quantity must be greater than 0",
                    "INVALID",
                    ["order", "lineItems", str(index), "quantity"],
                )
            variant = self.variants.get(spec["variant_id"]) if spec.get("variant_id") else None
            if spec.get("variant_id") and variant is None:
                raise ShopError(
                    "Variant does not exist",
                    "INVALID",
                    ["order", "lineItems", str(index), "variantId"],
                )
            product = self.products[variant.product_id] if variant else None
            line = LineItem(
                self.ids(),
                order.id,
                variant.id if variant else None,
                product.id if product else None,
                variant.sku if variant else spec.get("sku"),
                product.title if product else (spec.get("title") or "Custom item"),
                variant.title if variant else None,
                quantity,
                str(spec.get("price") or (variant.price if variant else "0.00")),
            )
            order.line_items.append(line)
            if variant is None:
                continue
            item = self.items[variant.inventory_item_id]
            level = self._pick_location(item, quantity)
            line.location_id = level.location_id if level else None
            if inventory_behaviour == "BYPASS" or not item.tracked or level is None:
                continue
            if (
                inventory_behaviour == "DECREMENT_OBEYING_POLICY"
                and variant.inventory_policy == "DENY"
                and level.available < quantity
            ):
                raise ShopError(
                    f"Unable to reserve inventory for {variant.sku or variant.title}: "
                    "not enough units available",
                    "INVENTORY_CLAIM_FAILED",
                    ["order", "lineItems", str(index)],
                )
            claims.append((line, level, quantity))
        if received is not None:
            order.received = received
        elif financial_status == "PAID":
            order.received = order.current_total_price
        self.next_order_number += 1
        # Order.fullyPaid: a paid order, or one whose checkout took its whole total.
        order.fully_paid = financial_status == "PAID" or (
            order.received > 0 and order.received >= order.current_total_price
        )
        self.orders[order.id] = order
        for line, level, quantity in claims:
            self._claim(line, level, quantity)
        self._open_fulfillment_orders(order)
        from stocksync.sandbox.payloads import order_payload

        self.emit("orders/create", order_payload(self, order))
        if financial_status == "PAID":
            self.emit("orders/paid", order_payload(self, order))
        return order

    def _pick_location(self, item: InventoryItem, quantity: int) -> InventoryLevel | None:
        """Shopify routes to the first location (by priority) able to fulfil; otherwise the
        first location stocking the item."""
        levels = [
            lv for lv in self.levels_of_item(item.id) if self.locations[lv.location_id].is_active
        ]
        for lv in levels:
            if lv.available >= quantity:
                return lv
        return levels[0] if levels else None

    def _claim(self, line: LineItem, level: InventoryLevel, quantity: int) -> None:
        level.committed += quantity
        line.claimed += quantity
        self.change_level(level, "available", -quantity)

    def _release(self, line: LineItem, quantity: int, restock: bool) -> None:
        """Unfulfilled units leave the order: claimed ones leave committed; restocked units
        become available again (unclaimed ones too: a restock adds them to the location)."""
        level = self._line_level(line)
        released = min(quantity, line.claimed)
        if level is not None and released:
            level.committed -= released
            line.claimed -= released
            level.updated_at = self.now()
        if restock and level is not None:
            self.change_level(level, "available", quantity)

    def _line_level(self, line: LineItem) -> InventoryLevel | None:
        if line.variant_id is None or line.location_id is None:
            return None
        variant = self.variants.get(line.variant_id)
        if variant is None:
            return None
        item = self.items[variant.inventory_item_id]
        if not item.tracked:
            return None
        return self._connect(item, line.location_id)

    def _open_fulfillment_orders(self, order: Order) -> None:
        by_location: dict[int | None, list[LineItem]] = {}
        active = self.active_locations()
        default = active[0].id if active else None
        for line in order.line_items:
            # Custom items (no variant) ship from the default location.
            by_location.setdefault(line.location_id or default, []).append(line)
        for loc_id, lines in by_location.items():
            t = self.now()
            fo = FulfillmentOrder(self.ids(), order.id, loc_id, t, t)
            for line in lines:
                fo.lines.append(
                    FulfillmentOrderLine(self.ids(), line.id, line.quantity, line.quantity)
                )
            order.fulfillment_orders.append(fo)

    def find_fulfillment_order(self, fo_id: int) -> tuple[Order, FulfillmentOrder] | None:
        for order in self.orders.values():
            for fo in order.fulfillment_orders:
                if fo.id == fo_id:
                    return order, fo
        return None

    def mark_as_paid(self, order: Order) -> None:
        if order.financial_status == "PAID":
            raise ShopError("Order cannot be marked as paid.", None, ["id"])
        if order.cancelled_at is not None:
            raise ShopError("Order is cancelled", None, ["id"])
        order.financial_status = "PAID"
        order.received += order.total_outstanding
        order.fully_paid = True
        self._order_changed(order, "orders/paid")

    def capture_payment(self, order: Order, amount: Decimal) -> None:
        """A payment of ``amount`` towards what the order owes (a deposit paid further, a
        capture of part of an authorization). Paying all that is owed is
        :meth:`mark_as_paid`; a part leaves the order partially paid (a partially refunded
        one stays so) and sends ``orders/updated`` only, as Shopify sends ``orders/paid`` once
        an order is paid in full."""
        if order.cancelled_at is not None:
            raise ShopError("Order is cancelled", None, ["id"])
        owed = order.total_outstanding
        if amount <= 0 or owed <= 0:
            raise ShopError("Nothing to pay.", None, ["amount"])
        if amount >= owed:
            self.mark_as_paid(order)
            return
        order.received += amount
        order.fully_paid = False
        if order.financial_status in ("PENDING", "AUTHORIZED"):
            order.financial_status = "PARTIALLY_PAID"
        self._order_changed(order)

    def _order_changed(self, order: Order, *topics: str) -> None:
        from stocksync.sandbox.payloads import order_payload

        order.updated_at = self.now()
        for topic in (*topics, "orders/updated"):
            self.emit(topic, order_payload(self, order))

    def fulfill(self, requests: list[tuple[int, list[tuple[int, int]] | None]]) -> Fulfillment:
        """requests: (fulfillment order id, [(fo line id, quantity)] or None for all)."""
        order: Order | None = None
        plan: list[tuple[FulfillmentOrder, FulfillmentOrderLine, int]] = []
        for index, (fo_id, fo_lines) in enumerate(requests):
            found = self.find_fulfillment_order(fo_id)
            path = ["fulfillment", "lineItemsByFulfillmentOrder", str(index)]
            if found is None:
                raise ShopError(
                    "Fulfillment order does not exist.", None, [*path, "fulfillmentOrderId"]
                )
            fo_order, fo = found
            if order is not None and fo_order.id != order.id:
                raise ShopError("Fulfillment orders must belong to the same order.", None, path)
            order = fo_order
            if order.cancelled_at is not None or fo.status in ("CLOSED", "CANCELLED"):
                raise ShopError("Fulfillment order is not in a fulfillable state.", None, path)
            wanted = (
                fo_lines
                if fo_lines is not None
                else [
                    (fl.id, fl.remaining_quantity) for fl in fo.lines if fl.remaining_quantity > 0
                ]
            )
            for fl_id, qty in wanted:
                fl = next((x for x in fo.lines if x.id == fl_id), None)
                if fl is None:
                    raise ShopError("Fulfillment order line item does not exist.", None, path)
                if qty <= 0 or qty > fl.remaining_quantity:
                    raise ShopError(
                        f"Invalid quantity {qty}: {fl.remaining_quantity} remaining.", None, path
                    )
                plan.append((fo, fl, qty))
        if order is None or not plan:
            raise ShopError("No line items to fulfill.", None, ["fulfillment"])
        fulfillment = Fulfillment(
            self.ids(),
            order.id,
            plan[0][0].location_id,
            self.now(),
            f"{order.name}.{len(order.fulfillments) + 1}",
        )
        for fo, fl, qty in plan:
            fl.remaining_quantity -= qty
            line = order.line(fl.line_item_id)
            assert line is not None
            line.fulfilled += qty
            level = self._line_level(line)
            shipped_claimed = min(qty, line.claimed)
            if level is not None and shipped_claimed:
                level.committed -= shipped_claimed
                line.claimed -= shipped_claimed
                level.updated_at = self.now()
            fulfillment.lines.append((self.ids(), line.id, qty))
            fo.updated_at = self.now()
            fo.status = (
                "CLOSED" if all(x.remaining_quantity == 0 for x in fo.lines) else "IN_PROGRESS"
            )
        order.fulfillments.append(fulfillment)
        from stocksync.sandbox.payloads import fulfillment_payload

        self.emit("fulfillments/create", fulfillment_payload(self, order, fulfillment))
        status = order.fulfillment_status
        self._order_changed(
            order, "orders/fulfilled" if status == "FULFILLED" else "orders/partially_fulfilled"
        )
        return fulfillment

    def refund(  # noqa: C901, PLR0912, PLR0915  Shopify's refund rules, in their order
        self,
        order: Order,
        lines: list[dict[str, Any]],
        note: str | None = None,
        *,
        emit_order_update: bool = True,
        pay_back: bool = True,
        money: Decimal | None = None,
    ) -> Refund:
        """Refund lines; with `pay_back`, their value goes back to the customer, up to what
        was received and not yet refunded (a cancellation without refund only restocks).
        ``money``: the amount of the refund's transactions, when the merchant gives it (a
        refund of money alone has no lines), instead of the lines' value."""
        refund = Refund(self.ids(), order.id, self.now(), note, [])
        planned: list[tuple[LineItem, int, str, int | None]] = []
        pending: dict[int, tuple[int, int]] = {}  # line id -> (unfulfilled used, fulfilled used)
        for index, spec in enumerate(lines):
            path = ["refundLineItems", str(index)]
            line = order.line(spec["line_item_id"])
            if line is None:
                raise ShopError("Line item does not exist.", None, [*path, "lineItemId"])
            qty = int(spec["quantity"])
            restock_type = spec.get("restock_type") or "NO_RESTOCK"
            if restock_type == "LEGACY_RESTOCK":
                restock_type = "RETURN" if line.refundable_fulfilled > 0 else "CANCEL"
            used_u, used_f = pending.get(line.id, (0, 0))
            if qty <= 0:
                raise ShopError("Quantity must be greater than 0.", None, [*path, "quantity"])
            if restock_type == "RETURN":
                if qty > line.refundable_fulfilled - used_f:
                    raise ShopError(
                        "Cannot return more units than were fulfilled.", None, [*path, "quantity"]
                    )
                used_f += qty
            elif restock_type == "CANCEL":
                if qty > line.unfulfilled - used_u:
                    raise ShopError(
                        "Cannot cancel more units than are unfulfilled.", None, [*path, "quantity"]
                    )
                used_u += qty
            else:  # NO_RESTOCK: unfulfilled units first, then fulfilled ones
                take_u = min(qty, line.unfulfilled - used_u)
                if qty - take_u > line.refundable_fulfilled - used_f:
                    raise ShopError(
                        "Quantity exceeds the refundable quantity.", None, [*path, "quantity"]
                    )
                used_u += take_u
                used_f += qty - take_u
            pending[line.id] = (used_u, used_f)
            location_id = spec.get("location_id") or line.location_id
            if spec.get("location_id") and spec["location_id"] not in self.locations:
                raise ShopError("Location does not exist.", None, [*path, "locationId"])
            planned.append((line, qty, restock_type, location_id))
        for line, qty, restock_type, location_id in planned:
            restocked = restock_type in ("RETURN", "CANCEL")
            if restock_type == "CANCEL":
                self._release_at(line, qty, location_id)
                line.refunded_unfulfilled += qty
            elif restock_type == "RETURN":
                level = self._level_for_restock(line, location_id)
                if level is not None:
                    self.change_level(level, "available", qty)
                line.returned += qty
            else:
                unfulfilled = min(qty, line.unfulfilled)
                if unfulfilled:
                    self._release(line, unfulfilled, restock=False)
                    line.refunded_unfulfilled += unfulfilled
                line.returned += qty - unfulfilled
            self._shrink_fulfillment_orders(order, line)
            refund.lines.append(
                RefundLine(
                    self.ids(),
                    line.id,
                    qty,
                    restock_type,
                    location_id,
                    restocked,
                    f"{float(line.price) * qty:.2f}",
                )
            )
        if pay_back:
            available = order.received - order.refunded_amount
            if money is None:
                # The lines' value, up to what was paid and not yet given back.
                refund.amount = min(
                    sum((Decimal(rl.subtotal) for rl in refund.lines), Decimal(0)), available
                )
            elif money > available:
                raise ShopError(
                    f"Refund amount {money} exceeds the refundable amount {available}.",
                    None,
                    ["transactions"],
                )
            else:
                refund.amount = money
            if refund.amount > 0:
                refund.transaction_id = self.ids()
        order.refunds.append(refund)
        if refund.amount > 0 and order.financial_status in (
            "PAID",
            "PARTIALLY_PAID",
            "PARTIALLY_REFUNDED",
        ):
            # Shopify: refunded less than was paid is partially refunded, all of it refunded
            # (a deposit's money refunded too: it was never paid in full).
            order.financial_status = (
                "REFUNDED" if order.refunded_amount >= order.received else "PARTIALLY_REFUNDED"
            )
        elif all(li.current_quantity == 0 for li in order.line_items):
            order.financial_status = (
                "REFUNDED" if order.financial_status == "PAID" else order.financial_status
            )
        elif refund.lines and order.financial_status == "PAID":
            order.financial_status = "PARTIALLY_REFUNDED"
        from stocksync.sandbox.payloads import refund_payload

        self.emit("refunds/create", refund_payload(self, order, refund))
        if emit_order_update:
            self._order_changed(order)
        return refund

    def _level_for_restock(self, line: LineItem, location_id: int | None) -> InventoryLevel | None:
        if line.variant_id is None or line.variant_id not in self.variants:
            return None
        item = self.items[self.variants[line.variant_id].inventory_item_id]
        loc = location_id or line.location_id
        if loc is None or not item.tracked:
            return None
        return self._connect(item, loc)

    def _release_at(self, line: LineItem, qty: int, location_id: int | None) -> None:
        if location_id is None or location_id == line.location_id:
            self._release(line, qty, restock=True)
            return
        # Released from the order's location, restocked where the merchant said.
        self._release(line, qty, restock=False)
        level = self._level_for_restock(line, location_id)
        if level is not None:
            self.change_level(level, "available", qty)

    def _shrink_fulfillment_orders(self, order: Order, line: LineItem) -> None:
        for fo in order.fulfillment_orders:
            for fl in fo.lines:
                if fl.line_item_id == line.id:
                    fl.remaining_quantity = max(0, min(fl.remaining_quantity, line.unfulfilled))
            if all(fl.remaining_quantity == 0 for fl in fo.lines) and fo.status != "CLOSED":
                fo.status = (
                    "CLOSED" if any(li.fulfilled for li in order.line_items) else "CANCELLED"
                )

    def cancel(self, order: Order, *, reason: str, restock: bool, refund: bool) -> None:
        if order.cancelled_at is not None:
            raise ShopError("Order has already been cancelled.", "INVALID", ["orderId"])
        order.cancelled_at = self.now()
        order.cancel_reason = reason
        lines = [
            {
                "line_item_id": li.id,
                "quantity": li.unfulfilled,
                "restock_type": "CANCEL" if restock else "NO_RESTOCK",
            }
            for li in order.line_items
            if li.unfulfilled > 0
        ]
        if lines and (restock or refund):
            # Shopify records a restocking cancellation as a refund with restock type `cancel`.
            self.refund(order, lines, emit_order_update=False, pay_back=refund)
        else:
            for li in order.line_items:
                if li.unfulfilled > 0:
                    self._release(li, li.unfulfilled, restock=False)
            for fo in order.fulfillment_orders:
                if fo.status != "CLOSED":
                    fo.status = "CANCELLED"
        for fo in order.fulfillment_orders:
            if fo.status in ("OPEN", "IN_PROGRESS"):
                fo.status = "CANCELLED"
        if refund and order.financial_status in ("PAID", "PARTIALLY_PAID"):
            order.financial_status = "REFUNDED"
        elif order.financial_status in ("AUTHORIZED", "PENDING"):
            order.financial_status = "VOIDED"
        order.closed_at = self.now()
        self._order_changed(order, "orders/cancelled")

    def begin_edit(self, order: Order) -> OrderEdit:
        if order.cancelled_at is not None:
            raise ShopError("Cannot edit a cancelled order.", None, ["id"])
        edit = OrderEdit(self.ids(), order.id, self.now())
        self.edits[edit.id] = edit
        return edit

    def commit_edit(self, edit: OrderEdit) -> Order:
        if edit.committed:
            raise ShopError("The order edit has already been committed.", None, ["id"])
        order = self.orders[edit.order_id]
        additions: list[dict[str, int]] = []
        removals: list[dict[str, int]] = []
        for line_id, new_qty in edit.quantities.items():
            line = order.line(line_id)
            if line is None:
                continue
            delta = new_qty - line.current_quantity
            if delta > 0:
                line.quantity += delta
                level = self._line_level(line)
                if level is not None and order.inventory_behaviour != "BYPASS":
                    self._claim(line, level, delta)
                for fo in order.fulfillment_orders:
                    for fl in fo.lines:
                        if fl.line_item_id == line.id:
                            fl.total_quantity += delta
                            fl.remaining_quantity += delta
                            if fo.status == "CLOSED":
                                fo.status = "OPEN"
                additions.append({"id": line.id, "delta": delta})
            elif delta < 0:
                removed = min(-delta, line.unfulfilled)
                self._release(line, removed, restock=edit.restock.get(line_id, False))
                line.removed += removed
                self._shrink_fulfillment_orders(order, line)
                removals.append({"id": line.id, "delta": removed})
        edit.committed = True
        order.edited = True
        if additions:
            order.fully_paid = False  # the added units are owed
        if additions and order.financial_status == "PAID":
            # The added units are not paid for: a balance is outstanding until it is.
            order.financial_status = "PARTIALLY_PAID"
        order.updated_at = self.now()
        from stocksync.sandbox.payloads import order_edit_payload, order_payload

        self.emit("orders/edited", order_edit_payload(self, order, edit, additions, removals))
        self.emit("orders/updated", order_payload(self, order))
        return order

    def new_job(self) -> Job:
        job = Job(self.ids())
        self.jobs[job.id] = job
        return job


def _clean_tags(tags: list[str]) -> list[str]:
    seen: list[str] = []
    for tag in tags:
        for part in tag.split(","):
            text = part.strip()
            if text and text not in seen:
                seen.append(text)
    return sorted(seen, key=str.lower)


def clean_tags(tags: list[str]) -> list[str]:
    return _clean_tags(tags)


def encode_cursor(key: Any) -> str:
    import json

    return base64.urlsafe_b64encode(json.dumps({"last": key}).encode()).decode()


def decode_cursor(cursor: str) -> Any:
    import json

    try:
        return json.loads(base64.urlsafe_b64decode(cursor.encode()))["last"]
    except (ValueError, KeyError, TypeError):
        return None
