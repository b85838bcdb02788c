"""Which destination orders count against the source, and by how much (B15, B16, B17).

The rules are target-based: an order line's counted units follow the latest snapshot of the
order, so a duplicate delivery computes a zero difference and an older snapshot (delivered
late) is recognised by its version and ignored. Each resulting change is recorded under a
natural key (order line, order edit, refund line) that the ledger refuses to store twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from stocksync.domain.connection import ConnectionSettings
from stocksync.domain.levels import MAX_QUANTITY
from stocksync.domain.ports import OrderSnapshot, RefundLine

# Paid, and the states an order reaches only from paid, always count (B15).
ALWAYS_COUNTED = frozenset({"paid", "partially_refunded", "refunded"})
KNOWN_STATUSES = ALWAYS_COUNTED | {
    "pending",
    "authorized",
    "partially_paid",
    "voided",
    "expired",
}


def is_counted_status(financial_status: str, settings: ConnectionSettings) -> bool:
    """Whether an order first seen in ``financial_status`` counts now.

    An order first seen ``voided`` was cancelled before we saw it (its earlier webhooks lost).
    It was pending or authorized before; it counts when both of those count, since then it
    certainly passed through a counted state and its cancellation's restock will give the units
    back. ``expired`` is reached only from ``authorized``."""
    status = financial_status.strip().lower()
    if status == "voided":
        return settings.count_authorized and settings.count_pending
    if status == "expired":
        return settings.count_authorized
    if status in ALWAYS_COUNTED:
        return True
    if status == "authorized":
        return settings.count_authorized
    if status == "partially_paid":
        return settings.count_partially_paid
    if status == "pending":
        return settings.count_pending
    return False


@dataclass(frozen=True)
class LineState:
    counted: int
    restocked: int


@dataclass(frozen=True)
class OrderState:
    counted: bool
    version: str
    lines: Mapping[str, LineState]


@dataclass(frozen=True)
class LineChange:
    """Units to take from (negative) or give back to (positive) the source for one line."""

    line_id: str
    kind: str  # "order_line" (first count) or "order_edit"
    natural_key: str
    delta: int
    counted_after: int


@dataclass(frozen=True)
class OrderPlan:
    stale: bool  # the snapshot is older than what we already applied
    counted: bool  # whether the order is counted after this snapshot
    changes: tuple[LineChange, ...]


def plan_order(
    snapshot: OrderSnapshot,
    state: OrderState | None,
    settings: ConnectionSettings,
    linked_lines: frozenset[str],
) -> OrderPlan:
    """Decide what a snapshot changes. ``linked_lines`` are the lines whose variant is linked
    to a source; other lines are not ours to count."""
    if state is not None and snapshot.version < state.version:
        return OrderPlan(stale=True, counted=state.counted, changes=())
    already = state is not None and state.counted
    counted = already or is_counted_status(snapshot.financial_status, settings)
    if not counted:
        return OrderPlan(stale=False, counted=False, changes=())
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
            changes.append(
                LineChange(
                    line_id=line.id,
                    kind="order_edit",
                    natural_key=f"{snapshot.id}:{line.id}:{snapshot.version}:{line.quantity}",
                    delta=previous.counted - line.quantity,
                    counted_after=line.quantity,
                )
            )
    return OrderPlan(stale=False, counted=True, changes=tuple(changes))


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
    """B16: units a refund line gives back: only restocking lines, never more than was
    counted for the line and not yet given back. A line never counted gives back nothing."""
    if not refund_line.restock or line is None or refund_line.quantity <= 0:
        return 0
    return max(0, min(refund_line.quantity, line.counted - line.restocked))


def refund_natural_key(order_id: str, refund_id: str, refund_line: RefundLine) -> str:
    return f"{order_id}:{refund_id}:{refund_line.id}"
