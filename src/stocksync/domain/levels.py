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


class AfterWrite(Enum):
    """What a destination's level is once our write landed, given the level reports that
    arrived while it was in flight (see :func:`after_write`)."""

    OURS = "ours"  # the level we wrote stands
    REPORTED = "reported"  # a report of a later change stands
    UNKNOWN = "unknown"  # the two cannot be ordered: read the level again


def after_write(
    reported_before: int | None, reported_now: int | None, written_at: int | None
) -> AfterWrite:
    """Order our write against the destination's level reports (platform times, whole epoch
    seconds). ``reported_before``: the time of the last report taken when the write was
    planned; ``reported_now``: once it landed; ``written_at``: the platform's time of the
    write, when it gave one.

    No report arrived meanwhile: our write stands. One did: it stands if it is later than the
    write; the write does if it is later than the report. A report of the write's own second,
    or a write of unknown time, cannot be ordered: only a read tells (forgetting the write
    would leave the destination at a level the engine no longer believes it has; taking the
    report for it would trust a level from before the write)."""
    if reported_now == reported_before:
        return AfterWrite.OURS
    if written_at is None or reported_now is None or reported_now == written_at:
        return AfterWrite.UNKNOWN
    return AfterWrite.OURS if reported_now < written_at else AfterWrite.REPORTED


def reported_time_after_write(reported_now: int | None, written_at: int | None) -> int | None:
    """The report time a level we wrote carries: the write's own, so that a report older than
    the write (delivered late, after its echo was recognised as ours) is ignored as stale."""
    if written_at is None:
        return reported_now
    return written_at if reported_now is None else max(reported_now, written_at)
