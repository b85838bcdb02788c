"""Query cost, following Shopify's documented rules.

Scalars and enums cost 0, an object 1, a connection 2 plus the number of objects it returns
(`first`/`last` for the requested cost, the real count for the actual cost) times the cost
of each object's selection, and a mutation field 10. The connection's own wrappers (`edges`,
`nodes`, `pageInfo`) are part of its fixed 2.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    get_named_type,
    is_leaf_type,
    value_from_ast_untyped,
)

MUTATION_COST = 10
_WRAPPERS = ("edges", "nodes", "pageInfo", "cursor")


def select_operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    ops = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name:
        return next((o for o in ops if o.name and o.name.value == name), None)
    return ops[0] if len(ops) == 1 else None


class CostCalculator:
    def __init__(self, schema: GraphQLSchema, document: DocumentNode,
                 variables: dict[str, Any] | None) -> None:
        self.schema = schema
        self.variables = variables or {}
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }

    def operation_cost(self, op: OperationDefinitionNode, data: Any = None,
                       actual: bool = False) -> int:
        if op.operation == OperationType.MUTATION:
            return MUTATION_COST * sum(1 for _ in self._fields(op.selection_set))
        root = self.schema.query_type
        assert root is not None
        return self._selection(root, op.selection_set, data, actual)

    def _fields(self, selection_set: SelectionSetNode | None) -> list[FieldNode]:
        out: list[FieldNode] = []
        if selection_set is None:
            return out
        for sel in selection_set.selections:
            if isinstance(sel, FieldNode):
                out.append(sel)
            elif isinstance(sel, InlineFragmentNode):
                out.extend(self._fields(sel.selection_set))
            elif isinstance(sel, FragmentSpreadNode):
                frag = self.fragments.get(sel.name.value)
                if frag is not None:
                    out.extend(self._fields(frag.selection_set))
        return out

    def _arg(self, node: FieldNode, name: str) -> Any:
        for arg in node.arguments or ():
            if arg.name.value == name:
                return value_from_ast_untyped(arg.value, self.variables)
        return None

    def _selection(self, parent: Any, selection_set: SelectionSetNode | None, data: Any,
                   actual: bool) -> int:
        if actual and data is None:
            return 0
        total = 0
        for node in self._fields(selection_set):
            name = node.name.value
            if name.startswith("__"):
                continue
            fields = getattr(parent, "fields", None)
            field_def = fields.get(name) if fields else None
            if field_def is None:
                continue
            value = data.get(node.alias.value if node.alias else name) if actual else None
            total += self._field(field_def.type, node, value, actual)
        return total

    def _field(self, type_: GraphQLOutputType, node: FieldNode, value: Any, actual: bool) -> int:
        named = get_named_type(type_)
        if is_leaf_type(named):
            return 0
        if actual and value is None:
            return 0
        if named.name.endswith("Connection") and isinstance(named, GraphQLObjectType):
            return self._connection(named, node, value, actual)
        inner: Any = type_.of_type if isinstance(type_, GraphQLNonNull) else type_
        if isinstance(inner, GraphQLList):
            if actual:
                return sum(self._field(inner.of_type, node, v, actual) for v in value or [])
            size = self._arg(node, "first") or 1
            return int(size) * self._field(inner.of_type, node, None, actual)
        if isinstance(named, GraphQLObjectType | GraphQLInterfaceType):
            return 1 + self._selection(named, node.selection_set, value, actual)
        # Unions: the maximum of the possible selections, approximated by 1 + any selection.
        return 1 + max(
            (self._selection(t, node.selection_set, value, actual)
             for t in self.schema.get_possible_types(named)),  # type: ignore[arg-type]
            default=0,
        )

    def _connection(self, conn: GraphQLObjectType, node: FieldNode, value: Any,
                    actual: bool) -> int:
        node_type = get_named_type(conn.fields["nodes"].type)
        per_node_sets: list[SelectionSetNode] = []
        for sub in self._fields(node.selection_set):
            if sub.name.value == "nodes" and sub.selection_set:
                per_node_sets.append(sub.selection_set)
            elif sub.name.value == "edges":
                for edge_field in self._fields(sub.selection_set):
                    if edge_field.name.value == "node" and edge_field.selection_set:
                        per_node_sets.append(edge_field.selection_set)
        if actual:
            items: list[Any] = []
            if value.get("nodes") is not None:
                items = value["nodes"]
            elif value.get("edges") is not None:
                items = [e.get("node") for e in value["edges"] if isinstance(e, dict)]
            count = len(items)
            per_node = sum(
                1 + sum(self._selection(node_type, s, item, True) for s in per_node_sets)
                for item in items if item is not None
            )
            return 2 + (per_node if per_node_sets else count)
        size = self._arg(node, "first") or self._arg(node, "last") or 0
        per_node = 1 + sum(self._selection(node_type, s, None, False) for s in per_node_sets)
        return 2 + int(size) * per_node


def requested_cost(schema: GraphQLSchema, document: DocumentNode, op: OperationDefinitionNode,
                   variables: dict[str, Any] | None) -> int:
    return CostCalculator(schema, document, variables).operation_cost(op)


def actual_cost(schema: GraphQLSchema, document: DocumentNode, op: OperationDefinitionNode,
                variables: dict[str, Any] | None, data: Any) -> int:
    return CostCalculator(schema, document, variables).operation_cost(op, data, actual=True)
