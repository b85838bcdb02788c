"""Which destination orders count against the source, and by how much (B15, B16, B17)."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stocksync.domain.connection import ConnectionSettings
from stocksync.domain.levels import MAX_QUANTITY
from stocksync.domain.orders import (
    KNOWN_STATUSES,
    MONEY_TAKEN,
    LineState,
    OrderPlan,
    OrderState,
    SeenAt,
    fingerprint,
    is_counted_status,
    order_counts_for_link,
    order_created,
    plan_order,
    refund_natural_key,
    restock_unconfirmed,
    restock_units,
    shows_paid_in_full,
    tells_nothing_new,
    version_text,
)
from stocksync.domain.ports import OrderLine, OrderSnapshot, RefundLine

DETERMINISTIC = settings(derandomize=True, max_examples=200, deadline=None)

PAID_ONLY = ConnectionSettings()
EVERYTHING = ConnectionSettings(
    count_authorized=True, count_partially_paid=True, count_pending=True
)
V1 = "2025-01-01T00:00:00.000001Z"
V2 = "2025-01-01T00:00:00.000002Z"
V3 = "2025-01-01T00:00:00.000003Z"


def _settings(authorized: bool, partially_paid: bool, pending: bool) -> ConnectionSettings:
    return ConnectionSettings(
        count_authorized=authorized, count_partially_paid=partially_paid, count_pending=pending
    )


def _expected_counted(status: str, authorized: bool, partially_paid: bool, pending: bool) -> bool:
    """The rule of B15, written out per status, for an order never shown paid in full: money
    taken says it was paid at least in part, never that it was paid in full."""
    return {
        "paid": partially_paid,
        "partially_refunded": partially_paid,
        "refunded": partially_paid,
        "authorized": authorized,
        "partially_paid": partially_paid,
        "pending": pending,
        # cancelled before we saw it: it went through pending or authorized first
        "voided": authorized and pending,
        # reached only from authorized
        "expired": authorized,
    }[status]


# --- is_counted_status -------------------------------------------------------------------------


@pytest.mark.parametrize("status", sorted(KNOWN_STATUSES))
@pytest.mark.parametrize(
    ("authorized", "partially_paid", "pending"),
    list(itertools.product([False, True], repeat=3)),
)
def test_is_counted_status_for_every_status_and_setting(
    status: str, authorized: bool, partially_paid: bool, pending: bool
) -> None:
    settings_ = _settings(authorized, partially_paid, pending)
    expected = _expected_counted(status, authorized, partially_paid, pending)
    assert is_counted_status(status, settings_) is expected


@pytest.mark.parametrize("status", [*sorted(KNOWN_STATUSES), "unknown"])
def test_an_order_once_paid_in_full_always_counts(status: str) -> None:
    assert is_counted_status(status, PAID_ONLY, paid_in_full=True)


def test_money_taken_without_payment_in_full_is_not_paid() -> None:
    """A deposit order partially refunded was never paid (B15)."""
    assert {"paid", "partially_refunded", "refunded"} == MONEY_TAKEN
    for status in MONEY_TAKEN:
        assert not is_counted_status(status, PAID_ONLY)
        assert is_counted_status(status, ConnectionSettings(count_partially_paid=True))


@pytest.mark.parametrize(
    ("status", "paid_in_full", "expected"),
    [
        ("paid", None, True),  # the platform's own word for "paid in full now"
        (" PAID", None, True),
        ("partially_refunded", None, False),  # a status word alone never says it
        ("refunded", None, False),
        ("partially_paid", None, False),
        ("pending", None, False),
        ("partially_refunded", True, True),  # the platform's evidence decides
        ("partially_paid", True, True),
        ("paid", False, False),
        ("refunded", False, False),
    ],
)
def test_evidence_of_payment_in_full(
    status: str, paid_in_full: bool | None, expected: bool
) -> None:
    snapshot = OrderSnapshot("O1", status, False, V1, (), paid_in_full=paid_in_full)
    assert shows_paid_in_full(snapshot) is expected


def test_status_is_read_case_and_space_insensitively() -> None:
    assert is_counted_status("  PARTIALLY_paid ", ConnectionSettings(count_partially_paid=True))
    assert is_counted_status("Pending", ConnectionSettings(count_pending=True))
    assert not is_counted_status("Pending", PAID_ONLY)


@pytest.mark.parametrize("status", ["", "unknown", "paid_later", "refunding"])
def test_unknown_status_never_counts(status: str) -> None:
    assert not is_counted_status(status, EVERYTHING)


# --- plan_order ------------------------------------------------------------------------------


def _order(
    status: str = "paid",
    version: str = V1,
    lines: tuple[tuple[str, int], ...] = (("L1", 2),),
    paid_in_full: bool | None = None,
) -> OrderSnapshot:
    return OrderSnapshot(
        id="O1",
        financial_status=status,
        cancelled=False,
        version=version,
        lines=tuple(
            OrderLine(id=i, variant_id=f"var-{i}", sku=f"SKU-{i}", quantity=q) for i, q in lines
        ),
        paid_in_full=paid_in_full,
    )


ALL_LINES = frozenset({"L1", "L2", "L3"})


def test_first_count_takes_every_linked_line() -> None:
    plan = plan_order(_order(lines=(("L1", 2), ("L2", 1))), None, PAID_ONLY, ALL_LINES)
    assert not plan.stale
    assert plan.counted
    assert [(c.line_id, c.kind, c.natural_key, c.delta, c.counted_after) for c in plan.changes] == [
        ("L1", "order_line", "O1:L1", -2, 2),
        ("L2", "order_line", "O1:L2", -1, 1),
    ]


def test_stale_snapshot_is_ignored() -> None:
    state = OrderState(counted=True, version=V2, lines={"L1": LineState(5, 0)})
    plan = plan_order(_order(version=V1, lines=(("L1", 2),)), state, PAID_ONLY, ALL_LINES)
    assert plan.stale
    assert plan.counted
    assert plan.changes == ()


def test_duplicate_snapshot_changes_nothing() -> None:
    snapshot = _order(version=V1)
    state = OrderState(
        counted=True, version=V1, lines={"L1": LineState(2, 0)}, fingerprint=fingerprint(snapshot)
    )
    plan = plan_order(snapshot, state, PAID_ONLY, ALL_LINES)
    assert not plan.stale
    assert plan.counted
    assert plan.changes == ()


# --- snapshots of one version (Shopify's whole seconds) ----------------------------------------


def test_same_version_other_quantities_change_no_count_and_ask_for_a_read() -> None:
    """An edit 2 -> 3 applied; the orders/paid of the 2-unit state, same second, comes late."""
    edited = _order(status="partially_paid", version=V1, lines=(("L1", 3),))
    state = OrderState(
        counted=True,
        version=V1,
        lines={"L1": LineState(3, 0, 1)},
        paid_in_full=True,
        fingerprint=fingerprint(edited),
    )
    late = _order(status="paid", version=V1, lines=(("L1", 2),), paid_in_full=True)
    plan = plan_order(late, state, PAID_ONLY, ALL_LINES)
    assert plan == OrderPlan(
        stale=True, counted=True, changes=(), paid_in_full=True, needs_read=True
    )
    # the read is the order now: authoritative for its version
    read = plan_order(edited, state, PAID_ONLY, ALL_LINES, from_read=True)
    assert read.changes == ()
    assert not read.stale
    read = plan_order(late, state, PAID_ONLY, ALL_LINES, from_read=True)
    assert [(c.delta, c.natural_key) for c in read.changes] == [(1, "O1:L1:edit:2")]


def test_same_version_uncounted_order_shown_paid_counts_only_by_a_read() -> None:
    pending = _order(status="pending", version=V1, lines=(("L1", 2),))
    state = OrderState(counted=False, version=V1, lines={}, fingerprint=fingerprint(pending))
    paid = _order(status="paid", version=V1, lines=(("L1", 3),), paid_in_full=True)
    plan = plan_order(paid, state, PAID_ONLY, ALL_LINES)
    assert plan.stale
    assert plan.needs_read
    assert plan.paid_in_full
    assert plan.changes == ()


def test_edit_keys_follow_the_line_sequence_not_version_and_quantity() -> None:
    """2 -> 3 -> 2 within one second: the second 2 is a new change, not a duplicate."""
    state: OrderState | None = None
    keys = []
    for quantity in (3, 2, 3, 2):
        snapshot = _order(version=V1, lines=(("L1", quantity),), paid_in_full=True)
        plan = plan_order(snapshot, state, PAID_ONLY, ALL_LINES, from_read=True)
        lines = dict(state.lines) if state else {}
        for c in plan.changes:
            keys.append(c.natural_key)
            lines[c.line_id] = LineState(c.counted_after, 0, c.changes_after)
        state = OrderState(True, V1, lines, True, fingerprint(snapshot))
    assert keys == ["O1:L1", "O1:L1:edit:1", "O1:L1:edit:2", "O1:L1:edit:3"]


def test_edit_up_takes_the_difference() -> None:
    state = OrderState(counted=True, version=V1, lines={"L1": LineState(2, 0)})
    plan = plan_order(_order(version=V2, lines=(("L1", 5),)), state, PAID_ONLY, ALL_LINES)
    (change,) = plan.changes
    assert (change.kind, change.delta, change.counted_after) == ("order_edit", -3, 5)
    assert (change.natural_key, change.changes_after) == ("O1:L1:edit:1", 1)


def test_edit_down_gives_the_difference_back() -> None:
    state = OrderState(counted=True, version=V1, lines={"L1": LineState(5, 0)})
    plan = plan_order(_order(version=V2, lines=(("L1", 1),)), state, PAID_ONLY, ALL_LINES)
    (change,) = plan.changes
    assert (change.kind, change.delta, change.counted_after) == ("order_edit", 4, 1)


def test_edit_of_a_counted_order_counts_even_if_its_status_no_longer_would() -> None:
    # adding units to a paid order makes it partially paid (a balance is owed)
    state = OrderState(counted=True, version=V1, lines={"L1": LineState(2, 0)})
    snapshot = _order(status="partially_paid", version=V2, lines=(("L1", 3),))
    plan = plan_order(snapshot, state, PAID_ONLY, ALL_LINES)
    assert plan.counted
    assert [c.delta for c in plan.changes] == [-1]


def test_lines_not_linked_are_ignored() -> None:
    plan = plan_order(_order(lines=(("L1", 2), ("L9", 4))), None, PAID_ONLY, frozenset({"L1"}))
    assert [c.line_id for c in plan.changes] == ["L1"]


def test_new_line_added_by_an_edit_is_a_first_count() -> None:
    state = OrderState(counted=True, version=V1, lines={"L1": LineState(2, 0)})
    snapshot = _order(version=V2, lines=(("L1", 2), ("L2", 3)))
    plan = plan_order(snapshot, state, PAID_ONLY, ALL_LINES)
    (change,) = plan.changes
    assert (change.line_id, change.kind, change.natural_key, change.delta) == (
        "L2",
        "order_line",
        "O1:L2",
        -3,
    )


def test_uncounted_pending_order_counts_once_paid() -> None:
    pending = plan_order(_order(status="pending", version=V1), None, PAID_ONLY, ALL_LINES)
    assert pending == OrderPlan(stale=False, counted=False, changes=(), paid_in_full=False)
    state = OrderState(counted=False, version=V1, lines={})
    paid = plan_order(_order(status="paid", version=V2), state, PAID_ONLY, ALL_LINES)
    assert paid.counted
    assert [(c.kind, c.delta) for c in paid.changes] == [("order_line", -2)]


def test_pending_order_counts_at_once_when_pending_counts() -> None:
    plan = plan_order(
        _order(status="pending"), None, ConnectionSettings(count_pending=True), ALL_LINES
    )
    assert [(c.kind, c.delta) for c in plan.changes] == [("order_line", -2)]


def test_zero_and_impossible_quantities_are_never_counted() -> None:
    snapshot = _order(lines=(("L1", 0), ("L2", -4), ("L3", MAX_QUANTITY + 1)))
    plan = plan_order(snapshot, None, PAID_ONLY, ALL_LINES)
    assert plan.counted
    assert plan.changes == ()


def test_an_edit_to_an_impossible_quantity_is_not_followed() -> None:
    state = OrderState(counted=True, version=V1, lines={"L1": LineState(2, 0)})
    plan = plan_order(_order(version=V2, lines=(("L1", -1),)), state, PAID_ONLY, ALL_LINES)
    assert plan.changes == ()
    plan = plan_order(
        _order(version=V3, lines=(("L1", MAX_QUANTITY * 2),)), state, PAID_ONLY, ALL_LINES
    )
    assert plan.changes == ()


@DETERMINISTIC
@given(
    quantities=st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=12),
    duplicate_each=st.booleans(),
)
def test_following_every_snapshot_counts_the_last_quantity(
    quantities: list[int], duplicate_each: bool
) -> None:
    """Whatever the sequence of edits (and duplicates), the units taken from the source add
    up to the line's latest quantity once the order is counted."""
    state: OrderState | None = None
    total = 0
    keys: set[str] = set()
    for n, quantity in enumerate(quantities):
        version = f"2025-01-01T00:00:{n:02d}.000000Z"
        for _ in range(2 if duplicate_each else 1):
            plan = plan_order(
                _order(version=version, lines=(("L1", quantity),)), state, PAID_ONLY, ALL_LINES
            )
            lines = dict(state.lines) if state else {}
            for change in plan.changes:
                assert change.natural_key not in keys  # each change is new
                keys.add(change.natural_key)
                total += change.delta
                lines["L1"] = LineState(change.counted_after, 0, change.changes_after)
            state = OrderState(
                counted=plan.counted,
                version=version,
                lines=lines,
                fingerprint=fingerprint(_order(version=version, lines=(("L1", quantity),))),
            )
    assert total == -quantities[-1]


