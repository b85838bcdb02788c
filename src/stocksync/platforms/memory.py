"""An in-memory store platform with Shopify's semantics, simplified.

A :class:`MemoryWorld` holds many stores; each :class:`MemoryStore` implements
:class:`~stocksync.domain.ports.StorePlatform` exactly and also offers the merchant-side
actions a shop's staff and customers perform (orders, refunds, manual corrections, catalogue
edits). Every change, including stocksync's own writes, is reported as a normalised event in
the world's outbox, as a real platform echoes every write back as a webhook.

It is deliberately strict where a real platform is strict (atomic compare-and-swap batches,
idempotency-key conflicts, inactive locations, batch limits), and lenient where a real platform
is lenient (levels may go negative, orders may oversell), because the engine's bugs hide in
the difference between a fake and the real thing.

Decisions worth knowing (each mirrors Shopify unless said otherwise):

* Identifiers are decimal strings above 2**53, unique across the whole world, so that an id
  parsed as a float, or used against the wrong store, fails instead of passing by chance.
* ``set_levels``: a write whose ``compare`` is ``None`` is unconditional; an integer compare
  must equal the current level, and an item not stocked at the location compares equal only to
  ``None``. Validation errors raise before anything is compared; a stale compare anywhere in
  the batch applies nothing. Items not stocked at the location are activated, then set.
* ``adjust_level`` on an item not stocked at the location raises
  ``UserErrors(["ITEM_NOT_STOCKED_AT_LOCATION"])`` as Shopify's ``inventoryAdjustQuantities``
  does; an idempotency key is remembered only once its adjustment applied. ``adjust_levels``
  checks every change before applying any (all or nothing). The ``attempt_failed`` fault
  answers as Shopify's ``ADJUST_QUANTITIES_FAILED`` and remembers the key: a later call under
  it raises ``IdempotencyKeySpentError`` (``IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED``).
* ``create_product`` (and a merchant's new product or variant) stocks every variant, tracked or
  not, at the store's primary location (the first active one) with 0 available, and nowhere
  else; the engine activates other receiving locations itself. Untracked items have levels
  that can be read and written, but orders do not decrement them.
* A deleted or unknown item, or a deleted location, reads as not stocked (``None``).
* An order's ``created_at`` is its first version: the world's clock when it was placed (a test
  places an order "in the past" by moving the world's clock back first).
* Order versions are strictly increasing per store (hence per order): the clock's instant,
  bumped by a microsecond when the clock has not moved past the last version. With the
  world's ``whole_second_versions`` on they are whole seconds and never bumped, as Shopify's
  ``updated_at`` is: changes within one second share one version. They are text in
  one fixed-width UTC format (``2025-01-01T00:00:00.000000Z``), so text order is time order.
* Financial status (Shopify's display financial status, lower case):

  - an order is placed ``pending``, ``authorized``, ``partially_paid`` or ``paid``;
  - ``mark_paid``: pending / authorized / partially_paid -> paid; a partially refunded order
    with a balance owed stays ``partially_refunded``;
  - ``record_payment`` of a part of what is owed: pending / authorized -> ``partially_paid``
    (``orders/updated`` only: ``orders/paid`` comes once the order is paid in full);
  - ``paid_in_full`` (Shopify's ``Order.fullyPaid``) is True from payment in full until
    units are added (a balance is owed again); refunds do not change it;
  - an edit adding units to a ``paid`` or ``partially_refunded`` order -> ``partially_paid``
    (a balance is owed); removing units changes nothing until the merchant refunds;
  - a refund with money on a paid, partially paid or partially refunded order ->
    ``refunded`` when every unit ordered has been refunded, else ``partially_refunded``;
    on pending or authorized orders there is no money to return and the status is kept;
  - ``cancel_order``: pending / authorized -> ``voided``; with money refunded, paid /
    partially_paid / partially_refunded -> ``refunded``; without, the status is kept.

* ``refund_money`` is a refund with money and no line (Shopify's refund with transactions
  and no refund line items): no unit comes back.
* ``uninstall_app`` delivers ``app/uninstalled``; then the store refuses every call as a
  revoked token and sends no webhook (Shopify deletes an app's subscriptions at uninstall)
  until ``reinstall_app``.
* ``cancel_order`` records a refund of every unit not yet refunded (restocking or not, as the
  merchant chose), so a restocking cancellation is one refund, as on Shopify.
* Order lines of a variant deleted since show ``variant_id=None``, as Shopify's do.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

from stocksync.domain.events import (
    AppUninstalled,
    InboundEvent,
    LevelChanged,
    OrderEdited,
    OrderSeen,
    ProductChanged,
    ProductDeleted,
    RefundSeen,
)
from stocksync.domain.ports import (
    AuthError,
    IdempotencyConflictError,
    IdempotencyKeySpentError,
    LevelAdjustment,
    LevelsRead,
    LevelWrite,
    LocationInactiveError,
    OrderLine,
    OrderSnapshot,
    PlatformLocation,
    Product,
    ProductDraft,
    Refund,
    RefundLine,
    SetOutcome,
    ThrottledError,
    TransientPlatformError,
    UserErrors,
    Variant,
)

# --- constants --------------------------------------------------------------------------------

TOPIC_LEVEL_UPDATE = "inventory_levels/update"
TOPIC_LEVEL_DISCONNECT = "inventory_levels/disconnect"
TOPIC_ORDER_CREATE = "orders/create"
TOPIC_ORDER_PAID = "orders/paid"
TOPIC_ORDER_UPDATED = "orders/updated"
TOPIC_ORDER_CANCELLED = "orders/cancelled"
TOPIC_ORDER_EDITED = "orders/edited"
TOPIC_REFUND_CREATE = "refunds/create"
TOPIC_PRODUCT_CREATE = "products/create"
TOPIC_PRODUCT_UPDATE = "products/update"
TOPIC_PRODUCT_DELETE = "products/delete"
TOPIC_APP_UNINSTALLED = "app/uninstalled"

DEFAULT_MAX_BATCH = 250  # Shopify's limit on input arrays
MAX_QUANTITY = 1_000_000_000  # Shopify refuses quantities beyond this (INVALID_QUANTITY_TOO_HIGH)
_FIRST_ID = 2**53 + 1  # past float precision: an id parsed as a float no longer matches
_T = TypeVar("_T")

FaultKind = Literal[
    "timeout", "server_error", "throttled", "lost_response", "attempt_failed", "race"
]
FAULT_KINDS: tuple[FaultKind, ...] = (
    "timeout",
    "server_error",
    "throttled",
    "lost_response",
    "attempt_failed",
    "race",
)
_CALL_FAULTS: tuple[FaultKind, ...] = (
    "timeout",
    "server_error",
    "throttled",
    "lost_response",
    "attempt_failed",
)
_RACE: tuple[FaultKind, ...] = ("race",)
InventoryBehaviour = Literal["decrement_ignoring_policy", "decrement_obeying_policy", "bypass"]
PlacedStatus = Literal["pending", "authorized", "partially_paid", "paid"]

_PLACED_STATUSES = frozenset({"pending", "authorized", "partially_paid", "paid"})
_UNPAID = frozenset({"pending", "authorized", "partially_paid"})
_MONEY_TAKEN = frozenset({"paid", "partially_paid", "partially_refunded"})

API_METHODS: tuple[str, ...] = (
    "list_locations",
    "read_levels",
    "set_levels",
    "adjust_level",
    "adjust_levels",
    "list_products",
    "get_product",
    "find_variants_by_sku",
    "create_product",
    "get_order",
    "orders_changed_since",
)
WRITE_METHODS = frozenset({"set_levels", "adjust_level", "adjust_levels", "create_product"})


class _AttemptFailedError(TransientPlatformError):
    """An injected ``attempt_failed``: Shopify's ADJUST_QUANTITIES_FAILED ("try again")."""


