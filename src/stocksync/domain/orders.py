"""Which destination orders count against the source, and by how much (B15, B16, B17).

The rules are target-based: an order line's counted units follow the latest snapshot of the
order, so a duplicate delivery computes a zero difference and an older snapshot (delivered
late) is recognised by its version and ignored. Versions have whole seconds on Shopify, so
two snapshots of one version may differ: such a snapshot cannot be ordered against what is
known and changes no count; a read of the order (current, so authoritative for its version)
settles it. Whether an order counts is not a matter of order: it counts once any snapshot
shows it in a counted state, and that is remembered. Each resulting change is recorded under
a natural key (order line, the line's n-th edit, refund line) that the ledger refuses to store
twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from stocksync.domain.connection import ConnectionSettings
from stocksync.domain.levels import MAX_QUANTITY
from stocksync.domain.ports import OrderLine, OrderSnapshot, RefundLine
from stocksync.domain.sales import ENDED_STATUSES

# States in which money was taken. None of them alone says the order was paid in full: a
# deposit order that is partially refunded never was (B15); only evidence of payment in full
# (``OrderSnapshot.paid_in_full``, remembered once seen) makes an order count as paid.
MONEY_TAKEN = frozenset({"paid", "partially_refunded", "refunded"})
KNOWN_STATUSES = MONEY_TAKEN | {
    "pending",
    "authorized",
    "partially_paid",
    "voided",
    "expired",
}


def shows_paid_in_full(snapshot: OrderSnapshot) -> bool:
    """Whether this snapshot is evidence that the order was paid in full at its version. A
    platform that cannot tell (``paid_in_full`` None) is believed only for the status
    ``paid``, which is the platform's own word for "paid in full" at that instant."""
    if snapshot.paid_in_full is not None:
        return snapshot.paid_in_full
    return snapshot.financial_status.strip().lower() == "paid"


def is_counted_status(
    financial_status: str, settings: ConnectionSettings, paid_in_full: bool = False
) -> bool:
    """Whether an order in ``financial_status`` counts now, ``paid_in_full`` telling whether
    it was ever paid in full (B15).

    An order paid in full at some point always counts. Otherwise money taken (paid,
    partially refunded or refunded without evidence of payment in full) means at least part
    of it was paid: it counts where partially paid orders count. An order first seen
    ``voided`` was cancelled before we saw it (its earlier webhooks lost). It was pending or
    authorized before; it counts when both of those count, since then it certainly passed
    through a counted state and its cancellation's restock will give the units back.
    ``expired`` is reached only from ``authorized``."""
    if paid_in_full:
        return True
    status = financial_status.strip().lower()
    if status == "voided":
        return settings.count_authorized and settings.count_pending
    if status == "expired":
        return settings.count_authorized
    if status in MONEY_TAKEN or status == "partially_paid":
        return settings.count_partially_paid
    if status == "authorized":
        return settings.count_authorized
    if status == "pending":
        return settings.count_pending
    return False


@dataclass(frozen=True)
class LineState:
    counted: int
    restocked: int
    changes: int = 0  # edits recorded for the line: the sequence of its edits' natural keys


@dataclass(frozen=True)
class OrderState:
    counted: bool
    version: str
    lines: Mapping[str, LineState]
    paid_in_full: bool = False  # evidence seen, in any snapshot, of payment in full
    fingerprint: str | None = None  # the quantities of the snapshot applied at ``version``


@dataclass(frozen=True)
class LineChange:
    """Units to take from (negative) or give back to (positive) the source for one line."""

    line_id: str
    kind: str  # "order_line" (first count) or "order_edit"
    natural_key: str
    delta: int
    counted_after: int
    changes_after: int = 0  # the line's edit sequence once this change is recorded


@dataclass(frozen=True)
class OrderPlan:
    stale: bool  # the snapshot is older than what we already applied
    counted: bool  # whether the order is counted after this snapshot
    changes: tuple[LineChange, ...]
    paid_in_full: bool = False  # evidence of payment in full, this snapshot's included
    # The order now counts (or may change) but this snapshot's quantities cannot be taken:
    # the order's current state must be read, and applied.
    needs_read: bool = False