@DETERMINISTIC
@given(
    versions=st.permutations(range(6)),
    quantities=st.lists(st.integers(min_value=1, max_value=9), min_size=6, max_size=6),
)
def test_late_snapshots_never_undo_a_newer_one(versions: list[int], quantities: list[int]) -> None:
    """Snapshots delivered in any order: applying only the non-stale ones ends at the newest."""
    state: OrderState | None = None
    total = 0
    for v in versions:
        version = f"2025-01-01T00:00:0{v}.000000Z"
        plan = plan_order(
            _order(version=version, lines=(("L1", quantities[v]),)), state, PAID_ONLY, ALL_LINES
        )
        if plan.stale:
            continue
        line = state.lines["L1"] if state else LineState(0, 0)
        for change in plan.changes:
            total += change.delta
            line = LineState(change.counted_after, 0, change.changes_after)
        snapshot = _order(version=version, lines=(("L1", quantities[v]),))
        state = OrderState(True, version, {"L1": line}, fingerprint=fingerprint(snapshot))
    newest = max(versions)
    assert state is not None
    assert state.version == f"2025-01-01T00:00:0{newest}.000000Z"
    # once the newest snapshot is applied every older one is stale: the source lost exactly
    # the newest quantity
    assert total == -quantities[newest]


# --- restock_units ---------------------------------------------------------------------------


