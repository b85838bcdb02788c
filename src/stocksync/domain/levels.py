"""How much a destination shows, and where a sale is taken from at the source (B14, B20)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

# Shopify refuses quantities beyond one billion; anything larger is bad input, not stock.
MAX_QUANTITY = 1_000_000_000


def plausible_quantity(quantity: int | None) -> bool:
    return quantity is not None and -MAX_QUANTITY <= quantity <= MAX_QUANTITY


def destination_level(source_level: int, safety_buffer: int) -> int:
    """B20: destinations see ``max(0, source - buffer)``; a negative source shows as 0."""
    return max(0, source_level - safety_buffer)


def shared_total(levels: Mapping[str, int | None]) -> int:
    """The source's level of an item: the sum over its shared locations that stock it."""
    return sum(q for q in levels.values() if q is not None)


def choose_sale_location(
    levels: Mapping[str, int | None], units: int = 1, priority: Sequence[str] | None = None
) -> str | None:
    """B14: take a sale from the shared location with the most available units, unless the
    source set a priority order: then the first prioritised location holding ``units``, or
    failing that the first prioritised location stocking the item at all.

    Ties go to the lowest location id so that the choice is deterministic on retries."""
    stocked = {loc: q for loc, q in levels.items() if q is not None}
    if priority:
        ranked = [loc for loc in priority if loc in stocked]
        for loc in ranked:
            if (stocked[loc] or 0) >= units:
                return loc
        if ranked:
            return ranked[0]
    if not stocked:
        return None
    return min(stocked, key=lambda loc: (-stocked[loc], loc))
