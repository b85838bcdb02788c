"""``ShopifyPlatform``: the engine's :class:`~stocksync.domain.ports.StorePlatform` on Shopify.

Shopify relies on (Admin GraphQL, default version 2026-10):

* levels are the ``available`` quantity of an ``InventoryLevel`` (item x location); an item
  not stocked at a location has no level there (``inventoryLevel`` is null);
* ``inventorySetQuantities`` is all-or-nothing: one stale compare, unknown item or unstocked
  location refuses the whole mutation with one userError per offending quantity, whose
  ``field`` path ends in the quantity's index. From 2026-01 the compare is
  ``changeFromQuantity`` (``CHANGE_FROM_QUANTITY_STALE``; mandatory from 2026-04, an
  explicit null opting a quantity out) and the mutation accepts ``@idempotent(key:)``
  (mandatory from 2026-04). Earlier versions are refused (``versions.refusal``): their
  adjustments take no idempotency key. Input arrays hold at most 250 entries;
* ``ITEM_NOT_STOCKED_AT_LOCATION`` is also what a deactivated location answers, so the
  location's ``isActive`` is read before activating anything (``inventoryActivate``);
* ``inventoryAdjustQuantities`` with ``@idempotent(key:)``: the same key and input answer
  the first result again; the same key with another input is
  ``IDEMPOTENCY_KEY_PARAMETER_MISMATCH``; ``ADJUST_QUANTITIES_FAILED`` and
  ``SERVICE_UNAVAILABLE`` mean "try again" (transient); ``IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED``
  means the key's earlier attempt failed and the same change needs a new key. One mutation
  takes up to 250 changes and applies all or none;
* ``LineItem.quantity`` counts every unit ordered *including* refunded and removed (edited
  out) units; ``currentQuantity`` *excludes* both. Units ordered after edits, refunds not
  subtracted (the engine's convention), are therefore ``currentQuantity`` plus the units
  refunded on that line;
* refund line restock types: ``NO_RESTOCK`` returns nothing to stock; ``CANCEL`` (unfulfilled
  units), ``RETURN`` (fulfilled units) and the older ``LEGACY_RESTOCK`` may; whether a line's
  units were restocked is ``RefundLineItem.restocked``, which alone decides. A restocking
  cancellation is recorded as a refund;
* ``Order.fullyPaid``: the order is paid in full now (nothing outstanding). An order paid
  and then edited to add units is not, until the balance is paid; ``displayFinancialStatus``
  ``PARTIALLY_REFUNDED`` says nothing about it (a deposit order refunded in part never was);
* order search ``updated_at:>=...`` with ``sortKey: UPDATED_AT``; timestamps have whole-second
  resolution (and only the last 60 days of orders are visible without ``read_all_orders``).

Ids are decimal text (see :mod:`.ids`).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from stocksync.domain.orders import parse_instant
from stocksync.domain.orders import version_text as format_version
from stocksync.domain.ports import (
    IdempotencyConflictError,
    IdempotencyKeySpentError,
    LevelAdjustment,
    LevelsRead,
    LevelWrite,
    LocationInactiveError,
    OrderSnapshot,
    PermanentPlatformError,
    PlatformLocation,
    Product,
    ProductDraft,
    SetOutcome,
    SubscriptionReport,
    TransientPlatformError,
    UserErrors,
    Variant,
)
from stocksync.platforms.shopify.bulk import BulkOperations
from stocksync.platforms.shopify.client import (
    GraphQLErrors,
    QueryCostExceededError,
    RetryPolicy,
    ShopifyClient,
)
from stocksync.platforms.shopify.documents import document
from stocksync.platforms.shopify.ids import InvalidIdError, numeric_id, to_gid
from stocksync.platforms.shopify.mapping import (
    available,
    epoch_seconds,
    level_time,
    order_from_node,
    product_from_node,
    product_set_input,
    variant_from_node,
)
from stocksync.platforms.shopify.subscriptions import ensure_subscriptions, webhook_topics
from stocksync.platforms.shopify.throttle import Clock, Sleep
from stocksync.platforms.shopify.versions import DEFAULT_VERSION, require_safe

MAX_BATCH = 250  # Shopify's limit on input arrays
STALE_CODES = frozenset({"CHANGE_FROM_QUANTITY_STALE", "COMPARE_QUANTITY_STALE"})
NOT_STOCKED = "ITEM_NOT_STOCKED_AT_LOCATION"
# inventoryAdjustQuantities user errors that mean "nothing applied, try again"
TRY_AGAIN_CODES = frozenset({"ADJUST_QUANTITIES_FAILED", "SERVICE_UNAVAILABLE"})
# The key's earlier attempt failed: Shopify asks for a new key (see implementing-idempotency)
PREVIOUS_ATTEMPT_FAILED = "IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED"
PRODUCT_STATUSES = frozenset({"ACTIVE", "DRAFT", "ARCHIVED"})
SKU_QUERY_BATCH = 20  # SKUs per productVariants search, to keep the query text short
_T = TypeVar("_T")


def _group_time(group: dict[str, Any] | None) -> int | None:
    """An adjustment group's ``createdAt`` in whole epoch seconds, as level webhooks give
    ``updated_at``; None when nothing changed (no group) or the time is unreadable."""
    return epoch_seconds((group or {}).get("createdAt"))


class ShopifyPlatform:
    """One Shopify store. Keep one instance per store: its cost bucket is that store's."""

    def __init__(
        self,
        shop_domain: str,
        access_token: str,
        *,
        api_version: str = DEFAULT_VERSION,
        base_url: str | None = None,
        http_client: httpx.AsyncClient | None = None,
        batch_size: int = MAX_BATCH,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        sleep: Sleep | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        reason: str = "correction",
        bulk_poll_interval: float = 1.0,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH}")
        # Every inventory mutation carries an idempotency key; older versions have none.
        require_safe(api_version)
        self.client = ShopifyClient(
            shop_domain,
            access_token,
            api_version=api_version,
            base_url=base_url,
            http_client=http_client,
            timeout=timeout,
            retry=retry,
            sleep=sleep,
            clock=clock,
            rng=rng,
        )
        self.shop_domain = shop_domain
        self.api_version = api_version
        self.batch_size = batch_size
        self.reason = reason
        self.bulk = BulkOperations(self.client, poll_interval=bulk_poll_interval)
        # Page sizes start at what fits Shopify's 1,000-point query limit and are halved for
        # the life of this instance whenever Shopify answers MAX_COST_EXCEEDED.
        self.read_chunk = MAX_BATCH
        self.products_page = 10
        self.orders_page = 4
        self.variants_page = 100

    async def aclose(self) -> None:
        await self.client.aclose()

    async def ensure_subscriptions(
        self, *, source: bool, destination: bool, callback_url: str, create: bool = True
    ) -> SubscriptionReport:
        topics = webhook_topics(source=source, destination=destination)
        return await ensure_subscriptions(self.client, topics, callback_url, create=create)

    async def _run(
        self, name: str, variables: Mapping[str, Any] | None = None, *, retry_safe: bool = True
    ) -> dict[str, Any]:
        answer = await self.client.execute(name, document(name), variables, retry_safe=retry_safe)
        return answer.data

    async def _shrinking(self, attr: str, call: Callable[[int], Awaitable[_T]]) -> _T:
        """Run ``call(size)``, halving the page/batch size ``attr`` on MAX_COST_EXCEEDED."""
        while True:
            size: int = getattr(self, attr)
            try:
                return await call(size)
            except QueryCostExceededError:
                if size <= 1:
                    raise
                setattr(self, attr, max(1, size // 2))

    # ================================================================== locations and levels
    async def list_locations(self) -> list[PlatformLocation]:
        found: list[PlatformLocation] = []
        after: str | None = None
        while True:
            data = await self._run("locations", {"first": 250, "after": after})
            connection = data["locations"]
            for node in connection["nodes"]:
                found.append(
                    PlatformLocation(
                        id=numeric_id(node["id"], "Location"),
                        name=str(node["name"]),
                        active=bool(node["isActive"]),
                    )
                )
            if not connection["pageInfo"]["hasNextPage"]:
                return found
            after = connection["pageInfo"]["endCursor"]

    async def read_levels(self, item_ids: Sequence[str], location_ids: Sequence[str]) -> LevelsRead:
        result = LevelsRead({(i, loc): None for i in item_ids for loc in location_ids})
        items: list[tuple[str, str]] = []  # (caller's id, gid); ids that cannot exist read None
        for item_id in dict.fromkeys(item_ids):
            try:
                items.append((item_id, to_gid("InventoryItem", item_id)))
            except InvalidIdError:
                continue
        for location_id in dict.fromkeys(location_ids):
            try:
                location_gid = to_gid("Location", location_id)
            except InvalidIdError:
                continue
            start = 0
            while start < len(items):

                async def read(
                    size: int, start: int = start, loc: str = location_gid, lid: str = location_id
                ) -> int:
                    chunk = items[start : start + size]
                    data = await self._run(
                        "inventory_levels", {"ids": [g for _, g in chunk], "locationId": loc}
                    )
                    for (item_id, _), node in zip(chunk, data["nodes"], strict=False):
                        result[(item_id, lid)] = available(node)
                        changed = level_time(node)
                        if changed is not None:
                            result.updated_at[(item_id, lid)] = changed
                    return len(chunk)

                start += await self._shrinking("read_chunk", read)
        return result

    async def set_levels(self, writes: Sequence[LevelWrite]) -> SetOutcome:
        if not writes:
            return SetOutcome()
        if len(writes) > self.batch_size:
            raise UserErrors(
                f"the input array size of {len(writes)} is greater than the maximum allowed"
                f" of {self.batch_size}",
                ["MAX_INPUT_SIZE_EXCEEDED"],
            )
        try:
            quantities_base = [
                (to_gid("InventoryItem", w.item_id), to_gid("Location", w.location_id), w)
                for w in writes
            ]
        except InvalidIdError as exc:
            raise UserErrors(str(exc), ["INVALID_INVENTORY_ITEM"]) from None
        activated = False
        while True:
            errors, group = await self._send_set(quantities_base)
            if not errors:
                return SetOutcome(changed_at=_group_time(group))
            by_index = _errors_by_index(errors, "quantities")
            codes = {e.get("code") for e in errors}
            handled = STALE_CODES | {NOT_STOCKED}
            other = [e for e in errors if e.get("code") not in handled]
            if other:
                raise _user_errors("inventorySetQuantities", other)
            not_stocked = [i for i, c in by_index if c == NOT_STOCKED]
            if not_stocked:
                await self._require_active({writes[i].location_id for i in not_stocked})
            # An item we believed stocked (an integer compare) that is not stocked is stale:
            # the level we compared against no longer exists.
            stale_indices = [i for i, c in by_index if c in STALE_CODES] + [
                i for i in not_stocked if writes[i].compare is not None
            ]
            if stale_indices or (codes & STALE_CODES):
                # without a usable field path every item of the batch is suspect
                ordered = sorted(set(stale_indices)) or list(range(len(writes)))
                return SetOutcome(stale=tuple(dict.fromkeys(writes[i].item_id for i in ordered)))
            if activated:
                raise UserErrors(
                    "inventory items are still not stocked after activation",
                    [NOT_STOCKED],
                )
            for i in not_stocked:
                await self._activate(writes[i].item_id, writes[i].location_id)
            activated = True  # retried once: a second refusal is reported, never looped

    async def _send_set(
        self, entries: Sequence[tuple[str, str, LevelWrite]]
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """The user errors, and the adjustment group when something was applied."""
        input_: dict[str, Any] = {
            "name": "available",
            "reason": self.reason,
            "referenceDocumentUri": f"stocksync://{quote(self.shop_domain)}/levels",
        }
        # changeFromQuantity is given for every quantity, null where we hold no compare
        # (mandatory from 2026-04; an explicit null opts that quantity out).
        input_["quantities"] = [
            {
                "inventoryItemId": item,
                "locationId": loc,
                "quantity": w.quantity,
                "changeFromQuantity": w.compare,
            }
            for item, loc, w in entries
        ]
        # A fresh key per logical write: a retry after a lost answer replays it, while a
        # later write with the same values is a new write.
        key = uuid.uuid4().hex
        for _ in range(3):
            data = await self._run(
                "inventory_set_quantities", {"input": input_, "idempotencyKey": key}
            )
            payload = data["inventorySetQuantities"]
            errors = list(payload["userErrors"])
            if not any(e.get("code") == "IDEMPOTENCY_CONCURRENT_REQUEST" for e in errors):
                return errors, payload.get("inventoryAdjustmentGroup")
            await self.client.sleep(self.client.retry.base_delay)
        raise TransientPlatformError(f"{self.shop_domain}: write still in progress")

    async def _activate(self, item_id: str, location_id: str) -> None:
        data = await self._run(
            "inventory_activate",
            {
                "inventoryItemId": to_gid("InventoryItem", item_id),
                "locationId": to_gid("Location", location_id),
            },
        )
        payload = data["inventoryActivate"]
        if payload["userErrors"]:
            raise UserErrors(
                f"inventoryActivate refused item {item_id} at location {location_id}: "
                + "; ".join(str(e.get("message")) for e in payload["userErrors"]),
                ["INVENTORY_ACTIVATE_FAILED"],
            )

    async def _require_active(self, location_ids: Iterable[str]) -> None:
        """Raise LocationInactiveError for a deactivated or deleted location among these."""
        ids = sorted(set(location_ids))
        data = await self._run("location_status", {"ids": [to_gid("Location", i) for i in ids]})
        for location_id, node in zip(ids, data["nodes"], strict=False):
            if not node or not node.get("isActive"):
                raise LocationInactiveError(
                    f"{self.shop_domain}: location {location_id} is deactivated or deleted",
                    location_id,
                )

    async def adjust_level(
        self, item_id: str, location_id: str, delta: int, idempotency_key: str
    ) -> None:
        await self.adjust_levels([LevelAdjustment(item_id, location_id, delta)], idempotency_key)

    async def adjust_levels(self, changes: Sequence[LevelAdjustment], idempotency_key: str) -> None:
        """One ``inventoryAdjustQuantities`` with every change (at most 250): Shopify applies
        all of them or none."""
        if not idempotency_key:
            raise UserErrors("an idempotency key is required", ["INVALID_IDEMPOTENCY_KEY"])
        if len(changes) > MAX_BATCH:
            raise UserErrors(
                f"{len(changes)} changes in one adjustment; at most {MAX_BATCH}", ["INVALID_INPUT"]
            )
        if not changes:
            return
        try:
            input_changes: list[dict[str, Any]] = [
                {
                    "delta": c.delta,
                    "inventoryItemId": to_gid("InventoryItem", c.item_id),
                    "locationId": to_gid("Location", c.location_id),
                }
                for c in changes
            ]
        except InvalidIdError as exc:
            raise UserErrors(str(exc), ["INVALID_INVENTORY_ITEM"]) from None
        input_: dict[str, Any] = {
            "name": "available",
            "reason": self.reason,
            "referenceDocumentUri": f"stocksync://{quote(self.shop_domain)}/adjustments/"
            + quote(idempotency_key, safe=""),
            "changes": input_changes,
        }
        for change in input_changes:
            change["changeFromQuantity"] = None  # a relative change: no compare (explicitly)
        for _ in range(3):
            try:
                data = await self._run(
                    "inventory_adjust_quantities",
                    {"input": input_, "idempotencyKey": idempotency_key},
                )
            except GraphQLErrors as exc:
                # The same answer may come as a top-level error of the @idempotent directive.
                if PREVIOUS_ATTEMPT_FAILED in exc.codes:
                    raise IdempotencyKeySpentError(str(exc)) from exc
                raise
            errors = list(data["inventoryAdjustQuantities"]["userErrors"])
            if not any(e.get("code") == "IDEMPOTENCY_CONCURRENT_REQUEST" for e in errors):
                break
            await self.client.sleep(self.client.retry.base_delay)
        else:
            raise TransientPlatformError(f"{self.shop_domain}: adjustment still in progress")
        if not errors:
            return
        codes = {e.get("code") for e in errors}
        if "IDEMPOTENCY_KEY_PARAMETER_MISMATCH" in codes:
            raise IdempotencyConflictError(
                f"idempotency key {idempotency_key!r} was used with a different input"
            )
        if PREVIOUS_ATTEMPT_FAILED in codes:
            raise IdempotencyKeySpentError(
                f"{self.shop_domain}: an earlier attempt under idempotency key "
                f"{idempotency_key!r} failed; send it again under a new key"
            )
        if codes & TRY_AGAIN_CODES and codes <= TRY_AGAIN_CODES:
            # Shopify's own "try again": nothing was applied, and the change is still wanted.
            raise TransientPlatformError(
                f"{self.shop_domain}: inventoryAdjustQuantities asked to try again: "
                + "; ".join(str(e.get("message")) for e in errors)
            )
        if NOT_STOCKED in codes:
            await self._require_active({c.location_id for c in changes})
        raise _user_errors("inventoryAdjustQuantities", errors)

    # ============================================================================ products
    async def list_products(self) -> list[Product]:
        products: list[Product] = []
        after: str | None = None
        while True:

            async def page(size: int, after: str | None = after) -> dict[str, Any]:
                data = await self._run(
                    "products", {"first": size, "after": after, "variantsFirst": 10}
                )
                connection: dict[str, Any] = data["products"]
                return connection

            connection = await self._shrinking("products_page", page)
            for node in connection["nodes"]:
                products.append(await self._complete_product(node))
            if not connection["pageInfo"]["hasNextPage"]:
                return products
            after = connection["pageInfo"]["endCursor"]

    async def get_product(self, product_id: str) -> Product | None:
        try:
            gid = to_gid("Product", product_id)
        except InvalidIdError:
            return None
        data = await self._run("product", {"id": gid, "variantsFirst": self.variants_page})
        node = data.get("product")
        return None if node is None else await self._complete_product(node)

    async def _complete_product(self, node: Mapping[str, Any]) -> Product:
        variants = list(node["variants"]["nodes"])
        page_info = node["variants"]["pageInfo"]
        while page_info["hasNextPage"]:
            data = await self._run(
                "product_variants_page",
                {"id": node["id"], "first": self.variants_page, "after": page_info["endCursor"]},
            )
            if data.get("product") is None:  # deleted while we were reading it
                break
            variants.extend(data["product"]["variants"]["nodes"])
            page_info = data["product"]["variants"]["pageInfo"]
        return product_from_node(node, variants)

    async def find_variants_by_sku(self, skus: Sequence[str]) -> dict[str, list[Variant]]:
        found: dict[str, list[Variant]] = {sku: [] for sku in skus}
        wanted = [s for s in dict.fromkeys(skus) if s]  # Shopify cannot search an empty SKU
        for start in range(0, len(wanted), SKU_QUERY_BATCH):
            batch = wanted[start : start + SKU_QUERY_BATCH]
            query = " OR ".join(f"sku:{_search_value(s)}" for s in batch)
            after: str | None = None
            while True:
                data = await self._run(
                    "variants_by_sku", {"query": query, "first": 100, "after": after}
                )
                connection = data["productVariants"]
                for node in connection["nodes"]:
                    variant = variant_from_node(node)
                    # Shopify's search may match loosely (prefixes, case); keep exact matches
                    if variant.sku in found and variant.sku in batch:
                        found[variant.sku].append(variant)
                if not connection["pageInfo"]["hasNextPage"]:
                    break
                after = connection["pageInfo"]["endCursor"]
        return found

    async def create_product(self, draft: ProductDraft) -> Product:
        if not draft.variants:
            raise UserErrors("a product needs at least one variant", ["INVALID"])
        status = draft.status.upper()
        if status not in PRODUCT_STATUSES:
            raise UserErrors(f"unknown product status {draft.status!r}", ["INVALID_STATUS"])
        # A create has neither a compare nor an idempotency key on Shopify: never re-sent
        # blindly; the engine looks up the SKUs before creating again.
        data = await self._run(
            "product_set",
            {"input": product_set_input(draft, status), "variantsFirst": self.variants_page},
            retry_safe=False,
        )
        payload = data["productSet"]
        if payload["userErrors"]:
            raise _user_errors("productSet", payload["userErrors"])
        if payload.get("product") is None:
            raise PermanentPlatformError(f"{self.shop_domain}: productSet returned no product")
        return await self._complete_product(payload["product"])

    # ============================================================================== orders
    async def get_order(self, order_id: str) -> OrderSnapshot | None:
        try:
            gid = to_gid("Order", order_id)
        except InvalidIdError:
            return None
        data = await self._run("order", {"id": gid})
        node = data.get("order")
        return None if node is None else await self._complete_order(node)

    async def orders_changed_since(self, since: str | None) -> list[OrderSnapshot]:
        query: str | None = None
        since_version: str | None = None
        if since is not None:
            try:
                instant = parse_instant(since)
            except ValueError:
                raise UserErrors(f"not an instant: {since!r}", ["INVALID_QUERY"]) from None
            since_version = format_version(instant)
            # Shopify's timestamps have whole seconds: ask from the start of since's second,
            # inclusive, so an order changed later in that same second is never missed.
            floor = instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            query = f"updated_at:>='{floor}'"
        latest: dict[str, OrderSnapshot] = {}
        after: str | None = None
        while True:

            async def page(size: int, after: str | None = after) -> dict[str, Any]:
                data = await self._run(
                    "orders_changed", {"first": size, "after": after, "query": query}
                )
                connection: dict[str, Any] = data["orders"]
                return connection

            connection = await self._shrinking("orders_page", page)
            for node in connection["nodes"]:
                snapshot = await self._complete_order(node)
                # an order updated while we page may appear twice: keep its newest state
                seen = latest.get(snapshot.id)
                if seen is None or snapshot.version >= seen.version:
                    latest[snapshot.id] = snapshot
            if not connection["pageInfo"]["hasNextPage"]:
                break
            after = connection["pageInfo"]["endCursor"]
        # Inclusive bound: an order at exactly ``since`` comes again; the engine's per-order
        # records make that harmless, while a strict bound could lose an order for good.
        changed = [
            s for s in latest.values() if since_version is None or s.version >= since_version
        ]
        return sorted(changed, key=lambda s: (s.version, int(s.id)))

    async def _all_refunds(
        self, order_gid: str, first: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        data = await self._run("order_refund_ids", {"id": order_gid, "first": 250})
        ids = [r["id"] for r in (data.get("order") or {}).get("refunds") or []]
        if len(ids) <= len(first):
            return first
        try:
            data = await self._run("order_refunds", {"id": order_gid, "first": len(ids)})
            return [dict(r) for r in (data.get("order") or {}).get("refunds") or []]
        except QueryCostExceededError:
            pass
        # Too many to read in one list: the missing ones are read one by one (as nodes).
        known = {r["id"] for r in first}
        unread = {"nodes": [], "pageInfo": {"hasNextPage": True, "endCursor": None}}
        return first + [
            {"id": rid, "refundLineItems": dict(unread)} for rid in ids if rid not in known
        ]

    async def _complete_order(self, node: Mapping[str, Any]) -> OrderSnapshot:
        lines = list(node["lineItems"]["nodes"])
        page_info = node["lineItems"]["pageInfo"]
        while page_info["hasNextPage"]:
            data = await self._run(
                "order_line_items_page",
                {"id": node["id"], "first": 100, "after": page_info["endCursor"]},
            )
            if data.get("order") is None:
                break
            lines.extend(data["order"]["lineItems"]["nodes"])
            page_info = data["order"]["lineItems"]["pageInfo"]
        refunds = [dict(r) for r in node["refunds"] or []]
        if len(refunds) >= 5:  # the fragment asks for 5: there may be more
            refunds = await self._all_refunds(node["id"], refunds)
        for refund in refunds:
            refund_lines = list(refund["refundLineItems"]["nodes"])
            page_info = refund["refundLineItems"]["pageInfo"]
            while page_info["hasNextPage"]:
                data = await self._run(
                    "refund_line_items_page",
                    {"id": refund["id"], "first": 100, "after": page_info["endCursor"]},
                )
                found = data.get("node")
                if not found:
                    break
                refund_lines.extend(found["refundLineItems"]["nodes"])
                page_info = found["refundLineItems"]["pageInfo"]
            refund["refundLineItems"] = {"nodes": refund_lines}
        return order_from_node(node, lines, refunds)


def _errors_by_index(errors: Sequence[Mapping[str, Any]], array: str) -> list[tuple[int, str]]:
    """(index into the input array, code) for userErrors whose field path names an entry."""
    out: list[tuple[int, str]] = []
    for error in errors:
        path = [str(p) for p in error.get("field") or []]
        if array in path:
            position = path.index(array) + 1
            if position < len(path) and path[position].isdigit():
                out.append((int(path[position]), str(error.get("code"))))
    return out


def _user_errors(mutation: str, errors: Sequence[Mapping[str, Any]]) -> UserErrors:
    codes = [str(e.get("code") or "INVALID") for e in errors]
    messages = "; ".join(str(e.get("message")) for e in errors)
    return UserErrors(f"{mutation} refused: {messages}", codes)


def _search_value(value: str) -> str:
    """A value in Shopify's search syntax: quoted, with quotes and backslashes escaped."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