class OutOfStockError(ValueError):
    """A customer's order was refused: not enough units and the variant does not oversell."""


def format_version(instant: datetime) -> str:
    """The fixed-width UTC text of an instant; naive datetimes are taken as UTC."""
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def normalise_version(text: str) -> str:
    """Any ISO-8601 instant as :func:`format_version` writes it (so text compares as time)."""
    return format_version(datetime.fromisoformat(text.replace("Z", "+00:00")))


# --- values the world hands out ---------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """One webhook as the platform would send it: which store, its unique id, its topic."""

    store_ref: str
    event_id: str
    topic: str
    event: InboundEvent
    triggered_at: str = ""


class ManualClock:
    """A clock that moves only when told to, for tests that pin versions and timestamps."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2025, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float = 1.0) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@dataclass
class StoreCounters:
    """What the engine asked of one store, for assertions on cost (calls, not time)."""

    calls: Counter[str] = field(default_factory=Counter)  # every attempt, failed ones included
    quantities_written: int = 0  # level writes applied by set_levels, plus applied adjustments
    units_adjusted: int = 0  # sum of |delta| applied by adjust_level
    stale_batches: int = 0  # set_levels batches refused for a stale compare
    faults: Counter[str] = field(default_factory=Counter)  # injected faults by kind

    @property
    def write_calls(self) -> int:
        return sum(self.calls[m] for m in WRITE_METHODS)

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    def reset(self) -> None:
        self.calls.clear()
        self.faults.clear()
        self.quantities_written = self.units_adjusted = self.stale_batches = 0


@dataclass
class _Armed:
    kind: FaultKind
    remaining: int
    method: str | None
    retry_after: float
    delta: int
    item_id: str | None


class StoreFaults:
    """Faults injected into one store's API calls (never into merchant-side actions).

    ``timeout`` and ``server_error`` raise :class:`TransientPlatformError` without applying;
    ``throttled`` raises :class:`ThrottledError`; ``lost_response`` applies the call, then
    raises :class:`TransientPlatformError` (the caller cannot tell it applied); ``race``
    changes one level returned by the next ``read_levels`` by ``delta`` just before the next
    write call, as a customer buying concurrently would (its event is emitted).
    """

    def __init__(self) -> None:
        self.unreachable = False  # every call fails as a refused connection
        self.auth_revoked = False  # every call fails as a revoked token (app uninstalled)
        self._armed: list[_Armed] = []
        self._rates: dict[FaultKind, float] = {}
        # fault injection wants reproducible draws, not secrecy
        self._rng = random.Random(0)  # noqa: S311
        self._rate_methods: frozenset[str] | None = None
        self._rate_retry_after = 1.0
        self._rate_race_delta = -1
        self.pending_race: tuple[str, str, int] | None = None  # (item, location, delta)

    def fail_next(
        self,
        kind: FaultKind,
        count: int = 1,
        *,
        method: str | None = None,
        retry_after: float = 1.0,
        delta: int = -1,
        item_id: str | None = None,
    ) -> None:
        """Make the next ``count`` calls (of ``method``, or any) fail with ``kind``.

        For ``race`` (which always follows a ``read_levels``; ``method`` does not apply),
        ``delta`` is the concurrent change and ``item_id`` picks the level to change (default:
        the first stocked one the read returned)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        if method is not None and method not in API_METHODS:
            raise ValueError(f"unknown API method {method!r}")
        if count < 1:
            raise ValueError("count must be at least 1")
        if kind == "race":
            method = None
        self._armed.append(_Armed(kind, count, method, retry_after, delta, item_id))

    def set_rates(
        self,
        rates: Mapping[FaultKind, float],
        *,
        seed: int,
        methods: Collection[str] | None = None,
        retry_after: float = 1.0,
        race_delta: int = -1,
    ) -> None:
        """Fail calls at random with the given probability per kind (seeded, reproducible)."""
        for kind, rate in rates.items():
            if kind not in FAULT_KINDS or not 0.0 <= rate <= 1.0:
                raise ValueError(f"bad fault rate {kind!r}={rate!r}")
        self._rates = dict(rates)
        self._rng = random.Random(seed)  # noqa: S311 (reproducible faults, not secrets)
        self._rate_methods = frozenset(methods) if methods is not None else None
        self._rate_retry_after = retry_after
        self._rate_race_delta = race_delta

    def clear(self) -> None:
        """No more faults: queued, random and pending races are dropped; the store is back."""
        self._armed.clear()
        self._rates = {}
        self.pending_race = None
        self.unreachable = self.auth_revoked = False

    @property
    def armed(self) -> int:
        return sum(a.remaining for a in self._armed)

    def _take(self, method: str, kinds: Collection[FaultKind]) -> _Armed | None:
        for armed in self._armed:
            if armed.kind in kinds and armed.method in (None, method):
                armed.remaining -= 1
                if armed.remaining == 0:
                    self._armed.remove(armed)
                return armed
        return None

    def draw(self, method: str) -> tuple[FaultKind, float] | None:
        """The fault (and its retry-after) this call suffers, if any; ``race`` excluded."""
        armed = self._take(method, _CALL_FAULTS)
        if armed is not None:
            return armed.kind, armed.retry_after
        if self._rates and (self._rate_methods is None or method in self._rate_methods):
            for kind in _CALL_FAULTS:
                if kind == "attempt_failed" and kind not in self._rates:
                    continue  # drawn only when asked for, so older seeds replay unchanged
                # draws in a fixed order per call, so a seed replays a run exactly
                if self._rng.random() < self._rates.get(kind, 0.0):
                    return kind, self._rate_retry_after
        return None

    def arm_race(self, read: Sequence[tuple[str, str]]) -> None:
        """After a read: choose the level a concurrent customer will change (if a race is due)."""
        if not read or self.pending_race is not None:
            return
        armed = self._take("read_levels", _RACE)
        if armed is not None:
            candidates = [p for p in read if armed.item_id in (None, p[0])]
            if not candidates:  # not this read: keep the race for a later one
                self._armed.insert(0, replace(armed, remaining=1))
                return
            self.pending_race = (*candidates[0], armed.delta)
        elif (
            self._rates.get("race")
            and (self._rate_methods is None or "read_levels" in self._rate_methods)
            and self._rng.random() < self._rates["race"]
        ):
            self.pending_race = (*self._rng.choice(list(read)), self._rate_race_delta)


