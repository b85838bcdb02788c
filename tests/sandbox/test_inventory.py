"""Inventory over real HTTP: reads, set/adjust with compare-and-swap, activation, idempotency."""

from __future__ import annotations

from typing import Any

import pytest

from stocksync.sandbox import Sandbox
from stocksync.sandbox.state import Shop
from tests.sandbox.conftest import Admin
from tests.sandbox.helpers import location_ids, make_product, quantities, triple

SET = """
mutation($input: InventorySetQuantitiesInput!) {
  inventorySetQuantities(input: $input) {
    inventoryAdjustmentGroup { reason changes { name delta quantityAfterChange item { id }
      location { id } } }
    userErrors { field message code }
  }
}"""
SET_IDEMPOTENT = """
mutation($input: InventorySetQuantitiesInput!, $key: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $key) {
    inventoryAdjustmentGroup { id }
    userErrors { field message code }
  }
}"""
ADJUST = """
mutation($input: InventoryAdjustQuantitiesInput!) {
  inventoryAdjustQuantities(input: $input) {
    inventoryAdjustmentGroup { id reason changes { name delta quantityAfterChange } }
    userErrors { field message code }
  }
}"""
ADJUST_IDEMPOTENT = """
mutation($input: InventoryAdjustQuantitiesInput!) {
  inventoryAdjustQuantities(input: $input) @idempotent(key: "k-1") {
    inventoryAdjustmentGroup { id }
    userErrors { field message code }
  }
}"""


async def _one(admin: Admin, available: int = 10) -> tuple[str, str, str]:
    loc = (await location_ids(admin))[0]
    variant = (await make_product(admin, "Tote", ["TOTE-1"], {loc: available}))[0]
    return variant["id"], variant["inventoryItem"]["id"], loc


def _set_input(item: str, loc: str, quantity: int, **extra: Any) -> dict[str, Any]:
    q: dict[str, Any] = {"inventoryItemId": item, "locationId": loc, "quantity": quantity}
    options = {k: v for k, v in extra.items() if k in ("compareQuantity", "changeFromQuantity")}
    q.update(options)
    result: dict[str, Any] = {
        "reason": "correction",
        "name": extra.get("name", "available"),
        "quantities": [q],
    }
    if "ignoreCompareQuantity" in extra:
        result["ignoreCompareQuantity"] = extra["ignoreCompareQuantity"]
    return result


async def test_reads_items_levels_and_locations(admin: Admin, shop: Shop) -> None:
    variant, item, loc = await _one(admin)
    data = await admin.data(
        """
      query($q: String!) {
        inventoryItems(first: 5, query: $q) {
          nodes { id sku tracked legacyResourceId variant { id }
                  inventoryLevels(first: 5) { nodes { location { id name isActive } } } }
        }
      }""",
        {"q": "sku:TOTE-1"},
    )
    node = data["inventoryItems"]["nodes"][0]
    assert node["id"] == item
    assert node["sku"] == "TOTE-1"
    assert node["tracked"] is True
    assert node["variant"]["id"] == variant
    assert int(node["legacyResourceId"]) > 2**53
    assert node["inventoryLevels"]["nodes"] == [
        {"location": {"id": loc, "name": "Warehouse", "isActive": True}}
    ]
    level_id = (
        await admin.data(
            "query($i: ID!, $l: ID!) { inventoryItem(id: $i) { inventoryLevel(locationId: $l) "
            "{ id } } }",
            {"i": item, "l": loc},
        )
    )["inventoryItem"]["inventoryLevel"]["id"]
    assert level_id.startswith("gid://shopify/InventoryLevel/")
    assert f"inventory_item_id={item.rsplit('/', 1)[1]}" in level_id
    direct = await admin.data(
        'query($id: ID!) { inventoryLevel(id: $id) { quantities(names: ["available"]) { name '
        "quantity } } }",
        {"id": level_id},
    )
    assert direct["inventoryLevel"]["quantities"] == [{"name": "available", "quantity": 10}]


async def test_locations_hide_deactivated_unless_asked(admin: Admin) -> None:
    q = (
        "query($all: Boolean) { locations(first: 10, includeInactive: $all) "
        "{ nodes { name isActive deactivatedAt } } }"
    )
    active = await admin.data(q, {"all": False})
    assert [n["name"] for n in active["locations"]["nodes"]] == ["Store", "Warehouse"]
    everything = await admin.data(q, {"all": True})
    old = next(n for n in everything["locations"]["nodes"] if n["name"] == "Old depot")
    assert old["isActive"] is False
    assert old["deactivatedAt"] is not None


