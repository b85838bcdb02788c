"""What a destination shows while sales are on their way to the source (B15, B20, B24).

A destination sale takes units off the destination at checkout; the source learns of it only
when its order is counted and the ledger row applied. Until then three things keep every store
from showing units that are gone:

- **sales in flight**: a destination's target is the root source's recorded level minus the
  units of sales counted but not in that level yet (ledger rows not applied, and rows applied
  after the read that gave the level started), then the buffer. A counted sale therefore
  reaches every other destination at once, before the source is adjusted;
- **held units**: an order known but not counted (unpaid on a paid-only connection) holds its
  lines' units on the destination that sold them, until it counts, is cancelled or voided;
- **unexplained decreases**: a destination level that went below its target with no order to
  explain it (its order webhook still on its way) is not raised again until orders explain it
  or a grace ends; a manual decrease is then set back to the source's level.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from stocksync.domain.levels import destination_level
from stocksync.domain.ports import OrderSnapshot

# Ledger statuses whose change will never reach the source (set aside after a permanent error).
NEVER_APPLIED = frozenset({"failed"})
APPLIED = "applied"
# An order in these states gives its units back (or never takes them): nothing to hold.
ENDED_STATUSES = frozenset({"voided", "expired"})


@dataclass(frozen=True)
class LedgerEntry:
    """A ledger row of a root source item, as far as its effect on the level matters."""

    delta: int
    status: str
    applied_at: datetime | None


def units_in_flight(entries: Iterable[LedgerEntry], read_at: datetime | None) -> int:
    """Units sold that the source's recorded level does not show yet.

    A row not applied yet is in flight. A row applied at or after ``read_at`` (when the read
    behind the recorded level started) may not be in the level: the read may have been served
    before the adjustment, and a late report is no proof either, so it stays in flight until
    a read started after it (applying a row always asks for one). With no read recorded
    (levels taken before this was tracked) applied rows are taken as shown. Rows giving units
    back (restocks, edits removing units) count only once the source shows them: showing
    units early is what this prevents."""
    total = 0
    for entry in entries:
        if entry.delta >= 0 or entry.status in NEVER_APPLIED:
            continue
        if entry.status == APPLIED and (
            read_at is None or entry.applied_at is None or entry.applied_at < read_at
        ):
            continue
        total += -entry.delta
    return total


def sale_target(source_level: int, in_flight: int, held: int, safety_buffer: int) -> int:
    """The level a destination should show: the source's level less what is sold but not in it
    yet and what this destination holds for orders not counted, then the buffer (B20)."""
    return destination_level(source_level - in_flight - held, safety_buffer)


@dataclass(frozen=True)
class Shortfall:
    """Units a destination went below its target that no known order explains, and since when."""

    units: int = 0
    since: datetime | None = None


def observed(
    shortfall: Shortfall,
    *,
    target: int,
    previous: int | None,
    level: int,
    now: datetime,
) -> Shortfall:
    """A level seen at the destination that is not our own write coming back.

    A decrease from ``previous`` (what we knew there) adds to the shortfall; the shortfall is
    never more than how far the level is below the target now, so a decrease that an order
    already known explains (its units already out of the target) adds nothing, and units
    given back (a restock) reduce it. Without a previous level (a variant never seen there,
    just created at import) no decrease is seen."""
    below = max(0, target - level)
    decrease = 0 if previous is None else max(0, previous - level)
    return _since(shortfall, min(below, shortfall.units + decrease), now)


def _since(shortfall: Shortfall, units: int, now: datetime) -> Shortfall:
    if units <= 0:
        return Shortfall()
    return Shortfall(units, shortfall.since or now)


@dataclass(frozen=True)
class Shown:
    level: int  # what to show at the destination now
    shortfall: Shortfall  # the shortfall after this decision
    look_again: datetime | None  # when the grace of a shortfall ends, if one is held


def to_show(target: int, shortfall: Shortfall, now: datetime, grace: timedelta) -> Shown:
    """Hold an unexplained decrease for ``grace``; past it, it was a manual change: set back."""
    if shortfall.units <= 0:
        return Shown(target, Shortfall(), None)
    since = shortfall.since or now
    if now >= since + grace:
        return Shown(target, Shortfall(), None)
    return Shown(max(0, target - shortfall.units), Shortfall(shortfall.units, since), since + grace)


@dataclass(frozen=True)
class LineUnits:
    held: int  # units held on the destination: the order is known but not counted
    taken: int  # units the destination took off for the line (its ordered quantity)


def order_units(
    snapshot: OrderSnapshot, counted: bool, linked_lines: Iterable[str]
) -> dict[str, LineUnits]:
    """Per linked line: what an order's snapshot takes off its destination, and what of it is
    held there. A counted order's units are in the ledger instead; a cancelled, voided or
    expired one holds nothing. Units a refund restocked are back at the destination."""
    linked = set(linked_lines)
    ended = snapshot.cancelled or snapshot.financial_status.strip().lower() in ENDED_STATUSES
    restocked: dict[str, int] = defaultdict(int)
    for refund in snapshot.refunds:
        for rl in refund.lines:
            if rl.restock and rl.quantity > 0:
                restocked[rl.line_id] += rl.quantity
    result: dict[str, LineUnits] = {}
    for line in snapshot.lines:
        if line.id not in linked or line.quantity < 0:
            continue
        taken = max(0, line.quantity - restocked[line.id])
        result[line.id] = LineUnits(held=0 if counted or ended else taken, taken=taken)
    return result