# --- the world --------------------------------------------------------------------------------


class MemoryWorld:
    """Many stores, one clock, one outbox of webhook deliveries.

    Thread-safe: every operation holds the world's lock, so an HTTP twin serving the world in
    a background thread and a test driving merchant actions never interleave."""

    def __init__(
        self,
        clock: Callable[[], datetime] | None = None,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        yield_on_call: bool = False,
    ) -> None:
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.max_batch = max_batch
        # A real call suspends the caller while it travels; with this on, every API call
        # yields to the event loop first, so concurrent engine tasks interleave between a
        # read and the write that follows it, as they would against a real platform.
        self.yield_on_call = yield_on_call
        # Shopify's order ``updated_at`` has whole seconds: several changes of one order in
        # one second report the same version. Off by default (versions strictly increase).
        self.whole_second_versions = False
        self.lock = threading.RLock()
        self.stores: dict[str, MemoryStore] = {}
        self._outbox: list[Delivery] = []
        self._subscribers: list[Callable[[Delivery], None]] = []
        self._next_id = _FIRST_ID
        self._next_event = 1
        self._stamp: tuple[datetime | None, str] = (None, "")

    def add_store(
        self, external_id: str, locations: Sequence[str] = ("Main warehouse",)
    ) -> MemoryStore:
        """A new store with active locations of the given names (the first is primary)."""
        with self.lock:
            if external_id in self.stores:
                raise ValueError(f"store {external_id!r} already exists")
            if not locations:
                raise ValueError("a store needs at least one location")
            store = MemoryStore(self, external_id)
            for name in locations:
                store.add_location(name)
            self.stores[external_id] = store
            return store

    def platform(self, external_id: str) -> MemoryStore:
        try:
            return self.stores[external_id]
        except KeyError:
            raise KeyError(f"no store {external_id!r} in this world") from None

    def take_outbox(self, store_ref: str | None = None) -> list[Delivery]:
        """Deliveries not taken yet, oldest first (only ``store_ref``'s when given)."""
        with self.lock:
            if store_ref is None:
                taken, self._outbox = self._outbox, []
            else:
                taken = [d for d in self._outbox if d.store_ref == store_ref]
                self._outbox = [d for d in self._outbox if d.store_ref != store_ref]
            return taken

    def subscribe(self, callback: Callable[[Delivery], None]) -> Callable[[], None]:
        """Call ``callback`` with each delivery as it happens (under the world's lock; it must
        not block). Deliveries still reach the outbox. Returns a function that unsubscribes."""
        with self.lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self.lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def reset_counters(self) -> None:
        with self.lock:
            for store in self.stores.values():
                store.counters.reset()

    # -- used by stores ---------------------------------------------------------------------

    def new_id(self) -> str:
        with self.lock:
            self._next_id += 1
            return str(self._next_id - 1)

    def now(self) -> datetime:
        instant = self.clock()
        return instant if instant.tzinfo is not None else instant.replace(tzinfo=UTC)

    def emit(self, store_ref: str, topic: str, event: InboundEvent) -> None:
        with self.lock:
            store = self.stores.get(store_ref)
            if store is not None and not store.app_installed:
                return  # Shopify deletes an app's webhook subscriptions at its uninstall
            instant = self.now()
            if instant != self._stamp[0]:  # a burst shares one instant: format it once
                self._stamp = (instant, format_version(instant))
            delivery = Delivery(store_ref, f"evt-{self._next_event}", topic, event, self._stamp[1])
            self._next_event += 1
            self._outbox.append(delivery)
            for callback in list(self._subscribers):
                callback(delivery)


def faulty_delivery(
    deliveries: Iterable[Delivery],
    rng: random.Random,
    *,
    duplicate: float = 0.0,
    drop: float = 0.0,
    reorder: int = 0,
) -> list[Delivery]:
    """The deliveries as an unreliable webhook channel hands them over.

    Each is dropped with probability ``drop``; a delivered one is delivered again later with
    probability ``duplicate`` (same event id); ``reorder`` is how many places a delivery may
    slip (0 keeps the order). Everything is drawn from ``rng``, so a seed replays a run."""
    slots: list[tuple[float, int, Delivery]] = []
    for position, delivery in enumerate(deliveries):
        if rng.random() < drop:
            continue
        at = position + rng.uniform(0, reorder)
        slots.append((at, len(slots), delivery))
        if rng.random() < duplicate:
            slots.append((at + rng.uniform(0, max(reorder, 1)), len(slots), delivery))
    slots.sort(key=lambda slot: (slot[0], slot[1]))
    return [delivery for _, _, delivery in slots]


# --- one store --------------------------------------------------------------------------------


@dataclass
class _Line:
    id: str
    variant_id: str | None
    item_id: str | None
    sku: str
    quantity: int
    tracked: bool


@dataclass
class _Order:
    id: str
    financial_status: str
    cancelled: bool
    version: str
    location_id: str
    lines: list[_Line]
    refunds: list[Refund] = field(default_factory=list)
    created_at: str = ""  # the version it was placed at: the world's clock then
    # Shopify's Order.fullyPaid: nothing outstanding now (units added since payment owe
    # their price again; refunds return money without making a balance owed).
    fully_paid: bool = False

    def refunded(self, line_id: str) -> int:
        return sum(rl.quantity for r in self.refunds for rl in r.lines if rl.line_id == line_id)


def _by_version(order: _Order) -> str:
    return order.version


_PRODUCT_FIELDS = frozenset(f.name for f in fields(Product)) - {"id", "variants", "updated_at"}
_VARIANT_FIELDS = frozenset(f.name for f in fields(Variant)) - {"id", "item_id"}


