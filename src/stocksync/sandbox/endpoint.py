"""The Admin GraphQL endpoint: parse, validate (cached), cost, rate limit, execute.

Answers follow Shopify's shapes: HTTP 200 with `errors` for GraphQL problems (unknown
fields are reported as Shopify reports them), `extensions.cost` on every answer,
`THROTTLED` when the bucket cannot pay the requested cost, `MAX_COST_EXCEEDED` above 1,000.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLUnionType,
    OperationDefinitionNode,
    OperationType,
    execute,
    parse,
    validate,
)

from stocksync.sandbox import resolvers as _resolvers  # noqa: F401  (package marker)
from stocksync.sandbox.cost import CostPlan, compile_cost, select_operation
from stocksync.sandbox.ratelimit import MAX_QUERY_COST
from stocksync.sandbox.resolvers import admin, inventory, orders, products  # noqa: F401  (importing registers their resolvers)
from stocksync.sandbox.resolvers.common import RESOLVERS, Ctx, default_resolver
from stocksync.sandbox.schema import base_schema, extended_schema, has_additions, schema_for
from stocksync.sandbox.timefmt import iso_z

if TYPE_CHECKING:
    from stocksync.sandbox.sandbox import Sandbox
    from stocksync.sandbox.state import Shop

DOC_CACHE_SIZE = 1024
RATE_LIMIT_DOCS = "https://shopify.dev/api/usage/rate-limits"

_TYPE_NAMES = {
    "Product": "Product",
    "Variant": "ProductVariant",
    "InventoryItem": "InventoryItem",
    "InventoryLevel": "InventoryLevel",
    "Location": "Location",
    "Order": "Order",
    "Publication": "Publication",
    "LineItem": "LineItem",
    "FulfillmentOrder": "FulfillmentOrder",
    "Fulfillment": "Fulfillment",
    "Refund": "Refund",
    "OrderEdit": "CalculatedOrder",
    "Subscription": "WebhookSubscription",
    "BulkOperation": "BulkOperation",
    "ProductOption": "ProductOption",
    "Shop": "Shop",
    "FulfillmentOrderLine": "FulfillmentOrderLineItem",
}


def _resolve_type(value: Any, info: Any, abstract: Any) -> str | None:
    if isinstance(value, dict):
        name = value.get("__typename")
        return name if isinstance(name, str) else None
    return _TYPE_NAMES.get(type(value).__name__)


def _serialize_datetime(value: Any) -> Any:
    return iso_z(value) if isinstance(value, int | float) else value


def _bind(schema: GraphQLSchema) -> None:
    for (type_name, field_name), fn in RESOLVERS.items():
        gql_type = schema.type_map.get(type_name)
        fields = getattr(gql_type, "fields", None)
        if fields is None or field_name not in fields:
            raise LookupError(f"resolver for unknown field {type_name}.{field_name}")
        fields[field_name].resolve = fn
    for abstract in ("Node", "Publishable", "WebhookSubscriptionEndpoint"):
        abstract_type = schema.type_map[abstract]
        assert isinstance(abstract_type, GraphQLInterfaceType | GraphQLUnionType)
        abstract_type.resolve_type = _resolve_type
    serializers: tuple[tuple[str, Callable[[Any], Any]], ...] = (
        ("DateTime", _serialize_datetime),
        ("UnsignedInt64", str),
    )
    for scalar_name, serialize in serializers:
        scalar = schema.type_map[scalar_name]
        assert isinstance(scalar, GraphQLScalarType)
        # graphql-core 3.3 reads coerce_output_value; 3.2 reads serialize.
        for attribute in ("serialize", "coerce_output_value"):
            setattr(scalar, attribute, serialize)


_bound = False


def bind_all() -> None:
    global _bound
    if not _bound:
        _bind(base_schema())
        _bind(extended_schema())
        _bound = True


@dataclass
class Prepared:
    document: DocumentNode | None
    errors: list[dict[str, Any]]
    # operation name -> the operation and its compiled cost plan
    operations: dict[str | None, tuple[OperationDefinitionNode, CostPlan] | None] = field(
        default_factory=dict
    )

    def operation(
        self, schema: GraphQLSchema, name: str | None
    ) -> tuple[OperationDefinitionNode, CostPlan] | None:
        if name not in self.operations:
            assert self.document is not None
            op = select_operation(self.document, name)
            self.operations[name] = (op, compile_cost(schema, self.document, op)) if op else None
        return self.operations[name]


_UNDEFINED_FIELD = re.compile(r"^Cannot query field '([^']+)' on type '([^']+)'\.")
_UNKNOWN_ARG = re.compile(r"^Unknown argument '([^']+)' on field '([^.']+)\.([^']+)'\.")
_UNKNOWN_DIRECTIVE = re.compile(r"^Unknown directive '@([^']+)'\.")


def shopify_error(error: GraphQLError) -> dict[str, Any]:
    """graphql-core's wording mapped onto Shopify's for the errors clients meet most."""
    formatted: dict[str, Any] = dict(error.formatted)
    message = error.message
    if m := _UNDEFINED_FIELD.match(message):
        formatted["message"] = f"Field '{m.group(1)}' doesn't exist on type '{m.group(2)}'"
        formatted["extensions"] = {
            "code": "undefinedField",
            "typeName": m.group(2),
            "fieldName": m.group(1),
        }
    elif m := _UNKNOWN_ARG.match(message):
        formatted["message"] = f"Field '{m.group(3)}' doesn't accept argument '{m.group(1)}'"
        formatted["extensions"] = {
            "code": "argumentNotAccepted",
            "name": m.group(3),
            "typeName": "Field",
            "argumentName": m.group(1),
        }
    elif m := _UNKNOWN_DIRECTIVE.match(message):
        formatted["message"] = f"Directive @{m.group(1)} is not defined"
        formatted["extensions"] = {"code": "undefinedDirective", "directiveName": m.group(1)}
    return formatted


class GraphQLEndpoint:
    def __init__(self, sandbox: Sandbox) -> None:
        bind_all()
        self.sandbox = sandbox
        self._cache: OrderedDict[tuple[bool, str], Prepared] = OrderedDict()

    def prepare(self, schema: GraphQLSchema, additions: bool, query: str) -> Prepared:
        """Parsed and validated documents are cached: most clients send a handful of
        documents over and over with different variables."""
        key = (additions, query)
        found = self._cache.get(key)
        if found is not None:
            self._cache.move_to_end(key)
            return found
        try:
            document = parse(query)
            errors = [shopify_error(e) for e in validate(schema, document)]
            prepared = Prepared(None if errors else document, errors)
        except GraphQLError as exc:
            prepared = Prepared(None, [shopify_error(exc)])
        self._cache[key] = prepared
        if len(self._cache) > DOC_CACHE_SIZE:
            self._cache.popitem(last=False)
        return prepared

    def run(self, shop: Shop, version: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """One GraphQL request, synchronously (the state changes it makes are atomic).
        Returns the answer and whether a mutation was executed."""
        sandbox = self.sandbox
        stats = sandbox.stats_of(shop)
        bucket = sandbox.bucket_of(shop)
        query = body.get("query")
        variables = body.get("variables") or {}
        if not isinstance(query, str) or not isinstance(variables, dict):
            raise ValueError("query must be a string and variables an object")
        schema = schema_for(version)
        additions = has_additions(version)
        prepared = self.prepare(schema, additions, query)

        def cost_ext(requested: int, actual: int | None) -> dict[str, Any]:
            return {
                "cost": {
                    "requestedQueryCost": requested,
                    "actualQueryCost": actual,
                    "throttleStatus": bucket.throttle_status(),
                }
            }

        if prepared.document is None:
            return {"errors": prepared.errors, "extensions": cost_ext(0, 0)}, False
        document = prepared.document
        found = prepared.operation(schema, body.get("operationName"))
        if found is None:
            return {
                "errors": [{"message": "An operation name is required"}],
                "extensions": cost_ext(0, 0),
            }, False
        op, plan = found
        try:
            requested = plan.requested(variables)
        except (TypeError, ValueError):
            requested = 0  # malformed sizes are reported by execution below

        if requested > MAX_QUERY_COST:
            stats.max_cost_exceeded += 1
            return {
                "errors": [
                    {
                        "message": f"Query cost is {requested}, which exceeds the single "
                        "query max cost "
                        f"limit ({MAX_QUERY_COST}).\n\nSee {RATE_LIMIT_DOCS} for more "
                        "information on how the cost of a query is calculated.\n\nTo query "
                        "larger amounts of data with fewer limits, bulk operations should be "
                        "used instead.",
                        "extensions": {
                            "code": "MAX_COST_EXCEEDED",
                            "cost": requested,
                            "maxCost": MAX_QUERY_COST,
                            "documentation": RATE_LIMIT_DOCS,
                        },
                    }
                ],
                "extensions": cost_ext(requested, None),
            }, False
        forced = sandbox.faults_of(shop).take("throttle")
        if forced or not bucket.try_consume(requested):
            stats.throttled += 1
            return {
                "errors": [
                    {
                        "message": "Throttled",
                        "extensions": {"code": "THROTTLED", "documentation": RATE_LIMIT_DOCS},
                    }
                ],
                "extensions": cost_ext(requested, None),
            }, False
        context = Ctx(sandbox, shop, version, additions)
        result = execute(
            schema,
            document,
            context_value=context,
            variable_values=variables,
            operation_name=body.get("operationName"),
            field_resolver=default_resolver,
        )
        assert not hasattr(result, "__await__"), "resolvers are synchronous"
        data = getattr(result, "data", None)
        errors = getattr(result, "errors", None)
        actual = requested if op.operation == OperationType.MUTATION else plan.actual(data)
        bucket.refund(requested - actual)
        stats.points_spent += actual
        if op.operation == OperationType.QUERY and context.touched_levels:
            sandbox.remember_reads(shop, context.touched_levels)
        response: dict[str, Any] = {}
        if errors:
            response["errors"] = [shopify_error(e) for e in errors]
        response["data"] = data
        response["extensions"] = cost_ext(requested, actual)
        return response, op.operation == OperationType.MUTATION


def is_mutation(document: DocumentNode, operation_name: str | None) -> bool:
    op = select_operation(document, operation_name)
    return isinstance(op, OperationDefinitionNode) and op.operation == OperationType.MUTATION


def dumps(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()
