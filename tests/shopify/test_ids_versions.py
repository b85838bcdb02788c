"""Id conversion (never through a float) and API version bookkeeping."""

from __future__ import annotations

from datetime import date

import pytest

from stocksync.platforms.shopify.ids import InvalidIdError, numeric_id, to_gid
from stocksync.platforms.shopify.versions import (
    DEFAULT_VERSION,
    days_left,
    end_of_support,
    has_change_from_quantity,
    version_key,
)

BIG = 2**63 - 1


def test_ids_convert_exactly() -> None:
    assert numeric_id(f"gid://shopify/InventoryItem/{BIG}") == str(BIG)
    assert numeric_id(BIG) == str(BIG)
    assert numeric_id(str(BIG)) == str(BIG)
    assert numeric_id(f"gid://shopify/InventoryLevel/{BIG}?inventory_item_id=5") == str(BIG)
    assert to_gid("Location", str(BIG)) == f"gid://shopify/Location/{BIG}"
    assert to_gid("Location", f"gid://shopify/Location/{BIG}") == f"gid://shopify/Location/{BIG}"


@pytest.mark.parametrize("bad", [float(2**53 + 1), True, None, "", "abc", 0, -5, "gid://x/Y/1"])
def test_non_ids_are_refused(bad: object) -> None:
    with pytest.raises(InvalidIdError):
        numeric_id(bad)


def test_gid_of_another_kind_is_refused() -> None:
    with pytest.raises(InvalidIdError):
        to_gid("Location", "gid://shopify/Product/12")


def test_versions() -> None:
    assert DEFAULT_VERSION == "2026-10"
    assert has_change_from_quantity("2026-01")
    assert has_change_from_quantity("unstable")
    assert not has_change_from_quantity("2025-10")
    assert end_of_support("2026-10") == date(2027, 10, 1)
    assert days_left("2025-01", date(2025, 12, 2)) == 30
    assert days_left("1999-01", date(2025, 1, 1)) is None
    with pytest.raises(ValueError, match="YYYY-MM"):
        version_key("2026-13")