def _refund_line(quantity: int, restock: bool = True) -> RefundLine:
    return RefundLine(id="R1", line_id="L1", quantity=quantity, restock=restock)


def test_restock_gives_back_the_refunded_units() -> None:
    assert restock_units(LineState(counted=3, restocked=0), _refund_line(2)) == 2


def test_restock_is_capped_at_counted_minus_restocked() -> None:
    assert restock_units(LineState(counted=3, restocked=2), _refund_line(3)) == 1
    assert restock_units(LineState(counted=3, restocked=3), _refund_line(1)) == 0
    # an edit brought the line below what was already given back
    assert restock_units(LineState(counted=1, restocked=2), _refund_line(1)) == 0


def test_restock_of_a_never_counted_line_gives_nothing() -> None:
    assert restock_units(None, _refund_line(5)) == 0


def test_refund_without_restock_gives_nothing() -> None:
    assert restock_units(LineState(counted=3, restocked=0), _refund_line(3, restock=False)) == 0


@pytest.mark.parametrize("quantity", [0, -1, -MAX_QUANTITY])
def test_refund_of_no_or_negative_units_gives_nothing(quantity: int) -> None:
    assert restock_units(LineState(counted=3, restocked=0), _refund_line(quantity)) == 0


@DETERMINISTIC
@given(
    counted=st.integers(min_value=0, max_value=20),
    refunds=st.lists(st.integers(min_value=-3, max_value=10), max_size=8),
)
def test_a_line_never_gives_back_more_than_was_counted(counted: int, refunds: list[int]) -> None:
    restocked = 0
    for quantity in refunds:
        units = restock_units(LineState(counted, restocked), _refund_line(quantity))
        assert 0 <= units <= max(quantity, 0)
        restocked += units
    assert 0 <= restocked <= counted


