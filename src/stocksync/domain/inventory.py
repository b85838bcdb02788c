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

from enum import Enum

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
