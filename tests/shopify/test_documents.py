"""Every GraphQL document the client sends validates against Shopify's real 2025-01 schema
plus exactly the later additions its changelog documents, and the sandbox runs each one."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import graphql
import pytest
from graphql.execution.values import get_variable_values

from stocksync.domain.ports import LevelWrite
from stocksync.platforms.shopify.documents import DOCUMENTS
from tests.shopify.conftest import Env
from tests.shopify.helpers import number, order, product, refund
from tests.shopify.test_adapter import DRAFT

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT.parent / "shared" / "platforms" / "shopify" / "admin_schema_2025-01.json.gz"
ADDITIONS_FILE = ROOT / "src" / "stocksync" / "sandbox" / "schema_additions.graphql"
# Sent only inside bulkOperationRunQuery (connections without first/last).
BULK_TEXTS = {"bulk_catalog", "bulk_inventory"}
LEGACY = {name for name in DOCUMENTS if name.endswith("_legacy")}
# What the adapter's methods send (paging of >10 lines per refund or >25 per order aside).
ADAPTER_DOCUMENTS = {
    "locations",
    "location_status",
    "inventory_levels",
    "inventory_activate",
    "products",
    "product",
    "product_variants_page",
    "variants_by_sku",
    "product_set",
    "order",
    "orders_changed",
    "order_refund_ids",
    "order_refunds",
    "bulk_operation_run_query",
    "current_bulk_operation",
}

needs_schema = pytest.mark.skipif(
    not SCHEMA_FILE.exists(),
    reason=f"Shopify's published schema is not here ({SCHEMA_FILE}): the contract files live "
    "beside the project, not in it",
)


@pytest.fixture(scope="module")
def real_schema() -> graphql.GraphQLSchema:
    with gzip.open(SCHEMA_FILE) as handle:
        return graphql.build_client_schema(json.load(handle)["data"], assume_valid=True)


@pytest.fixture(scope="module")
def extended_schema(real_schema: graphql.GraphQLSchema) -> graphql.GraphQLSchema:
    additions = graphql.parse(ADDITIONS_FILE.read_text(encoding="utf-8"))
    return graphql.extend_schema(real_schema, additions, assume_valid=True)


@needs_schema
@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_document_validates_against_the_schema_and_documented_additions(
    name: str, extended_schema: graphql.GraphQLSchema, real_schema: graphql.GraphQLSchema
) -> None:
    document = graphql.parse(DOCUMENTS[name])
    assert graphql.validate(extended_schema, document) == []
    if name in LEGACY or "@idempotent" not in DOCUMENTS[name]:
        # documents for versions before 2026-01 need nothing beyond 2025-01
        assert graphql.validate(real_schema, document) == []


@needs_schema
def test_additions_are_exactly_the_documented_ones(real_schema: graphql.GraphQLSchema) -> None:
    assert real_schema.get_directive("idempotent") is None
    for type_name in ("InventoryQuantityInput", "InventoryChangeInput"):
        named = real_schema.get_type(type_name)
        assert isinstance(named, graphql.GraphQLInputObjectType)
        assert "changeFromQuantity" not in named.fields


async def _exercise(env: Env, version: str) -> None:
    """Drive every adapter method (and the paths behind them) once."""
    platform = env.platform(version)
    platform.variants_page = 1
    await platform.list_locations()
    created = await platform.create_product(DRAFT)
    item = created.variants[0].item_id
    store = next(str(loc.id) for loc in env.shop.locations.values() if loc.name == "Store")
    await platform.read_levels([item], [env.warehouse, store])
    await platform.set_levels([LevelWrite(item, store, 2, None)])  # activation path
    await platform.set_levels([LevelWrite(item, env.warehouse, 1, 99)])  # stale path
    await platform.adjust_level(item, env.warehouse, 1, "doc-test")
    await platform.list_products()
    await platform.get_product(created.id)
    await platform.find_variants_by_sku(["SCARF-RED-S"])
    (variant,) = await product(env, "Mug", ["MUG"], stock=50)
    placed = await order(env, variant["id"], 30)
    for _ in range(6):
        await refund(env, placed["id"], placed["lineItems"]["nodes"][0]["id"], 1, "NO_RESTOCK")
    await platform.get_order(number(placed["id"]))
    await platform.orders_changed_since(None)
    await platform.bulk.inventory()


@needs_schema
@pytest.mark.parametrize("version", ["2026-10", "2026-01"])
async def test_the_sandbox_runs_every_document_and_variables_fit_the_real_schema(
    env: Env, extended_schema: graphql.GraphQLSchema, version: str
) -> None:
    await _exercise(env, version)
    by_query = {text: name for name, text in DOCUMENTS.items()}
    sent: dict[str, list[dict[str, Any]]] = {}
    for request in env.recorded:
        name = by_query.get(request.query)
        if name is None:
            continue  # the test's own merchant-side calls
        assert request.status == 200, (name, request.body)
        assert "errors" not in request.body, (name, request.body["errors"])
        sent.setdefault(name, []).append(request.variables)
        op = next(
            d
            for d in graphql.parse(request.query).definitions
            if isinstance(d, graphql.OperationDefinitionNode)
        )
        coerced = get_variable_values(
            extended_schema, op.variable_definitions or [], request.variables
        )
        assert not isinstance(coerced, list), (name, [e.message for e in coerced])
    cas = {"inventory_set_quantities", "inventory_adjust_quantities"}
    expected = ADAPTER_DOCUMENTS | (cas if version >= "2026-01" else {f"{n}_legacy" for n in cas})
    assert expected <= set(sent), expected - set(sent)