def fingerprint(snapshot: OrderSnapshot) -> str:
    """What of a snapshot depends on its place in time: its lines' quantities, and what
    decides the units an order not counted holds on its store (cancelled or ended, units
    restocked). Two snapshots of one version that differ in it cannot be ordered: the order
    is read. (Whether the order counts does not: any snapshot in a counted state makes it
    count, for good.)"""
    restocked: dict[str, int] = {}
    for refund in snapshot.refunds:
        for rl in refund.lines:
            if rl.restock:
                restocked[rl.line_id] = restocked.get(rl.line_id, 0) + rl.quantity
    ended = snapshot.cancelled or snapshot.financial_status.strip().lower() in ENDED_STATUSES
    text = ";".join(
        f"{line.id}={line.quantity}-{restocked.get(line.id, 0)}"
        for line in sorted(snapshot.lines, key=_line_id)
    )
    if ended:
        text += ";ended"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class SeenAt:
    """What stocksync holds of an order's snapshot for one connection: its version, the
    fingerprint of its quantities, its status, and the evidence it had of payment."""

    version: str
    fingerprint: str | None
    financial_status: str | None
    cancelled: bool
    paid_in_full: bool


def tells_nothing_new(snapshot: OrderSnapshot, seen: SeenAt) -> bool:
    """Whether ``snapshot`` can change nothing of what ``seen`` holds: it is older, or of the
    same version with the same quantities, status and cancellation, and no evidence of payment
    that ``seen`` lacked. Versions have whole seconds, so the same version alone says nothing:
    a payment made in the second the order was seen has it too."""
    if seen.version > snapshot.version:
        return True
    return (
        seen.version == snapshot.version
        and seen.fingerprint == fingerprint(snapshot)
        and seen.financial_status == snapshot.financial_status
        and seen.cancelled == snapshot.cancelled
        and (seen.paid_in_full or not shows_paid_in_full(snapshot))
    )


def _line_id(line: OrderLine) -> str:
    return line.id


def plan_order(
    snapshot: OrderSnapshot,
    state: OrderState | None,
    settings: ConnectionSettings,
    linked_lines: frozenset[str],
    *,
    from_read: bool = False,
) -> OrderPlan:
    """Decide what a snapshot changes. ``linked_lines`` are the lines whose variant is linked
    to a source; other lines are not ours to count. ``from_read``: the snapshot is the order
    as its platform reports it now (a read), not a webhook's copy that may be late."""
    paid_in_full = shows_paid_in_full(snapshot) or (state is not None and state.paid_in_full)
    if (
        state is not None
        and snapshot.version == state.version
        and not from_read
        and fingerprint(snapshot) != state.fingerprint
    ):
        # Same version, other quantities: which came first cannot be told (whole-second
        # versions), so no count changes by arrival order; a read of the order decides.
        return OrderPlan(
            stale=True,
            counted=state.counted,
            changes=(),
            paid_in_full=paid_in_full,
            needs_read=True,
        )
    if state is not None and snapshot.version < state.version:
        # Too old for its quantities, but its evidence of payment holds whatever came since
        # (a paid order edited before its orders/paid webhook was processed). If that makes
        # the order count, it counts with its newest quantities, which a read gives.
        newly_counted = not state.counted and is_counted_status(
            snapshot.financial_status, settings, paid_in_full
        )
        return OrderPlan(
            stale=True,
            counted=state.counted,
            changes=(),
            paid_in_full=paid_in_full,
            needs_read=newly_counted,
        )
    already = state is not None and state.counted
    counted = already or is_counted_status(snapshot.financial_status, settings, paid_in_full)
    if not counted:
        # Money was taken but this copy cannot say whether in full (a webhook without the
        # outstanding balance): the order, read, can.
        unsure = snapshot.paid_in_full is None and (
            snapshot.financial_status.strip().lower() in MONEY_TAKEN - {"paid"}
        )
        return OrderPlan(
            stale=False, counted=False, changes=(), paid_in_full=paid_in_full, needs_read=unsure
        )
    known = state.lines if state is not None else {}
    changes: list[LineChange] = []
    for line in snapshot.lines:
        # A quantity no platform accepts (negative, or past MAX_QUANTITY) is bad input: the
        # engine reports the line as not counted, so it must not be counted here either (an
        # adjustment by it would be refused by the source and block its ledger).
        if line.id not in linked_lines or not 0 <= line.quantity <= MAX_QUANTITY:
            continue
        previous = known.get(line.id)
        if previous is None:
            if line.quantity == 0:
                continue
            changes.append(
                LineChange(
                    line_id=line.id,
                    kind="order_line",
                    natural_key=f"{snapshot.id}:{line.id}",
                    delta=-line.quantity,
                    counted_after=line.quantity,
                )
            )
        elif previous.counted != line.quantity:
            # The line's n-th edit: versions and quantities repeat within one second (2 -> 3
            # -> 2), a sequence does not; a duplicate of one change computes no difference.
            sequence = previous.changes + 1
            changes.append(
                LineChange(
                    line_id=line.id,
                    kind="order_edit",
                    natural_key=f"{snapshot.id}:{line.id}:edit:{sequence}",
                    delta=previous.counted - line.quantity,
                    counted_after=line.quantity,
                    changes_after=sequence,
                )
            )
    return OrderPlan(stale=False, counted=True, changes=tuple(changes), paid_in_full=paid_in_full)