def test_refund_natural_key_is_per_refund_line() -> None:
    line = RefundLine(id="RL7", line_id="L1", quantity=1, restock=True)
    assert refund_natural_key("O1", "R3", line) == "O1:R3:RL7"


# --- orders placed before a link or before install (B15, B16) ---------------------------------

_LINKED = datetime(2025, 6, 1, 12, 0, 0, 500_000, tzinfo=UTC)
_INSTALLED = datetime(2025, 5, 1, tzinfo=UTC)


def test_an_order_placed_before_its_link_never_counts() -> None:
    before = _LINKED - timedelta(seconds=1)
    assert not order_counts_for_link(before, _LINKED, _INSTALLED)
    assert order_counts_for_link(_LINKED + timedelta(seconds=1), _LINKED, _INSTALLED)
    assert order_counts_for_link(_LINKED, _LINKED, _INSTALLED)  # at the link: counts


def test_an_order_placed_before_the_install_never_counts_whatever_the_link() -> None:
    assert not order_counts_for_link(_INSTALLED - timedelta(days=3), None, _INSTALLED)
    assert not order_counts_for_link(_INSTALLED - timedelta(days=3), _INSTALLED, _INSTALLED)


def test_whole_seconds_decide_because_shopify_gives_an_order_whole_seconds() -> None:
    # placed 12:00:00.9 reads 12:00:00 on Shopify: in the link's second, so it counts
    assert order_counts_for_link(_LINKED.replace(microsecond=0), _LINKED, _INSTALLED)
    assert not order_counts_for_link(
        _LINKED.replace(microsecond=0) - timedelta(microseconds=1), _LINKED, _INSTALLED
    )


