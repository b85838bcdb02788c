"""What a level report means, and which level stands once our own write or read is done
(B15, B18): the inventory decisions taken on every level webhook and after every write,
as pure functions over the platform's times (whole epoch seconds, as Shopify's
``updated_at`` gives them).

A report is *ours* (an echo) when it shows the level we last wrote or are writing there;
otherwise it is ordered by its time against the last report taken: newer, stale, or of the
same second (which cannot be ordered: equal levels say nothing new, different ones need a
read). A report without a time, without a level or with an implausible one is never taken
as a level: the level is read instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from stocksync.domain import sales
from stocksync.domain.levels import plausible_quantity


class ReportMeaning(Enum):
    ECHO = "echo"  # our own write coming back
    NEWER = "newer"  # a change after everything known: the store's level now
    STALE = "stale"  # older than what is known (webhooks are not ordered)
    SAME_SECOND = "same_second"  # of the last report's second, agreeing with it
    DISAGREES = "disagrees"  # of the last report's second, with another level: read it
    UNTRUSTED = "untrusted"  # no time, no level or implausible: read it


def is_echo(available: int | None, last_written: int | None, writing: int | None) -> bool:
    """Our own write coming back: the level we last wrote, or are writing (recorded before
    the call, as its echo may arrive before the write's outcome is)."""
    return available is not None and available in (last_written, writing)


def trusted(available: int | None, changed_at: int | None) -> bool:
    """A report that can be taken as a level: it has one, plausible, and a time to order it."""
    return available is not None and changed_at is not None and plausible_quantity(available)


def destination_report(
    available: int | None,
    changed_at: int | None,
    *,
    last_written: int | None,
    writing: int | None,
    reported_at: int | None,
    last_read: int | None,
) -> ReportMeaning:
    """What a destination's level report means, against what is recorded there."""
    if is_echo(available, last_written, writing):
        return ReportMeaning.ECHO
    if not trusted(available, changed_at):
        return ReportMeaning.UNTRUSTED
    assert changed_at is not None  # trusted
    if reported_at is None or changed_at > reported_at:
        return ReportMeaning.NEWER
    if changed_at == reported_at:
        return ReportMeaning.SAME_SECOND if available == last_read else ReportMeaning.DISAGREES
    return ReportMeaning.STALE


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


# --- the plan of a destination flush ----------------------------------------------------------


@dataclass(frozen=True)
class FlushItem:
    """A pending destination variant, as a flush finds it."""

    item_id: str
    target: int  # the source's level less sales in flight and held units, after the buffer
    shortfall: sales.Shortfall  # units it went below its target that no order explains yet
    known: int | None  # what we last read or wrote there, or a report said
    unconfirmed: bool  # ``known`` came from a report only
    last_written: int | None
    force_read: bool


def to_read(items: Iterable[FlushItem]) -> list[str]:
    """What a flush reads first: levels asked to be read, and those never known."""
    return sorted({i.item_id for i in items if i.force_read or i.known is None})


def decrease_base(item: FlushItem) -> int | None:
    """The level a decrease found by a read is counted from: what we knew there, or, when that
    came from a report only (perhaps older than our last write), the lower of it and what we
    last wrote. A late report must not make our own write pass for a sale."""
    if item.unconfirmed and item.known is not None and item.last_written is not None:
        return min(item.known, item.last_written)
    return item.known


@dataclass
class FlushPlan:
    """What a flush writes, against which compare values, and what it holds back. Mutable:
    a stale compare met during the write updates it (:meth:`after_stale_compare`)."""

    now: datetime
    grace: timedelta
    raw: dict[str, int]  # each item's target before held decreases
    shortfall: dict[str, sales.Shortfall]
    known: dict[str, int | None]  # the compare value of each write
    targets: dict[str, int]  # what each item is to show now
    holding: dict[str, datetime]  # items held back by a decrease, until when
    changed: dict[str, int]  # the writes to make
    found: dict[str, int | None]  # read levels that differed from what was known (drift)
    reported_only: dict[str, int]  # last written level of items whose compare is a report

    @property
    def drift(self) -> dict[str, tuple[int | None, int]]:
        """Levels found different from what was known and set back: (found, set)."""
        return {i: (f, self.changed[i]) for i, f in self.found.items() if i in self.changed}

    def after_stale_compare(self, item: str, before: int | None, level: int | None) -> int:
        """An item's target again after a stale compare found ``level`` there: what changed it
        may have been a sale, whose units must not be shown again. A decrease is counted from
        the lower of the compare value and, when that came from a report only, the level we
        last wrote."""
        written = self.reported_only.pop(item, None)
        if before is not None and written is not None:
            before = min(before, written)
        _observe(self.shortfall, item, self.raw[item], before, level, self.now)
        shown = sales.to_show(self.raw[item], self.shortfall[item], self.now, self.grace)
        self.shortfall[item] = shown.shortfall
        if shown.look_again is not None:
            self.holding[item] = shown.look_again
        return shown.level


def plan_flush(
    items: Sequence[FlushItem],
    read: Mapping[str, int | None],
    now: datetime,
    grace: timedelta,
) -> FlushPlan:
    """The writes of a flush, once the levels of :func:`to_read` are read (``read``).

    A level read that went down may be a sale whose order is not known yet: its decrease is
    held for the sale grace, not raised (B24). A level known from a report only is written
    over even when it equals the target (a wrong report costs a failed compare and a read,
    never a skipped write), unless a decrease holds it back."""
    by_item = {i.item_id: i for i in items}
    shortfall = {i.item_id: i.shortfall for i in items}
    known: dict[str, int | None] = {i.item_id: i.known for i in items}
    found: dict[str, int | None] = {}
    for item_id, level in read.items():
        item = by_item[item_id]
        ours = item.last_written if item.unconfirmed else None
        if item.known is not None and level not in (item.known, ours):
            found[item_id] = level
        _observe(shortfall, item_id, item.target, decrease_base(item), level, now)
        known[item_id] = level
    holding: dict[str, datetime] = {}
    targets: dict[str, int] = {}
    for item_id in sorted(by_item):
        shown = sales.to_show(by_item[item_id].target, shortfall[item_id], now, grace)
        targets[item_id], shortfall[item_id] = shown.level, shown.shortfall
        if shown.look_again is not None:
            holding[item_id] = shown.look_again
    unconfirmed = {
        i.item_id
        for i in items
        if i.unconfirmed and i.item_id not in read and i.item_id not in holding
    }
    return FlushPlan(
        now=now,
        grace=grace,
        raw={i.item_id: i.target for i in items},
        shortfall=shortfall,
        known=known,
        targets=targets,
        holding=holding,
        changed={i: t for i, t in targets.items() if known.get(i) != t or i in unconfirmed},
        found=found,
        reported_only={
            i.item_id: i.last_written
            for i in items
            if i.item_id in unconfirmed and i.last_written is not None
        },
    )


def _observe(
    shortfall: dict[str, sales.Shortfall],
    item: str,
    target: int,
    before: int | None,
    level: int | None,
    now: datetime,
) -> None:
    if level is not None:
        shortfall[item] = sales.observed(
            shortfall[item], target=target, previous=before, level=level, now=now
        )