def version_text(instant: datetime) -> str:
    """An instant as fixed-width UTC text, the form order versions and cursors are kept in (so
    that text order is time order); a naive datetime is taken as UTC."""
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_instant(text: str) -> datetime:
    """ISO-8601 text (``Z`` or an offset; naive taken as UTC) as an aware datetime."""
    parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def order_created(created_at: str | None, first_seen: datetime) -> datetime:
    """When an order was placed: the platform's word, or, when it does not say (None) or says
    something unreadable, when stocksync first saw the order. That is the safe reading: the
    order may be older, but never younger, so it can only be excluded wrongly for a link made
    after stocksync first saw it, never counted wrongly for one."""
    if created_at:
        try:
            return parse_instant(created_at)
        except ValueError:
            pass
    return first_seen if first_seen.tzinfo is not None else first_seen.replace(tzinfo=UTC)


def _whole_second(instant: datetime) -> datetime:
    aware = instant if instant.tzinfo is not None else instant.replace(tzinfo=UTC)
    return aware.replace(microsecond=0)


def order_counts_for_link(
    order_placed: datetime, link_created: datetime | None, store_installed: datetime | None
) -> bool:
    """B15, B16: whether a line of an order placed at ``order_placed`` may count for a variant
    link made at ``link_created``, on a store installed at ``store_installed``.

    An order placed before the link existed, or before the store was installed, never counts,
    nor do its edits and refunds: its units were sold from stock stocksync did not share then.
    Shopify gives an order's creation time in whole seconds, so the link and the install are
    compared at whole seconds too: an order placed in the second the link was made counts (it
    cannot be told apart from one placed just after, and the link's levels were not written
    yet). None (a link or install time not recorded) restricts nothing."""
    placed = order_placed if order_placed.tzinfo is not None else order_placed.replace(tzinfo=UTC)
    for since in (link_created, store_installed):
        if since is not None and placed < _whole_second(since):
            return False
    return True


def restock_units(line: LineState | None, refund_line: RefundLine) -> int:
    """B16: units a refund line gives back: only lines the platform says were restocked
    (whatever their restock type), never more than was counted for the line and not yet
    given back. A line never counted gives back nothing; nor does a line whose restock is
    not confirmed (see :func:`restock_unconfirmed`)."""
    if not refund_line.restock or not refund_line.restock_confirmed:
        return 0
    if line is None or refund_line.quantity <= 0:
        return 0
    return max(0, min(refund_line.quantity, line.counted - line.restocked))


def restock_unconfirmed(line: LineState | None, refund_line: RefundLine) -> bool:
    """A refund line that may give units back, if the platform confirms it restocked them:
    the order must be read to know."""
    if refund_line.restock_confirmed or not refund_line.restock:
        return False
    confirmed = RefundLine(
        refund_line.id, refund_line.line_id, refund_line.quantity, True, refund_line.location_id
    )
    return restock_units(line, confirmed) > 0


def refund_natural_key(order_id: str, refund_id: str, refund_line: RefundLine) -> str:
    return f"{order_id}:{refund_id}:{refund_line.id}"
