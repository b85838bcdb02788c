"""A connection's settings (B9, B10, B15, B20): defaults, JSON, validation, price rules."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stocksync.domain.connection import (
    FIELD_MODES,
    SYNC_FIELDS,
    ConnectionSettings,
    PriceRules,
    SettingsError,
)

DETERMINISTIC = settings(derandomize=True, max_examples=150, deadline=None)


def _through_json(value: ConnectionSettings) -> ConnectionSettings:
    return ConnectionSettings.from_json(json.loads(json.dumps(value.to_json())))


# --- defaults --------------------------------------------------------------------------------


def test_defaults_sync_price_and_copy_everything_else_once() -> None:
    defaults = ConnectionSettings()
    assert dict(defaults.field_sync) == {
        name: ("sync" if name == "price" else "create_only") for name in SYNC_FIELDS
    }
    assert defaults.field_sync["price"] == "sync"
    assert defaults.field_sync["title"] == "create_only"
    assert defaults.field_sync["variants"] == "create_only"
    # only paid orders count by default, no buffer
    assert (defaults.count_authorized, defaults.count_partially_paid, defaults.count_pending) == (
        False,
        False,
        False,
    )
    assert defaults.safety_buffer == 0
    assert defaults.price_rules == PriceRules()
    assert (defaults.on_hidden, defaults.on_source_deleted) == ("keep", "keep")


def test_empty_or_missing_json_gives_the_defaults() -> None:
    assert ConnectionSettings.from_json(None) == ConnectionSettings()
    assert ConnectionSettings.from_json({}) == ConnectionSettings()


def test_a_partial_field_sync_keeps_the_other_defaults() -> None:
    loaded = ConnectionSettings.from_json({"field_sync": {"title": "sync", "price": "ignore"}})
    assert loaded.field_sync["title"] == "sync"
    assert loaded.field_sync["price"] == "ignore"
    assert loaded.field_sync["vendor"] == "create_only"


# --- JSON round trip ---------------------------------------------------------------------------


def test_json_round_trip_of_every_setting() -> None:
    original = ConnectionSettings(
        count_authorized=True,
        count_partially_paid=True,
        count_pending=True,
        safety_buffer=4,
        field_sync={name: "ignore" for name in SYNC_FIELDS},
        price_rules=PriceRules(
            currency_rate=Decimal("0.9215"),
            multiplier=Decimal("1.25"),
            add=Decimal("-0.50"),
            ending=Decimal("0.99"),
        ),
        on_hidden="archive",
        on_source_deleted="delete",
    )
    data = original.to_json()
    # money is text in JSON, never a float
    assert data["price_rules"] == {
        "currency_rate": "0.9215",
        "multiplier": "1.25",
        "add": "-0.50",
        "ending": "0.99",
    }
    assert _through_json(original) == original


DECIMALS = st.decimals(min_value=Decimal("0.01"), max_value=Decimal(1000), places=4)


@DETERMINISTIC
@given(
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    buffer=st.integers(min_value=0, max_value=10_000),
    modes=st.fixed_dictionaries({name: st.sampled_from(FIELD_MODES) for name in SYNC_FIELDS}),
    rate=DECIMALS,
    multiplier=DECIMALS,
    add=st.decimals(min_value=Decimal(-100), max_value=Decimal(100), places=2),
    ending=st.none() | st.sampled_from([Decimal("0.99"), Decimal("0.95"), Decimal("0.00")]),
    on_hidden=st.sampled_from(["keep", "unpublish", "archive"]),
    on_deleted=st.sampled_from(["keep", "unpublish", "archive", "delete"]),
)
def test_json_round_trip_property(
    flags: tuple[bool, bool, bool],
    buffer: int,
    modes: dict[str, Any],
    rate: Decimal,
    multiplier: Decimal,
    add: Decimal,
    ending: Decimal | None,
    on_hidden: Any,
    on_deleted: Any,
) -> None:
    original = ConnectionSettings(
        count_authorized=flags[0],
        count_partially_paid=flags[1],
        count_pending=flags[2],
        safety_buffer=buffer,
        field_sync=modes,
        price_rules=PriceRules(rate, multiplier, add, ending),
        on_hidden=on_hidden,
        on_source_deleted=on_deleted,
    )
    assert _through_json(original) == original


# --- refused input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({"colour": "red"}, "unknown settings: colour"),
        ({"safety_bufer": 2, "zzz": 1}, "unknown settings: safety_bufer, zzz"),
        ({"field_sync": {"stock": "sync"}}, "unknown sync field 'stock'"),
        ({"field_sync": {"price": "always"}}, "field 'price': mode must be one of"),
        ({"safety_buffer": -1}, "safety_buffer must be zero or more"),
        ({"price_rules": {"multiplier": "abc"}}, "price rules must be decimal numbers"),
        ({"price_rules": {"multiplyer": "2"}}, "unknown price rules: multiplyer"),
        ({"safety_buffer": "3"}, "safety_buffer must be a whole number"),
        ({"safety_buffer": 2.5}, "safety_buffer must be a whole number"),
        ({"count_pending": "yes"}, "count_pending must be true or false"),
        ({"on_hidden": "delete"}, "on_hidden must be one of"),
        ({"on_source_deleted": "burn"}, "on_source_deleted must be one of"),
        ({"price_rules": {"multiplier": "NaN"}}, "price rules must be finite"),
        ({"price_rules": {"currency_rate": "Infinity"}}, "price rules must be finite"),
        ({"price_rules": {"currency_rate": "0"}}, "currency_rate must be more than zero"),
        ({"price_rules": {"multiplier": "-1"}}, "multiplier must be more than zero"),
        ({"price_rules": {"ending": "1.5"}}, "ending must be from 0.00 to 0.99"),
        ({"price_rules": {"ending": "-0.01"}}, "ending must be from 0.00 to 0.99"),
    ],
)
def test_bad_settings_are_refused_with_a_plain_reason(data: dict[str, Any], says: str) -> None:
    with pytest.raises(SettingsError) as info:
        ConnectionSettings.from_json(data)
    assert says in str(info.value)


def test_with_changes_validates_too() -> None:
    changed = ConnectionSettings().with_changes(safety_buffer=3)
    assert changed.safety_buffer == 3
    with pytest.raises(SettingsError):
        ConnectionSettings().with_changes(safety_buffer=-2)


# --- price rules (B10) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "price", "result"),
    [
        (PriceRules(), "10.00", "10.00"),
        (PriceRules(multiplier=Decimal("1.5")), "10.00", "15.00"),
        (PriceRules(add=Decimal("2.50")), "10.00", "12.50"),
        (PriceRules(ending=Decimal("0.99")), "12.30", "12.99"),
        (PriceRules(ending=Decimal("0.99")), "12.99", "12.99"),  # already ends in .99
        (PriceRules(ending=Decimal("0.99")), "13.00", "13.99"),  # rounds up, never down
        (PriceRules(ending=Decimal("0.95")), "12.96", "13.95"),
        (PriceRules(ending=Decimal("0.00")), "12.30", "13.00"),
        (PriceRules(currency_rate=Decimal("0.92")), "10.00", "9.20"),
        (PriceRules(currency_rate=Decimal("1.005")), "1.00", "1.01"),  # half up to the cent
        # rate, then multiplier, then add, then the ending
        (
            PriceRules(
                currency_rate=Decimal(2),
                multiplier=Decimal("1.5"),
                add=Decimal(1),
                ending=Decimal("0.99"),
            ),
            "10.00",
            "31.99",
        ),
        (PriceRules(add=Decimal(-20)), "10.00", "0"),  # never below zero
    ],
)
def test_price_rules_apply(rules: PriceRules, price: str, result: str) -> None:
    assert rules.apply(Decimal(price)) == Decimal(result)


@DETERMINISTIC
@given(
    price=st.decimals(min_value=Decimal(0), max_value=Decimal(100_000), places=2),
    multiplier=DECIMALS,
    ending=st.sampled_from([Decimal("0.99"), Decimal("0.49"), Decimal("0.00")]),
)
def test_ending_rounds_up_to_the_nearest_price_with_that_ending(
    price: Decimal, multiplier: Decimal, ending: Decimal
) -> None:
    plain = PriceRules(multiplier=multiplier).apply(price)
    rounded = PriceRules(multiplier=multiplier, ending=ending).apply(price)
    assert rounded % 1 == ending
    assert plain <= rounded < plain + 1
