"""The sandbox's GraphQL schemas: the 2025-01 subset, and the same plus later additions."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from graphql import GraphQLSchema, build_ast_schema, extend_schema, parse

ADDITIONS_FROM = "2026-01"
_VERSION = re.compile(r"^(\d{4})-(\d{2})$")

# The later additions, each with the changelog entry that documents it. The subset test
# checks that these, and only these, are declared beyond the real 2025-01 schema.
LATER_ADDITIONS: dict[str, str] = {
    "InventoryQuantityInput.changeFromQuantity": "https://shopify.dev/changelog/posts/compare-and-swap-redesign-for-inventory-set-quantities",
    "InventoryChangeInput.changeFromQuantity": "https://shopify.dev/changelog/posts/compare-and-swap-for-inventory-mutations-with-change-from-quantity",
    "InventorySetQuantitiesUserErrorCode.CHANGE_FROM_QUANTITY_STALE": "https://shopify.dev/changelog/posts/compare-and-swap-redesign-for-inventory-set-quantities",
    "InventoryAdjustQuantitiesUserErrorCode.CHANGE_FROM_QUANTITY_STALE": "https://shopify.dev/changelog/posts/compare-and-swap-for-inventory-mutations-with-change-from-quantity",
    "InventorySetQuantitiesUserErrorCode.IDEMPOTENCY_CONCURRENT_REQUEST": "https://shopify.dev/changelog/posts/adding-idempotency-for-inventory-adjustments-and-refund-mutations",
    "InventorySetQuantitiesUserErrorCode.IDEMPOTENCY_KEY_PARAMETER_MISMATCH": "https://shopify.dev/changelog/posts/adding-idempotency-for-inventory-adjustments-and-refund-mutations",
    "InventoryAdjustQuantitiesUserErrorCode.IDEMPOTENCY_CONCURRENT_REQUEST": "https://shopify.dev/changelog/posts/adding-idempotency-for-inventory-adjustments-and-refund-mutations",
    "InventoryAdjustQuantitiesUserErrorCode.IDEMPOTENCY_KEY_PARAMETER_MISMATCH": "https://shopify.dev/changelog/posts/adding-idempotency-for-inventory-adjustments-and-refund-mutations",
    "InventoryAdjustQuantitiesUserErrorCode.IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED": "https://shopify.dev/changelog/posts/adding-idempotency-for-inventory-adjustments-and-refund-mutations",
    "@idempotent": "https://shopify.dev/changelog/posts/adding-idempotency-for-inventory-adjustments-and-refund-mutations",
}


def sdl_text(name: str = "schema.graphql") -> str:
    return resources.files("stocksync.sandbox").joinpath(name).read_text(encoding="utf-8")


def version_key(version: str) -> tuple[int, int] | None:
    """(year, month) of a stable version; `unstable` sorts after every stable one."""
    if version == "unstable":
        return (9999, 12)
    match = _VERSION.match(version)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


def has_additions(version: str) -> bool:
    key = version_key(version)
    threshold = version_key(ADDITIONS_FROM)
    return key is not None and threshold is not None and key >= threshold


@cache
def base_schema() -> GraphQLSchema:
    return build_ast_schema(parse(sdl_text()))


@cache
def extended_schema() -> GraphQLSchema:
    return extend_schema(base_schema(), parse(sdl_text("schema_additions.graphql")))


def schema_for(version: str) -> GraphQLSchema:
    return extended_schema() if has_additions(version) else base_schema()
