"""Which destination orders count against the source, and by how much (B15, B16, B17)."""

from __future__ import annotations

import itertools

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
    is_counted_status,
    plan_order,
    refund_natural_key,
    restock_units,
    shows_paid_in_full,
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
    state = OrderState(counted=True, version=V1, lines={"L1": LineState(2, 0)})
    plan = plan_order(_order(version=V1), state, PAID_ONLY, ALL_LINES)
    assert not plan.stale
    assert plan.counted
    assert plan.changes == ()


def test_edit_up_takes_the_difference() -> None:
    state = OrderState(counted=True, version=V1, lines={"L1": LineState(2, 0)})
    plan = plan_order(_order(version=V2, lines=(("L1", 5),)), state, PAID_ONLY, ALL_LINES)
    (change,) = plan.changes
    assert (change.kind, change.delta, change.counted_after) == ("order_edit", -3, 5)
    assert change.natural_key == f"O1:L1:{V2}:5"


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
            counted = state.lines["L1"].counted if state and "L1" in state.lines else None
            for change in plan.changes:
                assert change.natural_key not in keys  # each change is new
                keys.add(change.natural_key)
                total += change.delta
                counted = change.counted_after
            lines = {} if counted is None else {"L1": LineState(counted, 0)}
            state = OrderState(counted=plan.counted, version=version, lines=lines)
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
        counted = state.lines["L1"].counted if state else 0
        for change in plan.changes:
            total += change.delta
            counted = change.counted_after
        state = OrderState(counted=True, version=version, lines={"L1": LineState(counted, 0)})
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
    plan = plan_order(read, remembered, PAID_ONLY, ALL_LINES)
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

    def apply(snapshot: OrderSnapshot) -> bool:
        nonlocal state, total
        plan = plan_order(snapshot, state, PAID_ONLY, ALL_LINES)
        lines = dict(state.lines) if state else {}
        for change in plan.changes:
            total += change.delta
            lines[change.line_id] = LineState(change.counted_after, 0)
        version = state.version if plan.stale and state else snapshot.version
        state = OrderState(plan.counted, version, lines, plan.paid_in_full)
        return plan.needs_read

    for n in order:
        if apply(snapshots[n]):
            assert not apply(snapshots[3])  # the read: the order as it is now
    assert state is not None
    assert state.counted
    assert state.paid_in_full
    # the newest snapshot is always applied (or read) at some point
    assert total == -quantities[3]
