"""What a batch of ledger rows sends: its changes and its keys (no database)."""

from __future__ import annotations

import uuid

from stocksync.domain.ledger import BatchRow, batch_changes, batch_key, new_key_seed, split_rows
from stocksync.domain.ports import LevelAdjustment


def test_changes_sum_rows_per_item_and_location_in_first_row_order() -> None:
    rows = [
        BatchRow(3, "tee", "north", -2),
        BatchRow(1, "mug", "north", -1),
        BatchRow(2, "tee", "south", -4),
        BatchRow(4, "mug", "north", -3),
    ]
    assert batch_changes(rows) == [
        LevelAdjustment("mug", "north", -4),
        LevelAdjustment("tee", "south", -4),
        LevelAdjustment("tee", "north", -2),
    ]


def test_a_sale_and_its_restock_in_one_batch_send_nothing_for_that_item() -> None:
    rows = [BatchRow(1, "tee", "north", -2), BatchRow(2, "tee", "north", 2)]
    assert batch_changes(rows) == []


def test_keys_are_random_seeds_and_stable_per_attempt() -> None:
    seed = new_key_seed()
    assert uuid.UUID(seed).version == 4
    assert seed != new_key_seed()
    assert batch_key(seed, 0) == batch_key(seed, 0)  # a resend carries the same key
    assert batch_key(seed, 1) != batch_key(seed, 0)  # a new attempt, a new key
    assert uuid.UUID(batch_key(seed, 3)).version == 5


def test_a_refused_batch_splits_in_row_order() -> None:
    rows = [BatchRow(i, f"item-{i}", "north", -1) for i in (5, 1, 4, 2, 3)]
    first, second = split_rows(rows)
    assert [r.ledger_id for r in first] == [1, 2]
    assert [r.ledger_id for r in second] == [3, 4, 5]
