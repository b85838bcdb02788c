"""Cost and throttling as Shopify computes them, on the injectable clock."""

from __future__ import annotations

import pytest
from graphql import parse

from stocksync.sandbox import ManualClock, Sandbox
from stocksync.sandbox.cost import actual_cost, requested_cost, select_operation
from stocksync.sandbox.ratelimit import bucket_for_plan
from stocksync.sandbox.schema import base_schema
from stocksync.sandbox.state import Shop
from tests.sandbox.conftest import Admin
from tests.sandbox.helpers import location_ids, make_product


def _requested(query: str, variables: dict[str, object] | None = None) -> int:
    document = parse(query)
    op = select_operation(document, None)
    assert op is not None
    return requested_cost(base_schema(), document, op, variables)


def test_cost_rules() -> None:
    assert _requested("{ shop { name } }") == 1
    assert _requested("{ products(first: 10) { nodes { title } } }") == 2 + 10
    assert (
        _requested(
            "query($n: Int) { products(first: $n) { edges { node { id } } pageInfo { "
            "hasNextPage } } }",
            {"n": 50},
        )
        == 52
    )
    # Nested: each of the 10 products carries a connection of 5 variants with an object inside.
    assert _requested(
        "{ products(first: 10) { nodes { id variants(first: 5) { nodes { inventoryItem { id } "
        "} } } } }"
    ) == (2 + 10 * (1 + 2 + 5 * (1 + 1)))
    assert (
        _requested(
            'mutation { tagsAdd(id: "gid://shopify/Product/1", tags: ["a"]) { userErrors { '
            "message } } }"
        )
        == 10
    )


def test_actual_cost_counts_what_was_returned() -> None:
    document = parse("{ products(first: 10) { nodes { title } } }")
    op = select_operation(document, None)
    assert op is not None
    data = {"products": {"nodes": [{"title": "a"}, {"title": "b"}]}}
    assert actual_cost(base_schema(), document, op, None, data) == 4


async def test_every_answer_carries_cost(admin: Admin) -> None:
    body = await admin.gql("{ products(first: 5) { nodes { id } } }")
    cost = body["extensions"]["cost"]
    assert cost["requestedQueryCost"] == 7
    assert cost["actualQueryCost"] == 2
    assert cost["throttleStatus"] == {
        "maximumAvailable": 2000.0,
        "currentlyAvailable": 1998,
        "restoreRate": 100.0,
    }


async def test_max_cost_exceeded(admin: Admin) -> None:
    body = await admin.gql(
        "{ products(first: 250) { nodes { variants(first: 250) { nodes { id } } } } }"
    )
    error = body["errors"][0]
    assert error["extensions"]["code"] == "MAX_COST_EXCEEDED"
    assert error["extensions"]["maxCost"] == 1000
    assert error["extensions"]["cost"] > 1000


async def test_a_client_ignoring_throttle_status_is_throttled_and_refills_at_plan_rate(
    sandbox: Sandbox, shop: Shop, admin: Admin, clock: ManualClock
) -> None:
    loc = (await location_ids(admin))[0]
    await make_product(admin, "Cup", ["CUP-1"], {loc: 1})
    product = (await admin.data("{ products(first: 1) { nodes { id } } }"))["products"]["nodes"][0][
        "id"
    ]
    sandbox.runtimes["acme"].bucket = bucket_for_plan(clock, "standard", bucket_size=50)
    mutation = 'mutation($id: ID!) { tagsAdd(id: $id, tags: ["x"]) { userErrors { message } } }'
    answers = [await admin.gql(mutation, {"id": product}) for _ in range(7)]
    throttled = ["errors" in a for a in answers]
    assert throttled == [False] * 5 + [True] * 2
    assert answers[5]["errors"] == [
        {
            "message": "Throttled",
            "extensions": {
                "code": "THROTTLED",
                "documentation": "https://shopify.dev/api/usage/rate-limits",
            },
        }
    ]
    assert answers[5]["extensions"]["cost"] == {
        "requestedQueryCost": 10,
        "actualQueryCost": None,
        "throttleStatus": {"maximumAvailable": 50.0, "currentlyAvailable": 0, "restoreRate": 100.0},
    }
    clock.advance(0.05)  # 5 points at 100/s: not enough for 10
    assert "errors" in await admin.gql(mutation, {"id": product})
    clock.advance(0.05)
    ok = await admin.gql(mutation, {"id": product})
    assert "errors" not in ok
    assert ok["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 0
    clock.advance(10)
    assert (await admin.gql("{ shop { id } }"))["extensions"]["cost"]["throttleStatus"][
        "currentlyAvailable"
    ] == 49
    assert sandbox.stats_of(shop).throttled == 3


@pytest.mark.parametrize(
    ("plan", "rate"), [("standard", 100.0), ("advanced", 200.0), ("plus", 1000.0)]
)
def test_bucket_refills_at_the_plan_rate(plan: str, rate: float) -> None:
    clock = ManualClock()
    bucket = bucket_for_plan(clock, plan, bucket_size=500)
    assert bucket.try_consume(500)
    assert not bucket.try_consume(1)
    clock.advance(1.0)
    assert bucket.available() == min(500, rate)
    clock.advance(100)
    assert bucket.available() == 500
    assert bucket.throttle_status()["restoreRate"] == rate


async def test_forced_throttle_fault_and_throttling_off(
    sandbox: Sandbox, shop: Shop, admin: Admin
) -> None:
    sandbox.set_faults("acme", throttle={"next": 1})
    assert (await admin.gql("{ shop { id } }"))["errors"][0]["extensions"]["code"] == "THROTTLED"
    sandbox.set_throttling(False)
    bucket = sandbox.bucket_of(shop)
    bucket.enabled = True
    bucket.try_consume(bucket.available())
    bucket.enabled = False
    assert "errors" not in await admin.gql("{ shop { id } }")


async def test_mutation_costs_ten(admin: Admin) -> None:
    loc = (await location_ids(admin))[0]
    await make_product(admin, "Cup", ["CUP-1"], {loc: 1})
    product = (await admin.data("{ products(first: 1) { nodes { id } } }"))["products"]["nodes"][0]
    body = await admin.gql(
        'mutation($id: ID!) { tagsAdd(id: $id, tags: ["x"]) { userErrors { message } } }',
        {"id": product["id"]},
    )
    assert body["data"]["tagsAdd"]["userErrors"] == []
    assert body["extensions"]["cost"]["requestedQueryCost"] == 10
    assert body["extensions"]["cost"]["actualQueryCost"] == 10
