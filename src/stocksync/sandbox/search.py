"""Shopify's search syntax, as much as the sandbox's queries need.

Supported: `field:value`, comparisons (`updated_at:>2025-01-01T00:00:00Z`, `>=`, `<`, `<=`),
prefix wildcards (`sku:ABC*`), negation (`-tag:x`, `NOT tag:x`), quoted values, `AND`
(also implicit) and `OR`. A bare word matches the resource's title.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from stocksync.sandbox.timefmt import parse_time

Getter = Callable[[Any], Any]


@dataclass(frozen=True)
class Term:
    field: str
    op: str
    value: str
    negated: bool


def parse(query: str) -> list[list[Term]]:
    """A disjunction of conjunctions of terms."""
    try:
        words = shlex.split(query, posix=True)
    except ValueError:
        words = query.split()
    groups: list[list[Term]] = [[]]
    negate_next = False
    for word in words:
        if word == "OR":
            groups.append([])
            continue
        if word == "AND":
            continue
        if word == "NOT":
            negate_next = True
            continue
        negated = negate_next or word.startswith("-")
        negate_next = False
        word = word.lstrip("-")
        field, sep, rest = word.partition(":")
        if not sep:
            groups[-1].append(Term("default", "=", word, negated))
            continue
        op = "="
        for candidate in (">=", "<=", ">", "<"):
            if rest.startswith(candidate):
                op, rest = candidate, rest[len(candidate) :]
                break
        groups[-1].append(Term(field.lower(), op, rest, negated))
    return [g for g in groups if g]


def _compare(actual: Any, term: Term) -> bool:
    if actual is None:
        return False
    if isinstance(actual, float | int) and not isinstance(actual, bool):
        wanted: float | None
        if term.field.endswith("_at"):
            wanted = parse_time(term.value)
        else:
            try:
                wanted = float(term.value.rsplit("/", 1)[-1])
            except ValueError:
                wanted = None
        if wanted is None:
            return False
        return {
            "=": actual == wanted,
            ">": actual > wanted,
            ">=": actual >= wanted,
            "<": actual < wanted,
            "<=": actual <= wanted,
        }[term.op]
    text, wanted_text = str(actual).lower(), term.value.lower()
    if wanted_text.endswith("*"):
        return text.startswith(wanted_text[:-1])
    if term.field == "default":
        return wanted_text in text
    return text == wanted_text


def _term_matches(item: Any, term: Term, getters: dict[str, Getter]) -> bool:
    getter = getters.get(term.field)
    if getter is None:
        return True  # unknown filters are ignored, as Shopify does
    actual = getter(item)
    if isinstance(actual, list | tuple | set):
        hit = any(_compare(value, term) for value in actual)
    else:
        hit = _compare(actual, term)
    return hit != term.negated


def filter_items(items: Iterable[Any], query: str | None, getters: dict[str, Getter]) -> list[Any]:
    if not query or not query.strip():
        return list(items)
    groups = parse(query)
    return [
        item
        for item in items
        if any(all(_term_matches(item, t, getters) for t in group) for group in groups)
    ]
