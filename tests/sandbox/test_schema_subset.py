"""The sandbox's SDL is a subset of Shopify's real Admin schema (2025-01), plus exactly the
later additions documented in Shopify's changelog."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLUnionType,
    build_client_schema,
    is_non_null_type,
)
from graphql.pyutils import Undefined

from stocksync.sandbox.schema import LATER_ADDITIONS, base_schema, extended_schema

REAL_SCHEMA = (
    Path(__file__).resolve().parents[2]
    / ".."
    / "shared"
    / "platforms"
    / "shopify"
    / "admin_schema_2025-01.json.gz"
)


@pytest.fixture(scope="module")
def real() -> GraphQLSchema:
    if not REAL_SCHEMA.exists():
        pytest.skip(f"real Shopify schema not found at {REAL_SCHEMA} (shared data files absent)")
    with gzip.open(REAL_SCHEMA) as fh:
        data = json.load(fh)["data"]
    return build_client_schema(data, assume_valid=True)


def differences(ours: GraphQLSchema, real: GraphQLSchema) -> list[str]:  # noqa: C901, PLR0912  one comparison per kind of type
    """Everything `ours` declares that `real` lacks or types differently."""
    problems: list[str] = []
    for name, ours_type in ours.type_map.items():
        if name.startswith("__"):
            continue
        real_type = real.type_map.get(name)
        if real_type is None:
            problems.append(name)
            continue
        if type(real_type) is not type(ours_type):
            problems.append(f"{name}: kind differs")
            continue
        if isinstance(ours_type, GraphQLEnumType):
            assert isinstance(real_type, GraphQLEnumType)
            problems += [f"{name}.{v}" for v in ours_type.values if v not in real_type.values]
        elif isinstance(ours_type, GraphQLUnionType):
            assert isinstance(real_type, GraphQLUnionType)
            real_members = {t.name for t in real_type.types}
            problems += [f"{name}|{t.name}" for t in ours_type.types if t.name not in real_members]
        elif isinstance(ours_type, GraphQLInputObjectType):
            assert isinstance(real_type, GraphQLInputObjectType)
            for fname, fld in ours_type.fields.items():
                real_fld = real_type.fields.get(fname)
                if real_fld is None or str(real_fld.type) != str(fld.type):
                    problems.append(f"{name}.{fname}: {fld.type}")
            for fname, real_fld in real_type.fields.items():
                # Leaving out a required input field would accept documents Shopify rejects.
                required = is_non_null_type(real_fld.type) and real_fld.default_value is Undefined
                if required and fname not in ours_type.fields:
                    problems.append(f"{name}.{fname}: required field missing")
        elif isinstance(ours_type, GraphQLObjectType | GraphQLInterfaceType):
            assert isinstance(real_type, GraphQLObjectType | GraphQLInterfaceType)
            real_ifaces = {i.name for i in real_type.interfaces}
            problems += [
                f"{name} implements {i.name}"
                for i in ours_type.interfaces
                if i.name not in real_ifaces
            ]
            for fname, fld in ours_type.fields.items():
                real_fld = real_type.fields.get(fname)
                if real_fld is None or str(real_fld.type) != str(fld.type):
                    problems.append(f"{name}.{fname}: {fld.type}")
                    continue
                for aname, arg in fld.args.items():
                    real_arg = real_fld.args.get(aname)
                    if real_arg is None or str(real_arg.type) != str(arg.type):
                        problems.append(f"{name}.{fname}({aname}: {arg.type})")
                for aname, real_arg in real_fld.args.items():
                    if is_non_null_type(real_arg.type) and aname not in fld.args:
                        problems.append(f"{name}.{fname}({aname}): required argument missing")
        else:
            assert isinstance(ours_type, GraphQLScalarType)
    real_directives = {d.name: d for d in real.directives}
    for directive in ours.directives:
        if directive.name not in real_directives:
            problems.append(f"@{directive.name}")
    return problems


def test_base_sdl_is_a_subset_of_the_real_2025_01_schema(real: GraphQLSchema) -> None:
    assert differences(base_schema(), real) == []


def test_root_types_are_named_as_on_shopify(real: GraphQLSchema) -> None:
    ours_query, ours_mutation = base_schema().query_type, base_schema().mutation_type
    assert ours_query is not None
    assert ours_mutation is not None
    assert real.query_type is not None
    assert real.mutation_type is not None
    assert ours_query.name == real.query_type.name == "QueryRoot"
    assert ours_mutation.name == real.mutation_type.name == "Mutation"


def test_later_additions_are_exactly_the_documented_ones(real: GraphQLSchema) -> None:
    extra = differences(extended_schema(), real)
    assert sorted(extra) == sorted(
        f"{k}: Int" if k.endswith(".changeFromQuantity") else k for k in LATER_ADDITIONS
    )
    assert all(ref.startswith("https://shopify.dev/changelog/") for ref in LATER_ADDITIONS.values())


def test_the_checker_notices_a_field_shopify_does_not_have(real: GraphQLSchema) -> None:
    from graphql import build_ast_schema, parse

    bogus = build_ast_schema(
        parse("type QueryRoot { shop: Shop!, madeUp: Int } type Shop { id: ID! }")
    )
    assert differences(bogus, real) == ["QueryRoot.madeUp: Int"]