def test_naive_times_from_the_database_are_utc() -> None:
    naive_link = _LINKED.replace(tzinfo=None)
    assert not order_counts_for_link(_LINKED - timedelta(seconds=2), naive_link, None)
    assert order_counts_for_link(_LINKED + timedelta(seconds=2), naive_link, None)


def test_an_order_of_unknown_creation_is_taken_as_placed_when_first_seen() -> None:
    seen = datetime(2025, 7, 1, tzinfo=UTC)
    assert order_created(None, seen) == seen
    assert order_created("not a time", seen) == seen
    assert order_created("2025-03-01T08:00:00-05:00", seen) == datetime(2025, 3, 1, 13, tzinfo=UTC)
    assert version_text(order_created("2025-03-01T13:00:00Z", seen)) == (
        "2025-03-01T13:00:00.000000Z"
    )


# --- paid in full at some point (B15) -----------------------------------------------------------


def test_deposit_order_partially_refunded_is_not_counted_on_paid_only() -> None:
    snapshot = _order(status="partially_refunded", paid_in_full=False, lines=(("L1", 3),))
    plan = plan_order(snapshot, None, PAID_ONLY, ALL_LINES)
    assert not plan.counted
    assert plan.changes == ()
    assert not plan.paid_in_full


def test_stale_snapshot_paid_in_full_makes_the_order_count_by_a_read() -> None:
    """The edit (partially paid, 3 units) applied first, then the older orders/paid."""
    state = OrderState(counted=False, version=V2, lines={})
    plan = plan_order(_order(version=V1, paid_in_full=True), state, PAID_ONLY, ALL_LINES)
    assert plan.stale
    assert plan.changes == ()  # its quantities are not the newest
    assert plan.paid_in_full
    assert plan.needs_read
    # the read, at the newest version: counted with its quantities, evidence remembered
    remembered = OrderState(counted=False, version=V2, lines={}, paid_in_full=True)
    read = _order(status="partially_paid", version=V2, lines=(("L1", 3),), paid_in_full=False)
    plan = plan_order(read, remembered, PAID_ONLY, ALL_LINES, from_read=True)
    assert plan.counted
    assert plan.paid_in_full
    assert not plan.needs_read
    assert [(c.kind, c.delta) for c in plan.changes] == [("order_line", -3)]


