"""How much a destination shows, and where a sale is taken from at the source (B14, B20)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum

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


class Standing(Enum):
    """Which level is the store's once our own look at it (a write, or a read) is done, given
    the level reports that arrived meanwhile (see :func:`against_reports`)."""

    OURS = "ours"  # the level we wrote or read stands
    REPORTED = "reported"  # a report of a later change stands
    UNKNOWN = "unknown"  # the two cannot be ordered


def against_reports(
    reported_before: int | None, reported_now: int | None, ours_at: int | None
) -> Standing:
    """Order our write or read against the store's level reports (platform times, whole
    epoch seconds). ``reported_before``: the time of the last report taken when we started;
    ``reported_now``: once we are done; ``ours_at``: the platform's time of the level we
    wrote or read, when it gave one.

    No report arrived meanwhile: ours stands. One did: it stands if it is later than ours;
    ours does if it is later than the report. A report of the same second, or a level of
    unknown time, cannot be ordered: a write is then read again (forgetting the write would
    leave the store at a level the engine no longer believes it has; taking the report for
    it would trust a level from before the write), a read gives way to the report."""
    if reported_now == reported_before:
        return Standing.OURS
    if ours_at is None or reported_now is None or reported_now == ours_at:
        return Standing.UNKNOWN
    return Standing.OURS if reported_now < ours_at else Standing.REPORTED


def time_after_ours(reported_now: int | None, ours_at: int | None) -> int | None:
    """The report time a level we wrote or read carries: its own when the platform gave it,
    so that a report older than it (delivered late; our write's echo was recognised as ours
    and not stored) is ignored as stale."""
    if ours_at is None:
        return reported_now
    return ours_at if reported_now is None else max(reported_now, ours_at)
