"""Shared pieces of the resolvers: the request context, connections, errors, idempotency."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from graphql import GraphQLError, GraphQLResolveInfo
from graphql.execution.values import get_directive_values

from stocksync.sandbox.state import ShopError, decode_cursor, encode_cursor

if TYPE_CHECKING:
    from stocksync.sandbox.sandbox import Sandbox
    from stocksync.sandbox.state import Shop

Resolver = Callable[..., Any]
Info = GraphQLResolveInfo[Any]
RESOLVERS: dict[tuple[str, str], Resolver] = {}
MAX_PAGE = 250


def field_resolver(type_name: str, *field_names: str) -> Callable[[Resolver], Resolver]:
    def register(fn: Resolver) -> Resolver:
        for name in field_names:
            RESOLVERS[(type_name, name)] = fn
        return fn

    return register


@dataclass
class Ctx:
    sandbox: Sandbox
    shop: Shop
    version: str
    additions: bool
    bulk: bool = False
    touched_levels: list[tuple[int, int]] = field(default_factory=list)


def ctx(info: Info) -> Ctx:
    context = info.context
    assert isinstance(context, Ctx)
    return context


_SNAKE = re.compile(r"(?<!^)(?=[A-Z])")
_snake_cache: dict[str, str] = {}


def default_resolver(source: Any, info: Info, **_: Any) -> Any:
    name = info.field_name
    if isinstance(source, dict):
        return source.get(name)
    if name == "id":
        return getattr(source, "gid", None)
    if name == "legacyResourceId":
        return str(source.id)
    snake = _snake_cache.get(name)
    if snake is None:
        snake = _snake_cache[name] = _SNAKE.sub("_", name).lower()
    return getattr(source, snake, None)


def connection(
    items: Iterable[Any],
    args: dict[str, Any],
    info: Info,
    key: Callable[[Any], Any] = lambda item: item.id,
) -> dict[str, Any]:
    """A Relay connection over `items` (already in the requested order)."""
    first, last = args.get("first"), args.get("last")
    bulk = ctx(info).bulk
    if first is None and last is None and not bulk:
        raise GraphQLError("you must provide one of first or last")
    for name, value in (("first", first), ("last", last)):
        if value is not None and (value < 0 or value > MAX_PAGE) and not bulk:
            raise GraphQLError(f"The {name} argument must be between 0 and {MAX_PAGE}.")
    ordered = list(items)
    if args.get("reverse"):
        ordered.reverse()
    keys = [key(item) for item in ordered]
    start, end = 0, len(ordered)
    after, before = args.get("after"), args.get("before")
    if after:
        wanted = decode_cursor(after)
        start = next((i + 1 for i, k in enumerate(keys) if k == wanted), _position(keys, wanted))
    if before:
        wanted = decode_cursor(before)
        end = next((i for i, k in enumerate(keys) if k == wanted), _position(keys, wanted))
    window = list(range(start, max(start, end)))
    if first is not None and not bulk:
        window = window[:first]
    if last is not None and not bulk:
        window = window[-last:] if last else []
    edges = [{"cursor": encode_cursor(keys[i]), "node": ordered[i]} for i in window]
    return {
        "edges": edges,
        "nodes": [e["node"] for e in edges],
        "pageInfo": {
            "hasNextPage": bool(window) and window[-1] < len(ordered) - 1,
            "hasPreviousPage": bool(window) and window[0] > 0,
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
        },
    }


def _position(keys: Sequence[Any], wanted: Any) -> int:
    """Where a cursor whose item disappeared would sit (items are in ascending key order)."""
    try:
        return next((i for i, k in enumerate(keys) if k > wanted), len(keys))
    except TypeError:
        return len(keys)


def user_error(exc: ShopError, *, coded: bool = False) -> dict[str, Any]:
    error: dict[str, Any] = {"field": exc.field, "message": exc.message}
    if coded:
        error["code"] = exc.code
    return error


def money(amount: str, currency: str = "USD") -> dict[str, Any]:
    value = {"amount": amount, "currencyCode": currency}
    return {"shopMoney": value, "presentmentMoney": value}


def idempotency_key(info: Info) -> str | None:
    directive = info.schema.get_directive("idempotent")
    if directive is None:
        return None
    values = get_directive_values(directive, info.field_nodes[0], info.variable_values)
    key = (values or {}).get("key")
    return str(key) if key is not None else None


def idempotent(
    info: Info,
    args: dict[str, Any],
    compute: Callable[[], Any],
    mismatch: Callable[[], Any],
) -> Any:
    """Same key and input: the first result again. Same key, other input: the error Shopify
    documents (IDEMPOTENCY_KEY_PARAMETER_MISMATCH)."""
    key = idempotency_key(info)
    if key is None:
        return compute()
    shop = ctx(info).shop
    fingerprint = json.dumps(args, sort_keys=True, default=str)
    record_key = (info.field_name, key)
    record = shop.idempotency.get(record_key)
    if record is not None:
        return record[1] if record[0] == fingerprint else mismatch()
    result = compute()
    shop.idempotency[record_key] = (fingerprint, result)
    return result


MISMATCH_MESSAGE = "The same idempotency key cannot be used with different operation parameters."
