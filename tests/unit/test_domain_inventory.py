"""What a level report means, and which level stands after our own write or read
(domain/inventory.py): no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stocksync.domain.inventory import (
    FlushItem,
    ReportMeaning,
    Standing,
    against_reports,
    decrease_base,
    destination_report,
    is_echo,
    plan_flush,
    time_after_ours,
    to_read,
    trusted,
)
from stocksync.domain.sales import Shortfall

DETERMINISTIC = settings(derandomize=True, max_examples=300, deadline=None)


@pytest.mark.parametrize(
    ("available", "changed_at", "recorded", "meaning"),
    [
        # recorded: (last_written, writing, reported_at, last_read)
        (7, 100, (7, None, 90, 7), ReportMeaning.ECHO),  # what we last wrote
        (5, 100, (7, 5, 90, 7), ReportMeaning.ECHO),  # what we are writing
        (5, None, (7, None, 90, 7), ReportMeaning.UNTRUSTED),  # no time to order it by
        (None, 100, (7, None, 90, 7), ReportMeaning.UNTRUSTED),  # a disconnect
        (2_000_000_000, 100, (7, None, 90, 7), ReportMeaning.UNTRUSTED),  # implausible
        (5, 100, (7, None, None, 7), ReportMeaning.NEWER),  # nothing reported yet
        (5, 100, (7, None, 90, 7), ReportMeaning.NEWER),
        (5, 80, (7, None, 90, 7), ReportMeaning.STALE),
        (5, 90, (7, None, 90, 5), ReportMeaning.SAME_SECOND),
        (4, 90, (7, None, 90, 5), ReportMeaning.DISAGREES),
    ],
)
def test_what_a_destination_report_means(
    available: int | None,
    changed_at: int | None,
    recorded: tuple[int | None, int | None, int | None, int | None],
    meaning: ReportMeaning,
) -> None:
    last_written, writing, reported_at, last_read = recorded
    assert (
        destination_report(
            available,
            changed_at,
            last_written=last_written,
            writing=writing,
            reported_at=reported_at,
            last_read=last_read,
        )
        is meaning
    )


@DETERMINISTIC
@given(
    available=st.integers(-5, 5),
    changed_at=st.integers(0, 5),
    last_written=st.none() | st.integers(-5, 5),
    writing=st.none() | st.integers(-5, 5),
    reported_at=st.none() | st.integers(0, 5),
    last_read=st.none() | st.integers(-5, 5),
)
def test_a_report_is_taken_only_when_newer_and_never_when_ours(
    available: int,
    changed_at: int,
    last_written: int | None,
    writing: int | None,
    reported_at: int | None,
    last_read: int | None,
) -> None:
    meaning = destination_report(
        available,
        changed_at,
        last_written=last_written,
        writing=writing,
        reported_at=reported_at,
        last_read=last_read,
    )
    if is_echo(available, last_written, writing):
        assert meaning is ReportMeaning.ECHO
    elif reported_at is not None and changed_at < reported_at:
        assert meaning is ReportMeaning.STALE
    elif meaning is ReportMeaning.NEWER:
        assert reported_at is None or changed_at > reported_at


def test_trusted_reports() -> None:
    assert trusted(3, 100)
    assert not trusted(3, None)
    assert not trusted(None, 100)
    assert not trusted(-2_000_000_000, 100)


@pytest.mark.parametrize(
    ("before", "now", "written_at", "standing"),
    [
        (None, None, None, Standing.OURS),  # nothing reported, before or during
        (100, 100, None, Standing.OURS),  # no report while the write was in flight
        (100, 100, 105, Standing.OURS),
        (100, 103, 105, Standing.OURS),  # a report from before the write, delivered late
        (100, 107, 105, Standing.REPORTED),  # a change after the write
        (100, 105, 105, Standing.UNKNOWN),  # the write's own second
        (None, 105, 105, Standing.UNKNOWN),
        (100, 103, None, Standing.UNKNOWN),  # a platform that gives no time of its writes
        (None, 103, None, Standing.UNKNOWN),
    ],
)
def test_a_write_is_ordered_against_reports_by_platform_time(
    before: int | None, now: int | None, written_at: int | None, standing: Standing
) -> None:
    assert against_reports(before, now, written_at) is standing


@pytest.mark.parametrize(
    ("now", "written_at", "stamp"),
    [(None, None, None), (100, None, 100), (None, 105, 105), (100, 105, 105), (107, 105, 107)],
)
def test_a_level_we_wrote_carries_the_write_s_time(
    now: int | None, written_at: int | None, stamp: int | None
) -> None:
    assert time_after_ours(now, written_at) == stamp


NOW = datetime(2026, 1, 1, tzinfo=UTC)
GRACE = timedelta(seconds=60)
NO_SHORTFALL = Shortfall()


def _item(
    target: int,
    known: int | None,
    *,
    unconfirmed: bool = False,
    last_written: int | None = None,
    force_read: bool = False,
    shortfall: Shortfall = NO_SHORTFALL,
    item_id: str = "A",
) -> FlushItem:
    return FlushItem(item_id, target, shortfall, known, unconfirmed, last_written, force_read)


def test_a_flush_reads_what_it_was_asked_to_and_what_it_never_knew() -> None:
    items = [
        _item(5, 5, item_id="known"),
        _item(5, None, item_id="never"),
        _item(5, 5, force_read=True, item_id="asked"),
    ]
    assert to_read(items) == ["asked", "never"]


def test_a_level_known_to_differ_is_written_against_it() -> None:
    plan = plan_flush([_item(7, 10)], {}, NOW, GRACE)
    assert (plan.changed, plan.known, plan.holding) == ({"A": 7}, {"A": 10}, {})


def test_a_level_already_at_its_target_is_not_written() -> None:
    assert plan_flush([_item(7, 7)], {}, NOW, GRACE).changed == {}


def test_a_reported_level_is_written_over_even_at_its_target() -> None:
    plan = plan_flush([_item(7, 7, unconfirmed=True, last_written=9)], {}, NOW, GRACE)
    assert plan.changed == {"A": 7}
    # The compare is the report; what we last wrote is kept to judge a stale compare.
    assert plan.reported_only == {"A": 9}


def test_a_decrease_found_by_a_read_is_held_for_the_grace() -> None:
    """A sale whose order is not known yet: not raised again within the grace (B24)."""
    plan = plan_flush([_item(10, 10, force_read=True)], {"A": 7}, NOW, GRACE)
    assert plan.targets == {"A": 7}
    assert plan.changed == {}
    assert plan.holding == {"A": NOW + GRACE}
    assert plan.shortfall["A"] == Shortfall(3, NOW)
    # Past the grace it was a manual change: set back to the target.
    later = plan_flush([_item(10, 7, shortfall=plan.shortfall["A"])], {}, NOW + GRACE, GRACE)
    assert (later.changed, later.holding) == ({"A": 10}, {})


def test_our_own_write_found_by_a_read_is_not_a_decrease() -> None:
    """The report said 10, we had written 7 since: reading 7 is our write, not a sale."""
    item = _item(7, 10, unconfirmed=True, last_written=7, force_read=True)
    assert decrease_base(item) == 7
    plan = plan_flush([item], {"A": 7}, NOW, GRACE)
    assert (plan.changed, plan.holding, plan.found) == ({}, {}, {})


def test_a_read_that_differs_is_drift_repaired() -> None:
    plan = plan_flush([_item(5, 5, force_read=True)], {"A": 9}, NOW, GRACE)
    assert plan.changed == {"A": 5}
    assert plan.drift == {"A": (9, 5)}


def test_a_stale_compare_that_met_a_sale_keeps_the_sale_off() -> None:
    plan = plan_flush([_item(8, 10)], {}, NOW, GRACE)
    assert plan.changed == {"A": 8}
    # The write's compare (10) was stale: the destination shows 6, a sale of 4.
    assert plan.after_stale_compare("A", 10, 6) == 6  # not raised: held at what it shows
    assert plan.holding == {"A": NOW + GRACE}


@DETERMINISTIC
@given(
    target=st.integers(0, 20),
    known=st.integers(0, 20),
    read=st.integers(0, 20),
)
def test_a_flush_never_shows_again_the_units_of_a_decrease_it_just_saw(
    target: int, known: int, read: int
) -> None:
    """Units that went off the destination are held off its target (a restock at the source
    may still raise the level, by the units it brought)."""
    plan = plan_flush([_item(target, known, force_read=True)], {"A": read}, NOW, GRACE)
    decrease = max(0, known - read)
    assert plan.targets["A"] <= max(read, target - decrease)
    if decrease == 0 or target <= read:
        assert plan.targets["A"] == target
