"""What a destination shows while sales are on their way to the source (domain/sales.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from stocksync.domain.ports import OrderLine, OrderSnapshot
from stocksync.domain.sales import (
    LedgerEntry,
    LineUnits,
    Shortfall,
    observed,
    order_units,
    sale_target,
    to_show,
    units_in_flight,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
GRACE = timedelta(seconds=60)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# --- sales in flight ---------------------------------------------------------------------------


def test_pending_sales_are_in_flight_and_restocks_are_not() -> None:
    entries = [
        LedgerEntry(-2, "pending", None),
        LedgerEntry(-1, "pending", None),
        LedgerEntry(+3, "pending", None),  # a restock shows only once the source shows it
    ]
    assert units_in_flight(entries, _at(0)) == 3


def test_an_applied_sale_is_in_flight_until_a_read_started_after_it() -> None:
    sale = [LedgerEntry(-2, "applied", _at(10))]
    assert units_in_flight(sale, _at(5)) == 2  # the level was read before the adjustment
    assert units_in_flight(sale, _at(10)) == 2  # a read of the same instant proves nothing
    assert units_in_flight(sale, _at(11)) == 0


def test_a_level_never_read_shows_every_applied_sale() -> None:
    assert units_in_flight([LedgerEntry(-2, "applied", _at(10))], None) == 0


def test_a_sale_set_aside_never_reaches_the_source_so_is_not_in_flight() -> None:
    assert units_in_flight([LedgerEntry(-2, "failed", None)], _at(0)) == 0


def test_the_target_takes_sales_and_holds_off_before_the_buffer() -> None:
    assert sale_target(10, in_flight=3, held=2, safety_buffer=1) == 4
    assert sale_target(3, in_flight=3, held=2, safety_buffer=0) == 0  # never negative


# --- unexplained decreases ---------------------------------------------------------------------


def test_a_decrease_no_order_explains_is_held_for_the_grace() -> None:
    s = observed(Shortfall(), target=10, previous=10, level=7, now=_at(0))
    assert s == Shortfall(3, _at(0))
    shown = to_show(10, s, _at(30), GRACE)
    assert (shown.level, shown.look_again) == (7, _at(60))
    after = to_show(10, s, _at(60), GRACE)  # past the grace: a manual change, set back
    assert (after.level, after.shortfall, after.look_again) == (10, Shortfall(), None)


def test_a_decrease_an_order_already_explains_adds_nothing() -> None:
    # The order came first: the target is already 7 when the destination reports 7.
    assert observed(Shortfall(), target=7, previous=10, level=7, now=_at(0)) == Shortfall()


def test_a_decrease_is_counted_from_the_previous_level_not_from_a_target_that_rose() -> None:
    # The source went up to 10 and we have not written it yet; the destination sold 1 of 5.
    assert observed(Shortfall(), target=10, previous=5, level=4, now=_at(0)) == Shortfall(1, _at(0))


def test_a_restock_gives_back_what_was_held_and_keeps_its_start() -> None:
    s = Shortfall(3, _at(0))
    assert observed(s, target=10, previous=7, level=9, now=_at(5)) == Shortfall(1, _at(0))
    assert observed(s, target=10, previous=7, level=10, now=_at(5)) == Shortfall()


def test_a_level_never_seen_before_is_no_decrease() -> None:
    assert observed(Shortfall(), target=10, previous=None, level=0, now=_at(0)) == Shortfall()


def test_another_stores_sale_lowers_what_is_shown_below_the_held_decrease() -> None:
    # d2 sold 2 (its order unknown yet); d1's sale of 5 lowers the target from 10 to 5:
    # d2 shows 3, not 5 (which would show its own 2 units again).
    s = observed(Shortfall(), target=10, previous=10, level=8, now=_at(0))
    assert to_show(5, s, _at(1), GRACE).level == 3


# --- orders known but not counted ---------------------------------------------------------------


def _order(status: str, *, cancelled: bool = False) -> OrderSnapshot:
    lines = (OrderLine("l1", "v1", "A", 2), OrderLine("l2", "v2", "B", 1))
    return OrderSnapshot("o1", status, cancelled, "2026-01-01T00:00:00Z", lines)


def test_an_order_not_counted_holds_its_linked_lines() -> None:
    assert order_units(_order("pending"), counted=False, linked_lines=["l1"]) == {
        "l1": LineUnits(held=2, taken=2)
    }


def test_a_counted_or_ended_order_holds_nothing() -> None:
    assert order_units(_order("paid"), counted=True, linked_lines=["l1"]) == {
        "l1": LineUnits(held=0, taken=2)
    }
    for ended in (_order("voided"), _order("expired"), _order("pending", cancelled=True)):
        assert order_units(ended, counted=False, linked_lines=["l1"])["l1"].held == 0
