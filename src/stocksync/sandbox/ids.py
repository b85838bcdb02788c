"""Identifiers as Shopify issues them: 64-bit integers (beyond 2^53) inside `gid://` URIs."""

from __future__ import annotations

import random
import re

_GID = re.compile(r"^gid://shopify/([A-Za-z]+)/(\d+)(?:\?inventory_item_id=(\d+))?$")


class IdGenerator:
    """Strictly increasing ids above 2^53, so that clients that store them as doubles break
    in tests rather than in production, and so that creation order is id order."""

    def __init__(self, seed: int = 0) -> None:
        rng = random.Random(seed)  # noqa: S311 (seeded simulation, not security)
        self._next = 2**53 + rng.randrange(1, 2**40)

    def __call__(self) -> int:
        self._next += 1 + (self._next % 7)
        return self._next


def gid(kind: str, number: int) -> str:
    return f"gid://shopify/{kind}/{number}"


def level_gid(level_id: int, item_id: int) -> str:
    return f"gid://shopify/InventoryLevel/{level_id}?inventory_item_id={item_id}"


def parse_gid(value: object, kind: str | None = None) -> int | None:
    """The number inside a gid of the expected kind, or None when it is not one."""
    if not isinstance(value, str):
        return None
    match = _GID.match(value)
    if match is None or (kind is not None and match.group(1) != kind):
        return None
    return int(match.group(2))
