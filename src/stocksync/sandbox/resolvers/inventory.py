"""Inventory items, levels, locations, and the quantity mutations with compare-and-swap."""

from __future__ import annotations

from typing import Any

from graphql import GraphQLResolveInfo

from stocksync.sandbox.ids import gid, parse_gid
from stocksync.sandbox.resolvers.common import (
    MISMATCH_MESSAGE,
    connection,
    ctx,
    field_resolver,
    idempotency_key,
    idempotent,
    user_error,
)
from stocksync.sandbox.search import filter_items
from stocksync.sandbox.state import (
    INVENTORY_REASONS,
    AdjustmentChange,
    InventoryItem,
    InventoryLevel,
    Location,
    ShopError,
)

Info = GraphQLResolveInfo
MAX_QUANTITY = 1_000_000_000
SETTABLE_NAMES = ("available", "on_hand")


# ------------------------------------------------------------------------- queries
@field_resolver("QueryRoot", "inventoryItems")
def inventory_items(_: Any, info: Info, **args: Any) -> Any:
    shop = ctx(info).shop
    filters = {
        "sku": lambda i: shop.variants[i.variant_id].sku,
        "id": lambda i: i.id,
        "updated_at": lambda i: i.updated_at,
        "created_at": lambda i: i.created_at,
    }
    items = filter_items(shop.items.values(), args.get("query"), filters)
    return connection(sorted(items, key=lambda i: i.id), args, info)


@field_resolver("QueryRoot", "inventoryItem")
def inventory_item(_: Any, info: Info, id: str) -> Any:
    number = parse_gid(id, "InventoryItem")
    return ctx(info).shop.items.get(number) if number else None


@field_resolver("QueryRoot", "inventoryLevel")
def inventory_level(_: Any, info: Info, id: str) -> Any:
    shop = ctx(info).shop
    number = parse_gid(id, "InventoryLevel")
    if number is None:
        return None
    return next((lv for lv in shop.levels.values() if lv.id == number and lv.active), None)


@field_resolver("QueryRoot", "locations")
def locations(_: Any, info: Info, **args: Any) -> Any:
    shop = ctx(info).shop
    items = [loc for loc in shop.locations.values() if loc.is_active or args.get("includeInactive")]
    items = filter_items(
        items, args.get("query"), {"name": lambda loc: loc.name, "id": lambda loc: loc.id}
    )
    if args.get("sortKey") == "ID":
        return connection(sorted(items, key=lambda loc: loc.id), args, info)
    return connection(
        sorted(items, key=lambda loc: [loc.name, loc.id]),
        args,
        info,
        lambda loc: [loc.name, loc.id],
    )


@field_resolver("QueryRoot", "location")
def location(_: Any, info: Info, id: str | None = None) -> Any:
    shop = ctx(info).shop
    if id is None:
        active = shop.active_locations()
        return active[0] if active else None
    number = parse_gid(id, "Location")
    return shop.locations.get(number) if number else None


# -------------------------------------------------------------------------- fields
@field_resolver("InventoryItem", "sku")
def item_sku(item: InventoryItem, info: Info) -> Any:
    return ctx(info).shop.variants[item.variant_id].sku


@field_resolver("InventoryItem", "duplicateSkuCount")
def duplicate_sku_count(item: InventoryItem, info: Info) -> int:
    shop = ctx(info).shop
    sku = shop.variants[item.variant_id].sku
    if not sku:
        return 0
    return sum(1 for v in shop.variants.values() if v.sku == sku and v.id != item.variant_id)


@field_resolver("InventoryItem", "measurement")
def measurement(item: InventoryItem, info: Info) -> Any:
    return {
        "id": gid("InventoryItemMeasurement", item.id),
        "weight": {"unit": item.weight_unit, "value": item.weight_value},
    }


@field_resolver("InventoryItem", "variant")
def item_variant(item: InventoryItem, info: Info) -> Any:
    return ctx(info).shop.variants[item.variant_id]


@field_resolver("InventoryItem", "inventoryLevel")
def item_level(item: InventoryItem, info: Info, locationId: str) -> Any:
    loc = parse_gid(locationId, "Location")
    return ctx(info).shop.level(item.id, loc) if loc else None


@field_resolver("InventoryItem", "inventoryLevels")
def item_levels(item: InventoryItem, info: Info, **args: Any) -> Any:
    levels = ctx(info).shop.levels_of_item(item.id)
    return connection(sorted(levels, key=lambda lv: lv.id), args, info)


