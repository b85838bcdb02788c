"""How much a destination shows, and where a sale is taken from at the source (B14, B20)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stocksync.domain.levels import (
    MAX_QUANTITY,
    choose_sale_location,
    destination_level,
    plausible_quantity,
    shared_total,
)

DETERMINISTIC = settings(derandomize=True, max_examples=200, deadline=None)


# --- destination_level and the safety buffer (B20) ------------------------------------------


@pytest.mark.parametrize(
    ("source", "buffer", "shown"),
    [
        (10, 0, 10),
        (10, 3, 7),
        (3, 3, 0),
        (2, 3, 0),
        (0, 0, 0),
        (-4, 0, 0),  # a source oversold below zero shows as sold out
        (-4, 2, 0),
    ],
)
def test_destination_shows_source_minus_buffer_never_below_zero(
    source: int, buffer: int, shown: int
) -> None:
    assert destination_level(source, buffer) == shown


@DETERMINISTIC
@given(
    source=st.integers(min_value=-MAX_QUANTITY, max_value=MAX_QUANTITY),
    buffer=st.integers(min_value=0, max_value=1000),
)
def test_destination_level_is_max_of_zero_and_source_minus_buffer(source: int, buffer: int) -> None:
    shown = destination_level(source, buffer)
    assert shown == max(0, source - buffer)
    assert 0 <= shown <= max(source, 0)


# --- plausible quantities and shared totals --------------------------------------------------


@pytest.mark.parametrize(
    ("quantity", "plausible"),
    [
        (0, True),
        (-5, True),  # levels may go negative (oversold)
        (MAX_QUANTITY, True),
        (-MAX_QUANTITY, True),
        (MAX_QUANTITY + 1, False),
        (-MAX_QUANTITY - 1, False),
        (2**63, False),
        (None, False),
    ],
)
def test_plausible_quantity(quantity: int | None, plausible: bool) -> None:
    assert plausible_quantity(quantity) is plausible


def test_shared_total_sums_stocked_locations_only() -> None:
    assert shared_total({"a": 3, "b": None, "c": -1}) == 2
    assert shared_total({}) == 0
    assert shared_total({"a": None}) == 0


# --- choose_sale_location (B14) --------------------------------------------------------------


def test_sale_is_taken_from_the_location_with_most_units() -> None:
    assert choose_sale_location({"10": 2, "11": 7, "12": 5}) == "11"


def test_locations_not_stocking_the_item_are_never_chosen() -> None:
    assert choose_sale_location({"10": None, "11": 0}) == "11"
    assert choose_sale_location({"10": None, "11": None}) is None
    assert choose_sale_location({}) is None


def test_ties_are_broken_the_same_way_whatever_the_order() -> None:
    levels = [("30", 4), ("10", 4), ("20", 4), ("40", 1)]
    rng = random.Random(7)
    chosen = set()
    for _ in range(20):
        rng.shuffle(levels)
        chosen.add(choose_sale_location(dict(levels)))
    assert chosen == {"10"}


def test_priority_order_takes_the_first_location_holding_enough_units() -> None:
    levels = {"a": 1, "b": 3, "c": 9}
    assert choose_sale_location(levels, units=2, priority=["a", "b", "c"]) == "b"
    assert choose_sale_location(levels, units=1, priority=["a", "b", "c"]) == "a"
    # the priority order wins over "most units"
    assert choose_sale_location(levels, units=3, priority=["b", "c"]) == "b"


def test_priority_falls_back_to_the_first_prioritised_location_stocking_the_item() -> None:
    levels = {"a": 1, "b": None, "c": 2}
    assert choose_sale_location(levels, units=5, priority=["b", "a", "c"]) == "a"


def test_priority_naming_no_stocking_location_falls_back_to_most_units() -> None:
    levels = {"a": 1, "b": 6}
    assert choose_sale_location(levels, units=1, priority=["gone", "elsewhere"]) == "b"
    assert choose_sale_location(levels, units=1, priority=[]) == "b"


@DETERMINISTIC
@given(
    levels=st.dictionaries(
        st.sampled_from(["1", "2", "3", "4", "5"]),
        st.none() | st.integers(min_value=-5, max_value=20),
    ),
    units=st.integers(min_value=1, max_value=10),
    priority=st.none() | st.lists(st.sampled_from(["1", "2", "3", "6"]), unique=True),
)
def test_chosen_location_always_stocks_the_item(
    levels: dict[str, int | None], units: int, priority: list[str] | None
) -> None:
    chosen = choose_sale_location(levels, units=units, priority=priority)
    stocked = {k: v for k, v in levels.items() if v is not None}
    if not stocked:
        assert chosen is None
        return
    assert chosen in stocked
    if not priority or not set(priority) & set(stocked):
        assert stocked[chosen] == max(stocked.values())
