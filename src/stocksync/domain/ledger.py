"""What one batch of ledger rows asks of the root source: pure decisions, no I/O."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from stocksync.domain.ports import LevelAdjustment


@dataclass(frozen=True)
class BatchRow:
    ledger_id: int
    item_id: str
    location_id: str
    delta: int


def new_key_seed() -> str:
    """A random seed for a batch's keys: never derived from a row id, which repeats across a
    restored backup, a second installation on the same shop, or a reused SQLite rowid."""
    return str(uuid.uuid4())


def batch_key(seed: str, attempt: int) -> str:
    """The idempotency key of a batch's attempt: the same seed and attempt always give the
    same key (a retry or a crash resends under it); a new attempt gives a new one."""
    return str(uuid.uuid5(uuid.UUID(seed), f"attempt-{attempt}"))


def batch_changes(rows: Sequence[BatchRow]) -> list[LevelAdjustment]:
    """One change per item and location (their rows' deltas summed, in first-row order);
    changes that sum to nothing are left out. Deterministic for the same rows, so that a
    resend is the same input under the same key."""
    totals: dict[tuple[str, str], int] = {}
    for row in sorted(rows, key=lambda r: r.ledger_id):
        pair = (row.item_id, row.location_id)
        totals[pair] = totals.get(pair, 0) + row.delta
    return [
        LevelAdjustment(item, location, delta)
        for (item, location), delta in totals.items()
        if delta
    ]


def split_rows(rows: Sequence[BatchRow]) -> tuple[list[BatchRow], list[BatchRow]]:
    """Halves of a refused batch (in row order), so that the rows the platform accepts still
    apply and the one it refuses is isolated in a few calls."""
    ordered = sorted(rows, key=lambda r: r.ledger_id)
    middle = len(ordered) // 2
    return ordered[:middle], ordered[middle:]