@field_resolver("Location", "inventoryLevel")
def location_level(loc: Location, info: Info, inventoryItemId: str) -> Any:
    item = parse_gid(inventoryItemId, "InventoryItem")
    return ctx(info).shop.level(item, loc.id) if item else None


@field_resolver("Location", "inventoryLevels")
def location_levels(loc: Location, info: Info, **args: Any) -> Any:
    levels = ctx(info).shop.levels_at(loc.id)
    return connection(sorted(levels, key=lambda lv: lv.id), args, info)


@field_resolver("Location", "activatable")
def activatable(loc: Location, info: Info) -> bool:
    return not loc.is_active


@field_resolver("Location", "deactivatable", "shipsInventory")
def deactivatable(loc: Location, info: Info) -> bool:
    return loc.is_active


@field_resolver("Location", "deactivatedAt")
def deactivated_at(loc: Location, info: Info) -> Any:
    from stocksync.sandbox.timefmt import iso_z

    return iso_z(loc.deactivated_at) if loc.deactivated_at is not None else None


@field_resolver("Location", "hasActiveInventory")
def has_active_inventory(loc: Location, info: Info) -> bool:
    return bool(ctx(info).shop.levels_at(loc.id))


@field_resolver("InventoryLevel", "item")
def level_item(level: InventoryLevel, info: Info) -> Any:
    return ctx(info).shop.items[level.item_id]


@field_resolver("InventoryLevel", "location")
def level_location(level: InventoryLevel, info: Info) -> Any:
    return ctx(info).shop.locations[level.location_id]


@field_resolver("InventoryLevel", "canDeactivate")
def can_deactivate(level: InventoryLevel, info: Info) -> bool:
    return level.committed == 0


@field_resolver("InventoryLevel", "quantities")
def quantities(level: InventoryLevel, info: Info, names: list[str]) -> Any:
    ctx(info).touched_levels.append((level.item_id, level.location_id))
    return [
        {
            "id": f"gid://shopify/InventoryQuantity/{level.id}?inventory_item_id={level.item_id}"
            f"&name={name}",
            "name": name,
            "quantity": level.quantity(name),
            "updatedAt": level.updated_at,
        }
        for name in names
        if name
        in (
            "available",
            "committed",
            "damaged",
            "incoming",
            "on_hand",
            "quality_control",
            "reserved",
            "safety_stock",
        )
    ]


@field_resolver("InventoryChange", "item")
def change_item(change: AdjustmentChange, info: Info) -> Any:
    return ctx(info).shop.items.get(change.item_id)


@field_resolver("InventoryChange", "location")
def change_location(change: AdjustmentChange, info: Info) -> Any:
    return ctx(info).shop.locations.get(change.location_id)


# ------------------------------------------------------------------------ mutations
def _resolve_level(
    info: Info, entry: dict[str, Any], path: list[str]
) -> tuple[InventoryItem, Location, InventoryLevel]:
    shop = ctx(info).shop
    item_number = parse_gid(entry.get("inventoryItemId"), "InventoryItem")
    item = shop.items.get(item_number) if item_number else None
    if item is None:
        raise ShopError(
            "The specified inventory item could not be found.",
            "INVALID_INVENTORY_ITEM",
            [*path, "inventoryItemId"],
        )
    loc_number = parse_gid(entry.get("locationId"), "Location")
    loc = shop.locations.get(loc_number) if loc_number else None
    if loc is None:
        raise ShopError(
            "The specified location could not be found.", "INVALID_LOCATION", [*path, "locationId"]
        )
    level = shop.level(item.id, loc.id)
    if level is None or not loc.is_active:
        raise ShopError(
            "The specified inventory item is not stocked at the location.",
            "ITEM_NOT_STOCKED_AT_LOCATION",
            [*path, "locationId"],
        )
    # A fault may change this level now, as another sale would between a read and this write.
    ctx(info).sandbox.maybe_race(shop, level)
    return item, loc, level


def _payload(errors: list[ShopError], group: Any = None) -> dict[str, Any]:
    return {
        "inventoryAdjustmentGroup": group,
        "userErrors": [user_error(e, coded=True) for e in errors],
    }


def _mismatch() -> dict[str, Any]:
    return _payload([ShopError(MISMATCH_MESSAGE, "IDEMPOTENCY_KEY_PARAMETER_MISMATCH", None)])


