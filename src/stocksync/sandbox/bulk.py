"""Bulk query operations: one running query per shop, a JSONL result, a finish webhook.

The query is run against the shop with pagination lifted; every node of a connection
becomes one JSON line, and nodes of nested connections become lines of their own carrying
`__parentId` (their parent's id) instead of being nested, as Shopify writes them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from graphql import OperationDefinitionNode, OperationType, execute, parse, validate

from stocksync.sandbox.ids import gid
from stocksync.sandbox.payloads import bulk_finish_payload

if TYPE_CHECKING:
    from stocksync.sandbox.sandbox import Sandbox
    from stocksync.sandbox.state import Shop

RUN_DELAY = 1.0  # virtual seconds a bulk query takes


@dataclass
class BulkOperation:
    id: int
    shop_domain: str
    query: str
    created_at: float
    version: str
    status: str = "CREATED"
    type: str = "QUERY"
    error_code: str | None = None
    completed_at: float | None = None
    object_count: int = 0
    root_object_count: int = 0
    file_size: int | None = None
    url: str | None = None
    partial_data_url: str | None = None
    result: bytes = b""

    @property
    def gid(self) -> str:
        return gid("BulkOperation", self.id)


def flatten(data: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """JSON lines for a bulk result, and the number of root objects."""
    lines: list[dict[str, Any]] = []
    roots = 0

    def nodes_of(value: Any) -> list[Any] | None:
        if isinstance(value, dict) and ("edges" in value or "nodes" in value):
            if value.get("nodes") is not None:
                return list(value["nodes"])
            return [e.get("node") for e in value.get("edges") or [] if isinstance(e, dict)]
        return None

    def emit(node: dict[str, Any], parent_id: str | None) -> None:
        row: dict[str, Any] = {}
        children: list[tuple[list[Any], str | None]] = []
        for key, value in node.items():
            nested = nodes_of(value)
            if nested is not None:
                children.append((nested, node.get("id")))
            else:
                row[key] = value
        if parent_id is not None:
            row["__parentId"] = parent_id
        lines.append(row)
        for items, pid in children:
            for item in items:
                if isinstance(item, dict):
                    emit(item, pid)

    for value in data.values():
        items = nodes_of(value)
        if items is None:
            continue
        for item in items:
            if isinstance(item, dict):
                roots += 1
                emit(item, None)
    return lines, roots


class BulkOperations:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.by_shop: dict[str, list[BulkOperation]] = {}

    def current(self, shop: Shop) -> BulkOperation | None:
        ops = self.by_shop.get(shop.domain) or []
        return ops[-1] if ops else None

    def find(self, shop: Shop, op_id: int) -> BulkOperation | None:
        return next((op for op in self.by_shop.get(shop.domain, []) if op.id == op_id), None)

    def run_query(
        self, shop: Shop, query: str, version: str
    ) -> tuple[BulkOperation | None, list[dict[str, Any]]]:
        from stocksync.sandbox.schema import schema_for

        current = self.current(shop)
        if current is not None and current.status in ("CREATED", "RUNNING"):
            return None, [
                {
                    "field": ["query"],
                    "code": "OPERATION_IN_PROGRESS",
                    "message": f"A bulk query operation for this app and shop is already in "
                    f"progress: {current.gid}.",
                }
            ]
        try:
            document = parse(query)
        except Exception as exc:  # a syntax error is a user error, not a crash
            return None, [
                {"field": ["query"], "code": "INVALID", "message": f"Invalid bulk query: {exc}"}
            ]
        errors = validate(schema_for(version), document)
        ops = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        if errors or len(ops) != 1 or ops[0].operation != OperationType.QUERY:
            message = (
                errors[0].message if errors else "Bulk queries must contain one query operation"
            )
            return None, [
                {"field": ["query"], "code": "INVALID", "message": f"Invalid bulk query: {message}"}
            ]
        op = BulkOperation(shop.ids(), shop.domain, query, self.sandbox.clock.now(), version)
        self.by_shop.setdefault(shop.domain, []).append(op)
        op.status = "RUNNING"
        self.sandbox.spawn(self._run(shop, op))
        return op, []

    async def _run(self, shop: Shop, op: BulkOperation) -> None:
        from stocksync.sandbox.resolvers.common import Ctx, default_resolver
        from stocksync.sandbox.schema import has_additions, schema_for

        await self.sandbox.clock.sleep(RUN_DELAY)
        context = Ctx(self.sandbox, shop, op.version, has_additions(op.version), bulk=True)
        # The same field resolver as the GraphQL endpoint: fields the shop keeps under
        # another name (descriptionHtml, productType, ...) resolve the same way in bulk.
        result = execute(
            schema_for(op.version),
            parse(op.query),
            context_value=context,
            field_resolver=default_resolver,
        )
        assert not hasattr(result, "__await__")
        data = getattr(result, "data", None)
        if getattr(result, "errors", None) or data is None:
            op.status, op.error_code = "FAILED", "INTERNAL_SERVER_ERROR"
        else:
            lines, roots = flatten(data)
            op.result = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
            op.object_count, op.root_object_count = len(lines), roots
            op.file_size = len(op.result)
            op.url = f"{self.sandbox.shop_base_url(shop)}/bulk/{op.id}.jsonl" if lines else None
            op.status = "COMPLETED"
        op.completed_at = self.sandbox.clock.now()
        self.sandbox.webhooks.on_event(
            shop,
            "bulk_operations/finish",
            bulk_finish_payload(op.gid, op.status, op.created_at, op.completed_at, op.error_code),
        )
