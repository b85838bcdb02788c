"""Identifiers: Shopify's global ids (``gid://shopify/Kind/123``) <-> numeric text.

Convention (shared by the client and the webhook parser): every id stocksync sees is the
decimal text of Shopify's 64-bit numeric id, e.g. ``"9007199254740993"``. GraphQL answers
carry gids and webhook bodies carry bare integers; both are converted to the same text, so
an item id from ``inventory_levels/update`` equals the id ``read_levels`` was given. The
kind is implied by where an id is used and restored when talking to GraphQL.

Shopify relies on: ids exceed 2**53, so they must never pass through a float (JSON integers
are parsed by Python's ``json`` as exact ints); some gids carry a query string
(``InventoryLevel/1?inventory_item_id=2``), which is not part of the number.
"""

from __future__ import annotations

import re

_GID = re.compile(r"^gid://shopify/([A-Za-z]+)/(\d+)(?:\?.*)?$")
_DIGITS = re.compile(r"^\d+$")


class InvalidIdError(ValueError):
    """A value that is neither a gid nor a positive integer id."""


def numeric_id(value: object, kind: str | None = None) -> str:
    """The decimal text of an id given as a gid, an int or numeric text (never a float)."""
    if isinstance(value, bool) or value is None:
        raise InvalidIdError(f"not an id: {value!r}")
    if isinstance(value, int):
        if value <= 0:
            raise InvalidIdError(f"not an id: {value!r}")
        return str(value)
    if isinstance(value, str):
        text = value.strip()
        if _DIGITS.match(text):
            return str(int(text))  # canonical: no leading zeros
        match = _GID.match(text)
        if match is not None:
            if kind is not None and match.group(1) != kind:
                raise InvalidIdError(f"expected a {kind} id, got {value!r}")
            return str(int(match.group(2)))
    # floats included: an id that went through a float has already lost digits
    raise InvalidIdError(f"not an id: {value!r}")


def optional_numeric_id(value: object, kind: str | None = None) -> str | None:
    return None if value is None else numeric_id(value, kind)


def to_gid(kind: str, value: object) -> str:
    """The gid of ``kind`` for an id given as numeric text, an int or a gid of that kind."""
    return f"gid://shopify/{kind}/{numeric_id(value, kind)}"