def _set_quantities(info: Info, input: dict[str, Any]) -> dict[str, Any]:  # noqa: C901, PLR0912  Shopify's documented checks, in order
    shop = ctx(info).shop
    additions = ctx(info).additions
    name, reason = input["name"], input["reason"]
    if name not in SETTABLE_NAMES:
        return _payload(
            [
                ShopError(
                    "The quantity name must be either 'available' or 'on_hand'.",
                    "INVALID_NAME",
                    ["input", "name"],
                )
            ]
        )
    if reason not in INVENTORY_REASONS:
        return _payload(
            [ShopError("The specified reason is invalid.", "INVALID_REASON", ["input", "reason"])]
        )
    errors: list[ShopError] = []
    planned: list[tuple[InventoryLevel, int]] = []
    seen: set[tuple[int, int]] = set()
    for i, entry in enumerate(input["quantities"]):
        path = ["input", "quantities", str(i)]
        try:
            item, loc, level = _resolve_level(info, entry, path)
            if (item.id, loc.id) in seen:
                raise ShopError(
                    "The combination of inventoryItemId and locationId must be unique.",
                    "NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR",
                    path,
                )
            seen.add((item.id, loc.id))
            quantity = entry["quantity"]
            if quantity < 0:
                raise ShopError(
                    "The quantity can't be negative.",
                    "INVALID_QUANTITY_NEGATIVE",
                    [*path, "quantity"],
                )
            if quantity > MAX_QUANTITY:
                raise ShopError(
                    "The quantity can't be higher than 1,000,000,000.",
                    "INVALID_QUANTITY_TOO_HIGH",
                    [*path, "quantity"],
                )
            current = level.quantity(name)
            if additions and "changeFromQuantity" in entry:
                # From 2026-01 changeFromQuantity (even an explicit null) overrides
                # compareQuantity and ignoreCompareQuantity.
                expected = entry["changeFromQuantity"]
                if expected is not None and expected != current:
                    raise ShopError(
                        "The specified compare quantity is stale.",
                        "CHANGE_FROM_QUANTITY_STALE",
                        [*path, "changeFromQuantity"],
                    )
            elif not input.get("ignoreCompareQuantity"):
                if entry.get("compareQuantity") is None:
                    raise ShopError(
                        "The compareQuantity argument must be given to each quantity or "
                        "ignored using ignoreCompareQuantity.",
                        "COMPARE_QUANTITY_REQUIRED",
                        [*path, "compareQuantity"],
                    )
                if entry["compareQuantity"] != current:
                    raise ShopError(
                        "The compareQuantity value does not match persisted value.",
                        "COMPARE_QUANTITY_STALE",
                        [*path, "compareQuantity"],
                    )
            planned.append((level, quantity))
        except ShopError as exc:
            errors.append(exc)
    if errors:
        return _payload(errors)
    changes: list[AdjustmentChange] = []
    for level, quantity in planned:
        delta = quantity - level.quantity(name)
        shop.change_level(level, name, delta)
        if delta == 0:
            continue
        for changed in ("available", "on_hand"):
            changes.append(
                AdjustmentChange(
                    changed, delta, level.quantity(changed), level.item_id, level.location_id
                )
            )
    group = shop.record_adjustment(reason, input.get("referenceDocumentUri"), changes)
    return _payload([], group)


@field_resolver("Mutation", "inventorySetQuantities")
def inventory_set_quantities(_: Any, info: Info, input: dict[str, Any]) -> Any:
    return idempotent(info, input, lambda: _set_quantities(info, input), _mismatch)