class MemoryStore:
    """One store: implements :class:`StorePlatform`, plus merchant-side actions."""

    def __init__(self, world: MemoryWorld, ref: str) -> None:
        self.world = world
        self.ref = ref
        self.max_batch = world.max_batch
        self.faults = StoreFaults()
        self.counters = StoreCounters()
        self._locations: dict[str, PlatformLocation] = {}
        self._deleted_locations: set[str] = set()
        self._products: dict[str, Product] = {}
        self._variant_product: dict[str, str] = {}  # variant id -> product id
        self._item_variant: dict[str, str] = {}  # inventory item id -> variant id
        self._levels: dict[tuple[str, str], int] = {}  # present = stocked there
        self._orders: dict[str, _Order] = {}
        self._idempotency: dict[str, tuple[tuple[str, str, int], ...]] = {}
        # Keys whose attempt failed (``attempt_failed``): Shopify answers a later call under
        # such a key IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED, and applies nothing.
        self._failed_keys: set[str] = set()
        self._last_version = ""
        # The app's install on this store: uninstalled, its token is refused and its webhook
        # subscriptions are gone (nothing is delivered) until it is installed again.
        self.app_installed = True

    def __repr__(self) -> str:
        return f"MemoryStore({self.ref!r})"

    # === the StorePlatform port ===============================================================

    async def list_locations(self) -> list[PlatformLocation]:
        await self._travel()
        with self.world.lock:
            lost = self._gate("list_locations")
            result = list(self._locations.values())
            return self._answer(lost, result)

    async def read_levels(self, item_ids: Sequence[str], location_ids: Sequence[str]) -> LevelsRead:
        # No time of change: the in-memory platform's level webhooks carry none either.
        await self._travel()
        with self.world.lock:
            lost = self._gate("read_levels")
            result = LevelsRead(
                {
                    (item, location): self._levels.get((item, location))
                    for item in item_ids
                    for location in location_ids
                }
            )
            self.faults.arm_race([pair for pair, level in result.items() if level is not None])
            return self._answer(lost, result)

    async def set_levels(self, writes: Sequence[LevelWrite]) -> SetOutcome:
        await self._travel()
        with self.world.lock:
            self._run_pending_race()
            lost = self._gate("set_levels")
            return self._answer(lost, self._set_levels(writes))

    async def adjust_level(
        self, item_id: str, location_id: str, delta: int, idempotency_key: str
    ) -> None:
        await self._travel()
        with self.world.lock:
            self._run_pending_race()
            lost = self._gate_adjustment("adjust_level", idempotency_key)
            self._adjust_levels([LevelAdjustment(item_id, location_id, delta)], idempotency_key)
            self._answer(lost, None)

    async def adjust_levels(self, changes: Sequence[LevelAdjustment], idempotency_key: str) -> None:
        await self._travel()
        with self.world.lock:
            self._run_pending_race()
            lost = self._gate_adjustment("adjust_levels", idempotency_key)
            self._adjust_levels(changes, idempotency_key)
            self._answer(lost, None)

    async def list_products(self) -> list[Product]:
        await self._travel()
        with self.world.lock:
            lost = self._gate("list_products")
            return self._answer(lost, list(self._products.values()))

    async def get_product(self, product_id: str) -> Product | None:
        await self._travel()
        with self.world.lock:
            lost = self._gate("get_product")
            return self._answer(lost, self._products.get(product_id))

    async def find_variants_by_sku(self, skus: Sequence[str]) -> dict[str, list[Variant]]:
        await self._travel()
        with self.world.lock:
            lost = self._gate("find_variants_by_sku")
            wanted = set(skus)
            found: dict[str, list[Variant]] = {sku: [] for sku in skus}
            for product in self._products.values():
                for variant in product.variants:
                    if variant.sku in wanted:
                        found[variant.sku].append(replace(variant, product_id=product.id))
            return self._answer(lost, found)

    async def create_product(self, draft: ProductDraft) -> Product:
        await self._travel()
        with self.world.lock:
            lost = self._gate("create_product")
            product = self._create(draft, available=0, location_ids=None)
            return self._answer(lost, product)

    async def get_order(self, order_id: str) -> OrderSnapshot | None:
        await self._travel()
        with self.world.lock:
            lost = self._gate("get_order")
            order = self._orders.get(order_id)
            return self._answer(lost, self._snapshot(order) if order else None)

    async def orders_changed_since(self, since: str | None) -> list[OrderSnapshot]:
        await self._travel()
        with self.world.lock:
            lost = self._gate("orders_changed_since")
            if since is not None:
                try:
                    since = normalise_version(since)
                except ValueError:
                    raise UserErrors(f"not an instant: {since!r}", ["INVALID_QUERY"]) from None
            # Inclusive, as Shopify's ``updated_at:>=`` search (the adapter's contract).
            changed = sorted(
                (o for o in self._orders.values() if since is None or o.version >= since),
                key=_by_version,
            )
            return self._answer(lost, [self._snapshot(o) for o in changed])

    # === merchant side: locations and levels ==================================================

    def add_location(self, name: str) -> PlatformLocation:
        with self.world.lock:
            location = PlatformLocation(self.world.new_id(), name, True)
            self._locations[location.id] = location
            return location

    def deactivate_location(self, location_id: str) -> None:
        self._set_location_active(location_id, False)

    def activate_location(self, location_id: str) -> None:
        self._set_location_active(location_id, True)

    def delete_location(self, location_id: str) -> None:
        """The location disappears with its levels; writes to it raise LocationInactiveError."""
        with self.world.lock:
            self._location(location_id)
            del self._locations[location_id]
            self._deleted_locations.add(location_id)
            for key in [k for k in self._levels if k[1] == location_id]:
                del self._levels[key]

    @property
    def primary_location_id(self) -> str:
        with self.world.lock:
            for location in self._locations.values():
                if location.active:
                    return location.id
            raise LookupError(f"store {self.ref!r} has no active location")

    def location_ids(self) -> list[str]:
        with self.world.lock:
            return list(self._locations)

    def level(self, item_id: str, location_id: str) -> int | None:
        """The current available quantity, ``None`` where not stocked (no call counted)."""
        with self.world.lock:
            return self._levels.get((item_id, location_id))

    def all_levels(self) -> dict[tuple[str, str], int]:
        """Every stocked (item, location) and its level (a test helper: no call counted)."""
        with self.world.lock:
            return dict(self._levels)

    def set_available(self, item_id: str, location_id: str, quantity: int) -> None:
        """A manual correction in the admin (activates the item there if needed)."""
        with self.world.lock:
            self._require_item(item_id)
            self._require_writable(location_id)
            self._put_level(item_id, location_id, quantity)

    def adjust(self, item_id: str, location_id: str, delta: int) -> None:
        """A relative change in the admin, e.g. a restock delivery (activates if needed)."""
        with self.world.lock:
            self._require_item(item_id)
            self._require_writable(location_id)
            self._move(item_id, location_id, delta)

    def stock(self, item_id: str, location_id: str) -> None:
        """Start stocking an item at a location, with 0 available (no-op if stocked)."""
        with self.world.lock:
            self._require_item(item_id)
            self._require_writable(location_id)
            if (item_id, location_id) not in self._levels:
                self._put_level(item_id, location_id, 0)

    def unstock(self, item_id: str, location_id: str) -> None:
        """Stop stocking an item at a location: its level is gone."""
        with self.world.lock:
            if self._levels.pop((item_id, location_id), None) is not None:
                self._emit(TOPIC_LEVEL_DISCONNECT, LevelChanged(item_id, location_id, None))

    # === merchant side: catalogue =============================================================

    def add_product(
        self,
        title: str,
        skus: Sequence[str],
        *,
        available: int = 0,
        location_ids: Sequence[str] | None = None,
        tracked: bool = True,
        price: str | None = "10.00",
        tags: Sequence[str] = (),
        vendor: str = "",
        product_type: str = "",
    ) -> Product:
        """A product created in the admin, one variant per SKU, with ``available`` units at
        each of ``location_ids`` (default: every active location)."""
        draft = ProductDraft(
            title=title,
            variants=tuple(
                Variant(id="", item_id="", sku=sku, tracked=tracked, title=sku, price=price)
                for sku in skus
            ),
            tags=tuple(tags),
            vendor=vendor,
            product_type=product_type,
        )
        return self.add_product_from_draft(draft, available=available, location_ids=location_ids)

    def add_product_from_draft(
        self,
        draft: ProductDraft,
        *,
        available: int = 0,
        location_ids: Sequence[str] | None = None,
    ) -> Product:
        with self.world.lock:
            if location_ids is None:
                location_ids = [loc.id for loc in self._locations.values() if loc.active]
            for location_id in location_ids:
                self._require_writable(location_id)
            return self._create(draft, available=available, location_ids=location_ids)

    def update_product(self, product_id: str, **changes: Any) -> Product:
        """Change product fields (title, tags, status, ...; not id or variants)."""
        with self.world.lock:
            unknown = set(changes) - _PRODUCT_FIELDS
            if unknown:
                raise ValueError(f"cannot change {sorted(unknown)} of a product")
            product = replace(self._product(product_id), **changes, updated_at=self.world.now())
            return self._store_product(product)

    def update_variant(self, variant_id: str, **changes: Any) -> Variant:
        """Change variant fields (sku, price, tracked, ...; not its ids)."""
        with self.world.lock:
            unknown = set(changes) - _VARIANT_FIELDS
            if unknown:
                raise ValueError(f"cannot change {sorted(unknown)} of a variant")
            product = self._product(self._variant_product_id(variant_id))
            variant = next(v for v in product.variants if v.id == variant_id)
            changed = replace(variant, **changes)
            variants = tuple(changed if v.id == variant_id else v for v in product.variants)
            self._store_product(replace(product, variants=variants, updated_at=self.world.now()))
            return changed

    def add_variant(self, product_id: str, sku: str, *, tracked: bool = True) -> Variant:
        """A variant added in the admin, stocked at the primary location with 0 available."""
        with self.world.lock:
            product = self._product(product_id)
            variant = self._new_variant(
                Variant(id="", item_id="", sku=sku, tracked=tracked, title=sku)
            )
            self._stock_new(variant, 0, [self.primary_location_id])
            product = replace(
                product, variants=(*product.variants, variant), updated_at=self.world.now()
            )
            self._store_product(product)
            return variant

    def remove_variant(self, variant_id: str) -> None:
        with self.world.lock:
            product = self._product(self._variant_product_id(variant_id))
            if len(product.variants) == 1:
                raise ValueError("a product keeps at least one variant; delete the product")
            variant = next(v for v in product.variants if v.id == variant_id)
            self._forget_variant(variant)
            variants = tuple(v for v in product.variants if v.id != variant_id)
            self._store_product(replace(product, variants=variants, updated_at=self.world.now()))

    def delete_product(self, product_id: str) -> None:
        with self.world.lock:
            product = self._product(product_id)
            for variant in product.variants:
                self._forget_variant(variant)
            del self._products[product_id]
            self._emit(TOPIC_PRODUCT_DELETE, ProductDeleted(product_id))

    def variant_by_sku(self, sku: str) -> Variant:
        """The only variant with this SKU (a test helper; raises when none or several)."""
        with self.world.lock:
            found = [v for p in self._products.values() for v in p.variants if v.sku == sku]
            if len(found) != 1:
                raise LookupError(f"{len(found)} variants with SKU {sku!r} in {self.ref!r}")
            return found[0]

    def product(self, product_id: str) -> Product:
        with self.world.lock:
            return self._product(product_id)

    # === merchant side: orders ================================================================

    def place_order(
        self,
        lines: Sequence[tuple[str | None, int]],
        *,
        financial_status: PlacedStatus = "paid",
        location_id: str | None = None,
        inventory_behaviour: InventoryBehaviour = "decrement_ignoring_policy",
    ) -> OrderSnapshot:
        """A customer's order: ``lines`` are (variant id, or None for a custom item, quantity).

        Units of tracked variants are claimed from ``location_id`` (default: the primary
        location), as Shopify's inventory behaviours say: ``bypass`` claims nothing,
        ``decrement_obeying_policy`` refuses to oversell a variant that does not continue
        selling, ``decrement_ignoring_policy`` may take a level below zero."""
        with self.world.lock:
            if financial_status not in _PLACED_STATUSES:
                raise ValueError(f"an order cannot be placed {financial_status!r}")
            if not lines:
                raise ValueError("an order has at least one line")
            location = location_id or self.primary_location_id
            self._require_writable(location)
            order_lines = [self._new_line(variant_id, qty) for variant_id, qty in lines]
            if inventory_behaviour == "decrement_obeying_policy":
                self._check_can_sell(order_lines, location)
            version = self._next_version()
            order = _Order(
                id=self.world.new_id(),
                financial_status=financial_status,
                cancelled=False,
                version=version,
                location_id=location,
                lines=order_lines,
                created_at=version,
                fully_paid=financial_status == "paid",
            )
            self._orders[order.id] = order
            snapshot = self._snapshot(order)
            self._emit(TOPIC_ORDER_CREATE, OrderSeen(snapshot))
            if financial_status == "paid":
                self._emit(TOPIC_ORDER_PAID, OrderSeen(snapshot))
            if inventory_behaviour != "bypass":
                for line in order_lines:
                    self._claim(line, location, line.quantity)
            return snapshot

    def record_payment(self, order_id: str, *, in_full: bool) -> OrderSnapshot:
        """A payment captured on an order that owes money. In full, it is :meth:`mark_paid`.
        Otherwise a part of what is owed (a deposit paid further): pending, authorized or
        partially paid -> partially paid, still owing; a partially refunded deposit stays
        partially refunded. Shopify sends ``orders/paid`` only once an order is paid in full:
        a part payment is an ``orders/updated``."""
        if in_full:
            return self.mark_paid(order_id)
        with self.world.lock:
            order = self._open_order(order_id)
            owing = order.financial_status in _UNPAID or (
                order.financial_status == "partially_refunded" and not order.fully_paid
            )
            if not owing:
                raise ValueError(f"an order {order.financial_status} owes nothing")
            if order.financial_status in _UNPAID:
                order.financial_status = "partially_paid"
            order.fully_paid = False
            snapshot = self._touch(order)
            self._emit(TOPIC_ORDER_UPDATED, OrderSeen(snapshot))
            return snapshot

    def mark_paid(self, order_id: str) -> OrderSnapshot:
        """Payment captured (pending / authorized / partially paid -> paid). The balance of a
        partially refunded deposit order may be paid too: it stays ``partially_refunded``
        (money went back once) and is paid in full from then on."""
        with self.world.lock:
            order = self._open_order(order_id)
            balance_after_refund = (
                order.financial_status == "partially_refunded" and not order.fully_paid
            )
            if order.financial_status not in _UNPAID and not balance_after_refund:
                raise ValueError(f"an order {order.financial_status} cannot be marked paid")
            if not balance_after_refund:
                order.financial_status = "paid"
            order.fully_paid = True
            snapshot = self._touch(order)
            self._emit(TOPIC_ORDER_PAID, OrderSeen(snapshot))
            self._emit(TOPIC_ORDER_UPDATED, OrderSeen(snapshot))
            return snapshot

    def edit_order(
        self, order_id: str, line_id: str, new_quantity: int, *, restock: bool = True
    ) -> OrderSnapshot:
        """Change a line's quantity: added units are claimed; removed ones go back to the
        order's location when ``restock`` (Shopify's ``orderEditSetQuantity``)."""
        with self.world.lock:
            order = self._open_order(order_id)
            line = self._line(order, line_id)
            if new_quantity < order.refunded(line_id):
                raise ValueError("a line cannot go below the units already refunded")
            difference = new_quantity - line.quantity
            line.quantity = new_quantity
            if difference > 0 or restock:
                self._claim(line, order.location_id, difference)
            return self._edited(order, added=difference > 0)

    def add_order_line(self, order_id: str, variant_id: str, quantity: int) -> str:
        """A line added by an order edit; returns its id."""
        with self.world.lock:
            order = self._open_order(order_id)
            line = self._new_line(variant_id, quantity)
            order.lines.append(line)
            self._claim(line, order.location_id, quantity)
            self._edited(order, added=True)
            return line.id

    def refund(
        self,
        order_id: str,
        lines: Sequence[tuple[str, int]],
        *,
        restock: bool,
        location_id: str | None = None,
        refund_money: bool = True,
    ) -> Refund:
        """A refund of (line id, quantity) pairs, restocking at ``location_id`` (default: the
        order's location) when ``restock``."""
        with self.world.lock:
            order = self._order(order_id)
            location = location_id or order.location_id
            if restock:
                self._require_writable(location)
            wanted: Counter[str] = Counter()
            for line_id, quantity in lines:
                line = self._line(order, line_id)
                wanted[line_id] += quantity
                if quantity <= 0:
                    raise ValueError("a refund line refunds at least one unit")
                if order.refunded(line_id) + wanted[line_id] > line.quantity:
                    raise ValueError(f"line {line_id} has fewer units left to refund")
            refund = self._record_refund(order, lines, restock, location)
            if refund_money and order.financial_status in _MONEY_TAKEN:
                remaining = sum(ln.quantity - order.refunded(ln.id) for ln in order.lines)
                order.financial_status = "refunded" if remaining == 0 else "partially_refunded"
            snapshot = self._touch(order)
            self._emit(TOPIC_REFUND_CREATE, RefundSeen(order.id, refund))
            self._emit(TOPIC_ORDER_UPDATED, OrderSeen(snapshot))
            return refund

    def refund_money(self, order_id: str) -> Refund:
        """A refund of money alone, as Shopify records one made with transactions and no
        refund line items: no unit is refunded or restocked. Only an order that took money
        (paid, partially paid or partially refunded) can give some back; it becomes partially
        refunded (refunded once every unit was refunded)."""
        with self.world.lock:
            status = self._order(order_id).financial_status
            if status not in _MONEY_TAKEN:
                raise ValueError(f"an order {status} has no money to refund")
            return self.refund(order_id, [], restock=False)

    def uninstall_app(self) -> None:
        """The merchant uninstalls the app: ``app/uninstalled`` is delivered, then the token is
        refused and the app's webhook subscriptions are gone until :meth:`reinstall_app`."""
        with self.world.lock:
            if not self.app_installed:
                raise ValueError(f"the app is not installed on {self.ref!r}")
            self._emit(TOPIC_APP_UNINSTALLED, AppUninstalled())
            self.app_installed = False

    def reinstall_app(self) -> None:
        """The merchant installs the app again: calls are answered and webhooks sent again
        (the install subscribes them anew)."""
        with self.world.lock:
            self.app_installed = True

    def cancel_order(
        self, order_id: str, *, restock: bool, refund_money: bool = True
    ) -> OrderSnapshot:
        """Cancel: every unit not yet refunded is refunded (restocked at the order's location
        when ``restock``) in one refund; see the module's notes for the financial status."""
        with self.world.lock:
            order = self._open_order(order_id)
            remaining = [
                (ln.id, ln.quantity - order.refunded(ln.id))
                for ln in order.lines
                if ln.quantity > order.refunded(ln.id)
            ]
            if restock and remaining:
                self._require_writable(order.location_id)
            refund = (
                self._record_refund(order, remaining, restock, order.location_id)
                if remaining
                else None
            )
            order.cancelled = True
            if order.financial_status in ("pending", "authorized"):
                order.financial_status = "voided"
            elif refund_money and order.financial_status in _MONEY_TAKEN:
                order.financial_status = "refunded"
            snapshot = self._touch(order)
            if refund is not None:
                self._emit(TOPIC_REFUND_CREATE, RefundSeen(order.id, refund))
            self._emit(TOPIC_ORDER_CANCELLED, OrderSeen(snapshot))
            self._emit(TOPIC_ORDER_UPDATED, OrderSeen(snapshot))
            return snapshot

    def orders(self) -> list[OrderSnapshot]:
        """Every order now, oldest version first (a test helper: no call counted, no fault)."""
        with self.world.lock:
            return [self._snapshot(o) for o in sorted(self._orders.values(), key=_by_version)]

    def order(self, order_id: str) -> OrderSnapshot:
        """The order now (a test helper: no call counted, no fault)."""
        with self.world.lock:
            return self._snapshot(self._order(order_id))

    def order_location(self, order_id: str) -> str:
        with self.world.lock:
            return self._order(order_id).location_id

    # === internals: API plumbing ==============================================================

    async def _travel(self) -> None:
        if self.world.yield_on_call:
            await asyncio.sleep(0)  # a bare yield to the event loop; no time passes

    def _gate(self, method: str) -> bool:
        """Count the call and inject its fault; True when its response is to be lost."""
        self.counters.calls[method] += 1
        if self.faults.unreachable:
            self.counters.faults["unreachable"] += 1
            raise TransientPlatformError(f"{self.ref}: connection refused")
        if self.faults.auth_revoked or not self.app_installed:
            self.counters.faults["auth_revoked"] += 1
            raise AuthError(f"{self.ref}: invalid API key or access token")
        drawn = self.faults.draw(method)
        if drawn is None:
            return False
        kind, retry_after = drawn
        self.counters.faults[kind] += 1
        if kind == "lost_response":
            return True
        if kind == "throttled":
            raise ThrottledError(f"{self.ref}: throttled", retry_after=retry_after)
        if kind == "timeout":
            raise TransientPlatformError(f"{self.ref}: {method} timed out")
        if kind == "attempt_failed":
            raise _AttemptFailedError(f"{self.ref}: {method}: the quantities couldn't be adjusted")
        raise TransientPlatformError(f"{self.ref}: {method} failed with an internal error")

    def _gate_adjustment(self, method: str, key: str) -> bool:
        """``_gate`` for an adjustment: an injected failed attempt is remembered against its
        key, and a key whose attempt failed is refused until a new one is used."""
        try:
            lost = self._gate(method)
        except _AttemptFailedError:
            if key:
                self._failed_keys.add(key)
            raise
        if key in self._failed_keys:
            raise IdempotencyKeySpentError(
                f"{self.ref}: a previous request with idempotency key {key!r} failed"
            )
        return lost

    def _answer(self, lost: bool, result: _T) -> _T:
        if lost:
            raise TransientPlatformError(f"{self.ref}: connection lost before the response")
        return result

    def _run_pending_race(self) -> None:
        race = self.faults.pending_race
        if race is None:
            return
        self.faults.pending_race = None
        item_id, location_id, delta = race
        if (item_id, location_id) in self._levels:
            self._move(item_id, location_id, delta)

    def _set_levels(self, writes: Sequence[LevelWrite]) -> SetOutcome:
        if len(writes) > self.max_batch:
            raise UserErrors(
                f"the input array size of {len(writes)} is greater than the maximum allowed"
                f" of {self.max_batch}",
                ["MAX_INPUT_SIZE_EXCEEDED"],
            )
        seen: set[tuple[str, str]] = set()
        for write in writes:
            key = (write.item_id, write.location_id)
            if key in seen:
                raise UserErrors(
                    f"item {write.item_id} appears twice at location {write.location_id}",
                    ["NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR"],
                )
            seen.add(key)
            self._check_api_write(write.item_id, write.location_id)
            if write.quantity < 0:
                raise UserErrors(
                    f"quantity {write.quantity} is negative", ["INVALID_QUANTITY_NEGATIVE"]
                )
            if write.quantity > MAX_QUANTITY:
                raise UserErrors(
                    f"quantity {write.quantity} is too high", ["INVALID_QUANTITY_TOO_HIGH"]
                )
        stale: dict[str, None] = {}  # ordered set: the order of the batch
        for write in writes:
            current = self._levels.get((write.item_id, write.location_id))
            if write.compare is not None and current != write.compare:
                stale[write.item_id] = None
        if stale:
            self.counters.stale_batches += 1
            return SetOutcome(stale=tuple(stale))
        for write in writes:
            self._put_level(write.item_id, write.location_id, write.quantity)
            self.counters.quantities_written += 1
        return SetOutcome()

    def _adjust_levels(self, changes: Sequence[LevelAdjustment], key: str) -> None:
        """All changes or none: every one is checked before any applies."""
        if not key:
            raise UserErrors("an idempotency key is required", ["INVALID_IDEMPOTENCY_KEY"])
        if len(changes) > self.max_batch:
            raise UserErrors(
                f"the input array size of {len(changes)} is greater than the maximum allowed"
                f" of {self.max_batch}",
                ["INVALID_INPUT"],
            )
        signature = tuple((c.item_id, c.location_id, c.delta) for c in changes)
        previous = self._idempotency.get(key)
        if previous is not None:
            if previous != signature:
                raise IdempotencyConflictError(
                    f"idempotency key {key!r} was used with a different input"
                )
            return
        after: dict[tuple[str, str], int] = {}
        for change in changes:
            pair = (change.item_id, change.location_id)
            self._check_api_write(*pair)
            current = after.get(pair, self._levels.get(pair))
            if current is None:
                raise UserErrors(
                    f"item {change.item_id} is not stocked at location {change.location_id}",
                    ["ITEM_NOT_STOCKED_AT_LOCATION"],
                )
            if current + change.delta > MAX_QUANTITY:
                raise UserErrors(
                    "the resulting quantity is too high", ["INVALID_QUANTITY_TOO_HIGH"]
                )
            if current + change.delta < -MAX_QUANTITY:
                raise UserErrors("the resulting quantity is too low", ["INVALID_QUANTITY_TOO_LOW"])
            after[pair] = current + change.delta
        for change in changes:
            self._move(change.item_id, change.location_id, change.delta)
            self.counters.quantities_written += 1
            self.counters.units_adjusted += abs(change.delta)
        self._idempotency[key] = signature

    def _check_api_write(self, item_id: str, location_id: str) -> None:
        if location_id not in self._locations:
            # a deleted location answers like an inactive one: it can no longer receive stock
            if location_id in self._deleted_locations:
                raise LocationInactiveError(f"location {location_id} no longer exists", location_id)
            raise UserErrors(f"no location {location_id}", ["INVALID_LOCATION"])
        if not self._locations[location_id].active:
            raise LocationInactiveError(f"location {location_id} is not active", location_id)
        if item_id not in self._item_variant:
            raise UserErrors(f"no inventory item {item_id}", ["INVALID_INVENTORY_ITEM"])

    # === internals: state =====================================================================

    def _emit(self, topic: str, event: InboundEvent) -> None:
        self.world.emit(self.ref, topic, event)

    def _put_level(self, item_id: str, location_id: str, quantity: int) -> None:
        previous = self._levels.get((item_id, location_id))
        self._levels[(item_id, location_id)] = quantity
        if previous != quantity:
            self._emit(TOPIC_LEVEL_UPDATE, LevelChanged(item_id, location_id, quantity))

    def _move(self, item_id: str, location_id: str, delta: int) -> None:
        current = self._levels.get((item_id, location_id), 0)
        self._put_level(item_id, location_id, current + delta)

    def _claim(self, line: _Line, location_id: str, units: int) -> None:
        """Take ``units`` of a line's item from a location (negative units give them back)."""
        if line.tracked and line.item_id is not None and line.item_id in self._item_variant:
            self._move(line.item_id, location_id, -units)

    def _check_can_sell(self, lines: Sequence[_Line], location_id: str) -> None:
        wanted: Counter[str] = Counter()
        for line in lines:
            if line.tracked and line.item_id is not None:
                wanted[line.item_id] += line.quantity
        for item_id, units in wanted.items():
            variant = self._variant(self._item_variant[item_id])
            available = self._levels.get((item_id, location_id), 0)
            if units > available and not variant.continue_selling:
                raise OutOfStockError(f"only {available} of {variant.sku!r} left")

    def _require_item(self, item_id: str) -> None:
        if item_id not in self._item_variant:
            raise KeyError(f"no inventory item {item_id} in {self.ref!r}")

    def _require_writable(self, location_id: str) -> None:
        location = self._location(location_id)
        if not location.active:
            raise LocationInactiveError(f"location {location_id} is not active", location_id)

    def _location(self, location_id: str) -> PlatformLocation:
        try:
            return self._locations[location_id]
        except KeyError:
            raise KeyError(f"no location {location_id} in {self.ref!r}") from None

    def _set_location_active(self, location_id: str, active: bool) -> None:
        with self.world.lock:
            location = self._location(location_id)
            self._locations[location_id] = replace(location, active=active)

    def _product(self, product_id: str) -> Product:
        try:
            return self._products[product_id]
        except KeyError:
            raise KeyError(f"no product {product_id} in {self.ref!r}") from None

    def _variant_product_id(self, variant_id: str) -> str:
        try:
            return self._variant_product[variant_id]
        except KeyError:
            raise KeyError(f"no variant {variant_id} in {self.ref!r}") from None

    def _variant(self, variant_id: str) -> Variant:
        product = self._product(self._variant_product_id(variant_id))
        return next(v for v in product.variants if v.id == variant_id)

    def _store_product(self, product: Product) -> Product:
        self._products[product.id] = product
        for variant in product.variants:
            self._variant_product[variant.id] = product.id
            self._item_variant[variant.item_id] = variant.id
        self._emit(TOPIC_PRODUCT_UPDATE, ProductChanged(product.id))
        return product

    def _new_variant(self, template: Variant) -> Variant:
        return replace(template, id=self.world.new_id(), item_id=self.world.new_id())

    def _stock_new(self, variant: Variant, available: int, location_ids: Sequence[str]) -> None:
        # a new item's first levels come with its product's creation, not as level updates
        for location_id in location_ids:
            self._levels[(variant.item_id, location_id)] = available

    def _create(
        self, draft: ProductDraft, *, available: int, location_ids: Sequence[str] | None
    ) -> Product:
        if not draft.variants:
            raise UserErrors("a product needs at least one variant", ["INVALID"])
        variants = tuple(self._new_variant(v) for v in draft.variants)
        product = Product(
            id=self.world.new_id(),
            title=draft.title,
            variants=variants,
            description=draft.description,
            vendor=draft.vendor,
            product_type=draft.product_type,
            tags=draft.tags,
            status=draft.status,
            images=draft.images,
            options=draft.options,
            updated_at=self.world.now(),
        )
        where = [self.primary_location_id] if location_ids is None else list(location_ids)
        for variant in variants:
            self._stock_new(variant, available, where)
            self._variant_product[variant.id] = product.id
            self._item_variant[variant.item_id] = variant.id
        self._products[product.id] = product
        self._emit(TOPIC_PRODUCT_CREATE, ProductChanged(product.id))
        return product

    def _forget_variant(self, variant: Variant) -> None:
        self._variant_product.pop(variant.id, None)
        self._item_variant.pop(variant.item_id, None)
        for key in [k for k in self._levels if k[0] == variant.item_id]:
            del self._levels[key]

    def _next_version(self) -> str:
        if self.world.whole_second_versions:
            version = format_version(self.world.now().replace(microsecond=0))
            self._last_version = max(version, self._last_version)
            return self._last_version
        version = format_version(self.world.now())
        if version <= self._last_version:
            last = datetime.fromisoformat(self._last_version.replace("Z", "+00:00"))
            version = format_version(last + timedelta(microseconds=1))
        self._last_version = version
        return version

    def _order(self, order_id: str) -> _Order:
        try:
            return self._orders[order_id]
        except KeyError:
            raise KeyError(f"no order {order_id} in {self.ref!r}") from None

    def _open_order(self, order_id: str) -> _Order:
        order = self._order(order_id)
        if order.cancelled:
            raise ValueError(f"order {order_id} is cancelled")
        return order

    def _line(self, order: _Order, line_id: str) -> _Line:
        for line in order.lines:
            if line.id == line_id:
                return line
        raise KeyError(f"no line {line_id} in order {order.id}")

    def _new_line(self, variant_id: str | None, quantity: int) -> _Line:
        if quantity <= 0:
            raise ValueError("an order line has at least one unit")
        if variant_id is None:
            return _Line(self.world.new_id(), None, None, "", quantity, tracked=False)
        variant = self._variant(variant_id)
        return _Line(
            self.world.new_id(), variant.id, variant.item_id, variant.sku, quantity, variant.tracked
        )

    def _record_refund(
        self,
        order: _Order,
        lines: Sequence[tuple[str, int]],
        restock: bool,
        location_id: str,
    ) -> Refund:
        refund_lines = tuple(
            RefundLine(
                id=self.world.new_id(),
                line_id=line_id,
                quantity=quantity,
                restock=restock,
                location_id=location_id if restock else None,
            )
            for line_id, quantity in lines
        )
        refund = Refund(self.world.new_id(), refund_lines)
        order.refunds.append(refund)
        if restock:
            for refund_line in refund_lines:
                line = self._line(order, refund_line.line_id)
                self._claim(line, location_id, -refund_line.quantity)
        return refund

    def _edited(self, order: _Order, *, added: bool) -> OrderSnapshot:
        if added and order.financial_status in ("paid", "partially_refunded"):
            order.financial_status = "partially_paid"
        if added:
            order.fully_paid = False  # the added units are owed
        snapshot = self._touch(order)
        self._emit(TOPIC_ORDER_EDITED, OrderEdited(order.id))
        self._emit(TOPIC_ORDER_UPDATED, OrderSeen(snapshot))
        return snapshot

    def _touch(self, order: _Order) -> OrderSnapshot:
        order.version = self._next_version()
        return self._snapshot(order)

    def _snapshot(self, order: _Order) -> OrderSnapshot:
        return OrderSnapshot(
            id=order.id,
            financial_status=order.financial_status,
            cancelled=order.cancelled,
            version=order.version,
            created_at=order.created_at,
            lines=tuple(
                OrderLine(
                    id=line.id,
                    # Shopify reports no variant on lines whose variant was deleted since
                    variant_id=(
                        line.variant_id if line.variant_id in self._variant_product else None
                    ),
                    sku=line.sku,
                    quantity=line.quantity,
                )
                for line in order.lines
            ),
            refunds=tuple(order.refunds),
            paid_in_full=order.fully_paid,
        )