async def test_set_with_compare_quantity(admin: Admin) -> None:
    _, item, loc = await _one(admin)
    data = await admin.data(SET, {"input": _set_input(item, loc, 4, compareQuantity=10)})
    payload = data["inventorySetQuantities"]
    assert payload["userErrors"] == []
    assert [
        (c["name"], c["delta"], c["quantityAfterChange"])
        for c in payload["inventoryAdjustmentGroup"]["changes"]
    ] == [("available", -6, 4), ("on_hand", -6, 4)]
    stale = await admin.data(SET, {"input": _set_input(item, loc, 5, compareQuantity=10)})
    assert stale["inventorySetQuantities"] == {
        "inventoryAdjustmentGroup": None,
        "userErrors": [
            {
                "field": ["input", "quantities", "0", "compareQuantity"],
                "message": "The compareQuantity value does not match persisted value.",
                "code": "COMPARE_QUANTITY_STALE",
            }
        ],
    }
    missing = await admin.data(SET, {"input": _set_input(item, loc, 5)})
    assert missing["inventorySetQuantities"]["userErrors"][0]["code"] == "COMPARE_QUANTITY_REQUIRED"
    ignored = await admin.data(SET, {"input": _set_input(item, loc, 5, ignoreCompareQuantity=True)})
    assert ignored["inventorySetQuantities"]["userErrors"] == []
    assert (await quantities(admin, item, loc))["available"] == 5


async def test_set_on_hand_moves_available_by_the_same_delta(admin: Admin) -> None:
    _, item, loc = await _one(admin)
    data = await admin.data(
        SET, {"input": _set_input(item, loc, 12, name="on_hand", compareQuantity=10)}
    )
    assert data["inventorySetQuantities"]["userErrors"] == []
    assert await triple(admin, item, loc) == (12, 0, 12)


async def test_change_from_quantity_from_2026_01(admin: Admin) -> None:
    _, item, loc = await _one(admin)
    ok = await admin.data(
        SET, {"input": _set_input(item, loc, 7, changeFromQuantity=10)}, version="2026-01"
    )
    assert ok["inventorySetQuantities"]["userErrors"] == []
    stale = await admin.data(
        SET,
        {"input": _set_input(item, loc, 8, changeFromQuantity=10, compareQuantity=7)},
        version="2026-01",
    )
    assert stale["inventorySetQuantities"]["userErrors"] == [
        {
            "field": ["input", "quantities", "0", "changeFromQuantity"],
            "message": "The specified compare quantity is stale.",
            "code": "CHANGE_FROM_QUANTITY_STALE",
        }
    ]
    # An explicit null opts out of the check and overrides compareQuantity.
    opted_out = await admin.data(
        SET,
        {"input": _set_input(item, loc, 9, changeFromQuantity=None, compareQuantity=123)},
        version="2026-01",
    )
    assert opted_out["inventorySetQuantities"]["userErrors"] == []
    assert (await quantities(admin, item, loc))["available"] == 9


async def test_change_from_quantity_is_unknown_before_2026_01(admin: Admin) -> None:
    _, item, loc = await _one(admin)
    body = await admin.gql(SET, {"input": _set_input(item, loc, 7, changeFromQuantity=10)})
    assert "data" not in body or body.get("data") is None
    assert "changeFromQuantity" in body["errors"][0]["message"]
    assert (await quantities(admin, item, loc))["available"] == 10


async def test_adjust_and_change_from_quantity(admin: Admin) -> None:
    _, item, loc = await _one(admin)
    change = {"inventoryItemId": item, "locationId": loc, "delta": -3}
    data = await admin.data(
        ADJUST, {"input": {"reason": "correction", "name": "available", "changes": [change]}}
    )
    group = data["inventoryAdjustQuantities"]["inventoryAdjustmentGroup"]
    assert group["reason"] == "correction"
    assert [(c["name"], c["delta"], c["quantityAfterChange"]) for c in group["changes"]] == [
        ("available", -3, 7),
        ("on_hand", -3, 7),
    ]
    stale = await admin.data(
        ADJUST,
        {
            "input": {
                "reason": "correction",
                "name": "available",
                "changes": [{**change, "changeFromQuantity": 10}],
            }
        },
        version="2026-01",
    )
    assert (
        stale["inventoryAdjustQuantities"]["userErrors"][0]["code"] == "CHANGE_FROM_QUANTITY_STALE"
    )
    ok = await admin.data(
        ADJUST,
        {
            "input": {
                "reason": "correction",
                "name": "available",
                "changes": [{**change, "changeFromQuantity": 7}],
            }
        },
        version="2026-01",
    )
    assert ok["inventoryAdjustQuantities"]["userErrors"] == []
    assert (await quantities(admin, item, loc))["available"] == 4


