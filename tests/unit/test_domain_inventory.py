"""What a level report means, and which level stands after our own write or read
(domain/inventory.py): no database."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stocksync.domain.inventory import (
    ReportMeaning,
    Standing,
    against_reports,
    destination_report,
    is_echo,
    time_after_ours,
    trusted,
)

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