def test_stale_snapshot_without_new_evidence_needs_no_read() -> None:
    state = OrderState(counted=True, version=V2, lines={"L1": LineState(3, 0)}, paid_in_full=True)
    plan = plan_order(_order(version=V1, paid_in_full=True), state, PAID_ONLY, ALL_LINES)
    assert plan == OrderPlan(stale=True, counted=True, changes=(), paid_in_full=True)
    state = OrderState(counted=False, version=V2, lines={})
    plan = plan_order(_order(status="pending", version=V1), state, PAID_ONLY, ALL_LINES)
    assert not plan.needs_read
    assert not plan.counted


@DETERMINISTIC
@given(
    order=st.permutations(range(4)),
    paid_at=st.integers(min_value=0, max_value=3),
    quantities=st.lists(st.integers(min_value=1, max_value=9), min_size=4, max_size=4),
)
def test_paid_in_full_at_any_point_counts_the_newest_quantities_in_any_order(
    order: list[int], paid_at: int, quantities: list[int]
) -> None:
    """Four snapshots of one order, only one of them showing it paid in full, applied in any
    order; a needed read answers the newest snapshot. The order ends counted, once, with the
    newest quantity."""
    snapshots = [
        _order(
            status="paid" if n == paid_at else "partially_paid",
            version=f"2025-01-01T00:00:0{n}.000000Z",
            lines=(("L1", quantities[n]),),
            paid_in_full=n == paid_at,
        )
        for n in range(4)
    ]
    state: OrderState | None = None
    total = 0

    def apply(snapshot: OrderSnapshot, from_read: bool = False) -> bool:
        nonlocal state, total
        plan = plan_order(snapshot, state, PAID_ONLY, ALL_LINES, from_read=from_read)
        lines = dict(state.lines) if state else {}
        for change in plan.changes:
            total += change.delta
            lines[change.line_id] = LineState(change.counted_after, 0, change.changes_after)
        if plan.stale and state:
            state = OrderState(
                state.counted, state.version, state.lines, plan.paid_in_full, state.fingerprint
            )
        else:
            state = OrderState(
                plan.counted, snapshot.version, lines, plan.paid_in_full, fingerprint(snapshot)
            )
        return plan.needs_read

    for n in order:
        if apply(snapshots[n]):
            # the read: the order as it is now
            assert not apply(snapshots[3], from_read=True)
    assert state is not None
    assert state.counted
    assert state.paid_in_full
    # the newest snapshot is always applied (or read) at some point
    assert total == -quantities[3]


