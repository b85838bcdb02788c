"""Query cost, following Shopify's documented rules.

Scalars and enums cost 0, an object 1, a connection 2 plus the number of objects it returns
(`first`/`last` for the requested cost, the real count for the actual cost) times the cost
of each object's selection, and a mutation field 10. The connection's own wrappers (`edges`,
`nodes`, `pageInfo`) are part of its fixed 2.

A document is compiled once into a plan (the fields that cost something, with their sizes)
so that pricing each request is a short walk, not a new pass over the schema.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    GraphQLUnionType,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    is_leaf_type,
)

MUTATION_COST = 10
OBJECT, LIST, CONNECTION = 0, 1, 2


def select_operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    ops = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name:
        return next((o for o in ops if o.name and o.name.value == name), None)
    return ops[0] if len(ops) == 1 else None


@dataclass
class FieldPlan:
    key: str  # the response key (alias or name)
    kind: int
    size: int | str | None  # a literal, a variable name, or nothing
    children: list[FieldPlan] = field(default_factory=list)

    def size_value(self, variables: dict[str, Any]) -> int:
        value = variables.get(self.size) if isinstance(self.size, str) else self.size
        return int(value) if isinstance(value, int) else 0


@dataclass
class CostPlan:
    mutation_fields: int
    fields: list[FieldPlan]

    def requested(self, variables: dict[str, Any] | None) -> int:
        if self.mutation_fields:
            return MUTATION_COST * self.mutation_fields
        return _requested(self.fields, variables or {})

    def actual(self, data: Any) -> int:
        if self.mutation_fields:
            return MUTATION_COST * self.mutation_fields
        return _actual(self.fields, data)


def _requested(fields: list[FieldPlan], variables: dict[str, Any]) -> int:
    total = 0
    for f in fields:
        inner = 1 + _requested(f.children, variables)
        if f.kind == OBJECT:
            total += inner
        elif f.kind == LIST:
            total += max(1, f.size_value(variables)) * inner
        else:
            total += 2 + f.size_value(variables) * inner
    return total


def _actual(fields: list[FieldPlan], data: Any) -> int:
    if not isinstance(data, dict):
        return 0
    total = 0
    for f in fields:
        value = data.get(f.key)
        if value is None:
            continue
        if f.kind == OBJECT:
            total += 1 + _actual(f.children, value)
        elif f.kind == LIST:
            total += sum(1 + _actual(f.children, v) for v in value if v is not None)
        else:
            if value.get("nodes") is not None:
                items = value["nodes"]
            else:
                items = [e.get("node") for e in value.get("edges") or [] if isinstance(e, dict)]
            total += 2 + sum(1 + _actual(f.children, v) for v in items if v is not None)
    return total


class _Compiler:
    def __init__(self, schema: GraphQLSchema, document: DocumentNode) -> None:
        self.schema = schema
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }

    def fields(self, selection_set: SelectionSetNode | None) -> list[FieldNode]:
        out: list[FieldNode] = []
        if selection_set is None:
            return out
        for sel in selection_set.selections:
            if isinstance(sel, FieldNode):
                out.append(sel)
            elif isinstance(sel, InlineFragmentNode):
                out.extend(self.fields(sel.selection_set))
            elif isinstance(sel, FragmentSpreadNode):
                frag = self.fragments.get(sel.name.value)
                if frag is not None:
                    out.extend(self.fields(frag.selection_set))
        return out

    def selection(self, parent: Any, selection_set: SelectionSetNode | None) -> list[FieldPlan]:
        plans: list[FieldPlan] = []
        for node in self.fields(selection_set):
            name = node.name.value
            if name.startswith("__"):
                continue
            candidates = (
                list(self.schema.get_possible_types(parent))
                if isinstance(parent, GraphQLUnionType | GraphQLInterfaceType)
                else [parent]
            )
            if isinstance(parent, GraphQLInterfaceType):
                candidates.insert(0, parent)
            field_def = next(
                (c.fields[name] for c in candidates if name in getattr(c, "fields", {})), None
            )
            if field_def is None:
                continue
            plan = self.field(field_def.type, node)
            if plan is not None:
                plans.append(plan)
        return plans

    def field(self, type_: GraphQLOutputType, node: FieldNode) -> FieldPlan | None:
        named = get_named_type(type_)
        if is_leaf_type(named):
            return None
        key = node.alias.value if node.alias else node.name.value
        if named.name.endswith("Connection") and isinstance(named, GraphQLObjectType):
            node_type = get_named_type(named.fields["nodes"].type)
            children: list[FieldPlan] = []
            for sub in self.fields(node.selection_set):
                if sub.name.value == "nodes":
                    children += self.selection(node_type, sub.selection_set)
                elif sub.name.value == "edges":
                    for edge_field in self.fields(sub.selection_set):
                        if edge_field.name.value == "node":
                            children += self.selection(node_type, edge_field.selection_set)
            size = self.size(node, "first")
            return FieldPlan(
                key, CONNECTION, size if size is not None else self.size(node, "last"), children
            )
        inner: Any = type_.of_type if isinstance(type_, GraphQLNonNull) else type_
        kind = LIST if isinstance(inner, GraphQLList) else OBJECT
        size = self.size(node, "first") if kind == LIST else None
        return FieldPlan(key, kind, size, self.selection(named, node.selection_set))

    @staticmethod
    def size(node: FieldNode, name: str) -> int | str | None:
        for arg in node.arguments or ():
            if arg.name.value == name:
                if isinstance(arg.value, IntValueNode):
                    return int(arg.value.value)
                if isinstance(arg.value, VariableNode):
                    return arg.value.name.value
        return None


def compile_cost(
    schema: GraphQLSchema, document: DocumentNode, op: OperationDefinitionNode
) -> CostPlan:
    compiler = _Compiler(schema, document)
    if op.operation == OperationType.MUTATION:
        return CostPlan(max(1, len(compiler.fields(op.selection_set))), [])
    root = schema.query_type
    assert root is not None
    return CostPlan(0, compiler.selection(root, op.selection_set))


def requested_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    op: OperationDefinitionNode,
    variables: dict[str, Any] | None,
) -> int:
    return compile_cost(schema, document, op).requested(variables)


def actual_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    op: OperationDefinitionNode,
    variables: dict[str, Any] | None,
    data: Any,
) -> int:
    return compile_cost(schema, document, op).actual(data)