def _adjust_quantities(info: Info, input: dict[str, Any]) -> dict[str, Any]:
    shop = ctx(info).shop
    additions = ctx(info).additions
    name, reason = input["name"], input["reason"]
    if name not in SETTABLE_NAMES:
        return _payload(
            [
                ShopError(
                    "The quantity name is not valid.", "INVALID_QUANTITY_NAME", ["input", "name"]
                )
            ]
        )
    if reason not in INVENTORY_REASONS:
        return _payload(
            [ShopError("The specified reason is invalid.", "INVALID_REASON", ["input", "reason"])]
        )
    errors: list[ShopError] = []
    planned: list[tuple[InventoryLevel, int, str | None]] = []
    for i, entry in enumerate(input["changes"]):
        path = ["input", "changes", str(i)]
        try:
            _, _, level = _resolve_level(info, entry, path)
            expected = entry.get("changeFromQuantity") if additions else None
            if expected is not None and expected != level.quantity(name):
                raise ShopError(
                    "The specified compare quantity is stale.",
                    "CHANGE_FROM_QUANTITY_STALE",
                    [*path, "changeFromQuantity"],
                )
            after = level.quantity(name) + entry["delta"]
            if after > MAX_QUANTITY:
                raise ShopError(
                    "The quantity can't be higher than 1,000,000,000.",
                    "INVALID_QUANTITY_TOO_HIGH",
                    [*path, "delta"],
                )
            if after < -MAX_QUANTITY:
                raise ShopError(
                    "The quantity can't be lower than -1,000,000,000.",
                    "INVALID_QUANTITY_TOO_LOW",
                    [*path, "delta"],
                )
            planned.append((level, entry["delta"], entry.get("ledgerDocumentUri")))
        except ShopError as exc:
            errors.append(exc)
    if errors:
        return _payload(errors)
    changes: list[AdjustmentChange] = []
    for level, delta, ledger in planned:
        shop.change_level(level, name, delta)
        for changed in ("available", "on_hand"):
            changes.append(
                AdjustmentChange(
                    changed,
                    delta,
                    level.quantity(changed),
                    level.item_id,
                    level.location_id,
                    ledger if changed == name else None,
                )
            )
    group = shop.record_adjustment(reason, input.get("referenceDocumentUri"), changes)
    return _payload([], group)


# The fault answering Shopify's documented "try again" code of inventoryAdjustQuantities.
_TRY_AGAIN = (
    (
        "adjust_failed",
        "ADJUST_QUANTITIES_FAILED",
        "The quantities couldn't be adjusted. Try again.",
    ),
)
PREVIOUS_ATTEMPT_FAILED_MESSAGE = (
    "A previous request with this idempotency key failed. Retry with a new idempotency key."
)


@field_resolver("Mutation", "inventoryAdjustQuantities")
def inventory_adjust_quantities(_: Any, info: Info, input: dict[str, Any]) -> Any:
    shop = ctx(info).shop
    key = idempotency_key(info)
    record_key = (info.field_name, key) if key is not None else None
    if record_key is not None and record_key in shop.failed_idempotency:
        return _payload(
            [
                ShopError(
                    PREVIOUS_ATTEMPT_FAILED_MESSAGE, "IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED", None
                )
            ]
        )
    faults = ctx(info).sandbox.faults_of(shop)
    for switch, code, message in _TRY_AGAIN:
        if faults.take(switch):
            if record_key is not None:
                shop.failed_idempotency.add(record_key)
            return _payload([ShopError(message, code, None)])
    return idempotent(info, input, lambda: _adjust_quantities(info, input), _mismatch)


@field_resolver("Mutation", "inventoryActivate")
def inventory_activate(
    _: Any,
    info: Info,
    inventoryItemId: str,
    locationId: str,
    available: int | None = None,
    onHand: int | None = None,
) -> Any:
    shop = ctx(info).shop
    try:
        item = parse_gid(inventoryItemId, "InventoryItem")
        loc = parse_gid(locationId, "Location")
        level = shop.activate(item or 0, loc or 0, available if available is not None else onHand)
    except ShopError as exc:
        return {"inventoryLevel": None, "userErrors": [user_error(exc)]}
    return {"inventoryLevel": level, "userErrors": []}


@field_resolver("Mutation", "inventoryItemUpdate")
def inventory_item_update(_: Any, info: Info, id: str, input: dict[str, Any]) -> Any:
    shop = ctx(info).shop
    number = parse_gid(id, "InventoryItem")
    item = shop.items.get(number) if number else None
    if item is None:
        return {
            "inventoryItem": None,
            "userErrors": [{"field": ["id"], "message": "Inventory item does not exist"}],
        }
    variant = shop.variants[item.variant_id]
    spec: dict[str, Any] = {}
    if "sku" in input:
        spec["sku"] = input["sku"]
    if input.get("tracked") is not None:
        spec["tracked"] = input["tracked"]
    weight = (input.get("measurement") or {}).get("weight") or {}
    if weight.get("value") is not None:
        spec["weight"] = weight["value"]
        item.weight_unit = weight.get("unit") or item.weight_unit
    if input.get("requiresShipping") is not None:
        item.requires_shipping = input["requiresShipping"]
    shop.update_variant(variant, spec)
    shop.emit_inventory_item("inventory_items/update", variant)
    return {"inventoryItem": item, "userErrors": []}