@DETERMINISTIC
@given(
    quantities=st.lists(st.integers(min_value=1, max_value=5), min_size=2, max_size=6),
    arrival=st.randoms(use_true_random=False),
)
def test_same_second_snapshots_in_any_order_end_at_the_read(
    quantities: list[int], arrival: random.Random
) -> None:
    """Every change within one second (one version), webhooks in any order, each tie read:
    no webhook changes a count by arrival order, and the order ends at what a read says."""
    snapshots = [_order(version=V1, lines=(("L1", q),), paid_in_full=True) for q in quantities]
    order = list(range(len(snapshots)))
    arrival.shuffle(order)
    state: OrderState | None = None
    total = 0
    keys: set[str] = set()

    def apply(snapshot: OrderSnapshot, from_read: bool) -> bool:
        nonlocal state, total
        plan = plan_order(snapshot, state, PAID_ONLY, ALL_LINES, from_read=from_read)
        if plan.stale:
            assert plan.changes == ()
            return plan.needs_read
        lines = dict(state.lines) if state else {}
        for change in plan.changes:
            assert change.natural_key not in keys
            keys.add(change.natural_key)
            total += change.delta
            lines[change.line_id] = LineState(change.counted_after, 0, change.changes_after)
        state = OrderState(True, snapshot.version, lines, True, fingerprint(snapshot))
        return plan.needs_read

    for n in order:
        if apply(snapshots[n], from_read=False):
            apply(snapshots[-1], from_read=True)  # a read answers the order as it is now
    apply(snapshots[-1], from_read=True)
    assert total == -quantities[-1]


# --- restocked only if the platform says so (B16) ----------------------------------------------


@pytest.mark.parametrize(
    ("restock", "confirmed", "line", "units", "unconfirmed"),
    [
        (True, True, LineState(3, 0), 2, False),  # restocked, said so: given back
        (False, True, LineState(3, 0), 0, False),  # not restocked, whatever its type
        (True, False, LineState(3, 0), 0, True),  # a restocking type only: read the order
        (True, False, LineState(3, 3), 0, False),  # nothing left to give back: no read
        (True, False, None, 0, False),  # never counted: no read
        (False, False, LineState(3, 0), 0, False),
    ],
)
def test_refund_line_gives_back_only_confirmed_restocks(
    restock: bool, confirmed: bool, line: LineState | None, units: int, unconfirmed: bool
) -> None:
    refund_line = RefundLine("R1", "L1", 2, restock, restock_confirmed=confirmed)
    assert restock_units(line, refund_line) == units
    assert restock_unconfirmed(line, refund_line) is unconfirmed


def _held(snapshot: OrderSnapshot, **changes: object) -> SeenAt:
    held = SeenAt(
        snapshot.version,
        fingerprint(snapshot),
        snapshot.financial_status,
        snapshot.cancelled,
        shows_paid_in_full(snapshot),
    )
    return replace(held, **changes)  # type: ignore[arg-type]


def test_a_snapshot_tells_nothing_new_only_when_older_or_equal_in_everything() -> None:
    pending = _order("pending")
    assert tells_nothing_new(pending, _held(pending))
    assert tells_nothing_new(pending, _held(pending, version=V2))  # older than what is held
    # the same version (whole seconds): paid since, other quantities, cancelled since
    assert not tells_nothing_new(_order("paid"), _held(pending))
    assert not tells_nothing_new(_order("pending", lines=(("L1", 3),)), _held(pending))
    assert not tells_nothing_new(replace(pending, cancelled=True), _held(pending))
    # evidence of payment in full that was not held before
    deposit = _order("partially_paid", paid_in_full=True)
    assert not tells_nothing_new(deposit, _held(deposit, paid_in_full=False))
    assert tells_nothing_new(deposit, _held(deposit))
    assert not tells_nothing_new(_order("pending", version=V2), _held(pending))