@pytest.mark.parametrize(
    ("mutate", "code", "field"),
    [
        (
            lambda q: {**q, "quantity": -1},
            "INVALID_QUANTITY_NEGATIVE",
            ["input", "quantities", "0", "quantity"],
        ),
        (
            lambda q: {**q, "inventoryItemId": "gid://shopify/InventoryItem/1"},
            "INVALID_INVENTORY_ITEM",
            ["input", "quantities", "0", "inventoryItemId"],
        ),
        (
            lambda q: {**q, "locationId": "gid://shopify/Location/1"},
            "INVALID_LOCATION",
            ["input", "quantities", "0", "locationId"],
        ),
    ],
)
async def test_set_user_errors(admin: Admin, mutate: Any, code: str, field: list[str]) -> None:
    _, item, loc = await _one(admin)
    payload = _set_input(item, loc, 3, compareQuantity=10)
    payload["quantities"] = [mutate(payload["quantities"][0])]
    data = await admin.data(SET, {"input": payload})
    errors = data["inventorySetQuantities"]["userErrors"]
    assert [(e["code"], e["field"]) for e in errors] == [(code, field)]


async def test_not_stocked_then_activated(admin: Admin) -> None:
    _, item, _ = await _one(admin)
    store = (await location_ids(admin))[1]
    data = await admin.data(SET, {"input": _set_input(item, store, 3, ignoreCompareQuantity=True)})
    assert data["inventorySetQuantities"]["userErrors"][0]["code"] == "ITEM_NOT_STOCKED_AT_LOCATION"
    activated = await admin.data(
        "mutation($i: ID!, $l: ID!) { inventoryActivate(inventoryItemId: $i, locationId: $l, "
        "available: 4) "
        '{ inventoryLevel { location { id } quantities(names: ["available"]) { quantity } } '
        "userErrors { message } } }",
        {"i": item, "l": store},
    )
    level = activated["inventoryActivate"]["inventoryLevel"]
    assert level == {"location": {"id": store}, "quantities": [{"quantity": 4}]}


async def test_name_and_reason_are_validated(admin: Admin) -> None:
    _, item, loc = await _one(admin)
    bad_name = await admin.data(
        SET,
        {"input": {**_set_input(item, loc, 1, ignoreCompareQuantity=True), "name": "committed"}},
    )
    assert bad_name["inventorySetQuantities"]["userErrors"][0]["code"] == "INVALID_NAME"
    bad_reason = await admin.data(
        SET, {"input": {**_set_input(item, loc, 1, ignoreCompareQuantity=True), "reason": "whim"}}
    )
    assert bad_reason["inventorySetQuantities"]["userErrors"][0]["code"] == "INVALID_REASON"


async def test_idempotent_same_key_same_input_gives_first_result(admin: Admin) -> None:
    _, item, loc = await _one(admin)
    variables = {"input": _set_input(item, loc, 4, changeFromQuantity=10), "key": "9f3c"}
    first = await admin.data(SET_IDEMPOTENT, variables, version="2026-01")
    again = await admin.data(SET_IDEMPOTENT, variables, version="2026-01")
    assert first == again
    assert first["inventorySetQuantities"]["userErrors"] == []
    assert (await quantities(admin, item, loc))["available"] == 4
    other = await admin.data(
        SET_IDEMPOTENT,
        {**variables, "input": _set_input(item, loc, 5, changeFromQuantity=4)},
        version="2026-01",
    )
    assert other["inventorySetQuantities"] == {
        "inventoryAdjustmentGroup": None,
        "userErrors": [
            {
                "field": None,
                "code": "IDEMPOTENCY_KEY_PARAMETER_MISMATCH",
                "message": "The same idempotency key cannot be used with different operation "
                "parameters.",
            }
        ],
    }
    assert (await quantities(admin, item, loc))["available"] == 4


async def test_idempotent_adjust_applies_once(admin: Admin) -> None:
    _, item, loc = await _one(admin)
    variables = {
        "input": {
            "reason": "correction",
            "name": "available",
            "changes": [{"inventoryItemId": item, "locationId": loc, "delta": 2}],
        }
    }
    first = await admin.data(ADJUST_IDEMPOTENT, variables, version="2026-01")
    second = await admin.data(ADJUST_IDEMPOTENT, variables, version="2026-01")
    assert first == second
    assert (await quantities(admin, item, loc))["available"] == 12


async def test_idempotent_directive_is_unknown_before_2026_01(admin: Admin) -> None:
    _, item, loc = await _one(admin)
    body = await admin.gql(
        SET_IDEMPOTENT, {"input": _set_input(item, loc, 4, compareQuantity=10), "key": "x"}
    )
    assert body["errors"][0]["message"] == "Directive @idempotent is not defined"
    assert body["errors"][0]["extensions"]["code"] == "undefinedDirective"


async def test_inventory_item_update_tracking(admin: Admin, sandbox: Sandbox, shop: Shop) -> None:
    _, item, _ = await _one(admin)
    data = await admin.data(
        'mutation($id: ID!) { inventoryItemUpdate(id: $id, input: {tracked: false, sku: "TOTE-X"}) '
        "{ inventoryItem { tracked sku } userErrors { message } } }",
        {"id": item},
    )
    assert data["inventoryItemUpdate"]["inventoryItem"] == {"tracked": False, "sku": "TOTE-X"}
