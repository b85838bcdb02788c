"""SKU hygiene and matching (B11, B12)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stocksync.domain.ports import Variant
from stocksync.domain.skus import duplicates, hygiene, match_by_sku, normalise_sku

DETERMINISTIC = settings(derandomize=True, max_examples=200, deadline=None)


def _v(vid: str, sku: str) -> Variant:
    return Variant(id=vid, item_id=f"item-{vid}", sku=sku)


def test_normalise_trims_surrounding_white_space_only() -> None:
    assert normalise_sku("  TEE-S\t\n") == "TEE-S"
    assert normalise_sku("TEE S") == "TEE S"
    assert normalise_sku(None) == ""
    assert normalise_sku("   ") == ""


def test_empty_sku_is_never_linked_and_says_why() -> None:
    usable, problems = hygiene([_v("1", ""), _v("2", "   "), _v("3", "MUG")])
    assert list(usable) == ["MUG"]
    assert [p.variant_id for p in problems] == ["1", "2"]
    for problem in problems:
        assert problem.reason == (
            "the variant has no SKU, so it cannot be linked; give it a unique SKU"
        )


def test_sku_shared_in_one_store_links_none_of_its_variants() -> None:
    variants = [_v("1", "TEE"), _v("2", " TEE "), _v("3", "MUG")]
    assert duplicates(variants) == {"TEE": 2}
    usable, problems = hygiene(variants)
    assert list(usable) == ["MUG"]
    assert [(p.variant_id, p.sku) for p in problems] == [("1", "TEE"), ("2", "TEE")]
    assert problems[0].reason == (
        "the SKU 'TEE' is used by 2 variants in this store; shared SKUs cause inventory "
        "discrepancies, so none of them is linked until each has its own SKU"
    )


def test_match_is_exact_after_trimming() -> None:
    report = match_by_sku(
        [_v("s1", " TEE-S "), _v("s2", "MUG")], [_v("d1", "TEE-S"), _v("d2", "MUG\t")]
    )
    assert sorted((m.source.id, m.destination.id) for m in report.matched) == [
        ("s1", "d1"),
        ("s2", "d2"),
    ]
    assert report.problems == ()


def test_match_is_case_sensitive() -> None:
    report = match_by_sku([_v("s1", "tee-s")], [_v("d1", "TEE-S")])
    assert report.matched == ()
    assert [(p.variant_id, p.reason) for p in report.problems] == [
        ("s1", "no variant with the SKU 'tee-s' exists in the destination store"),
        ("d1", "no variant with the SKU 'TEE-S' exists in the source store"),
    ]


def test_shared_sku_on_either_side_is_reported_not_matched() -> None:
    source = [_v("s1", "TEE"), _v("s2", "MUG")]
    destination = [_v("d1", "TEE"), _v("d2", "MUG"), _v("d3", "MUG")]
    report = match_by_sku(source, destination)
    assert [(m.source.id, m.destination.id) for m in report.matched] == [("s1", "d1")]
    reasons = {p.variant_id: p.reason for p in report.problems}
    assert set(reasons) == {"s2", "d2", "d3"}
    assert "used by 2 variants" in reasons["d2"]
    assert reasons["s2"] == "no variant with the SKU 'MUG' exists in the destination store"


SKU = st.sampled_from(["A", "B", "C", " A", "B ", "", "  "])


@DETERMINISTIC
@given(
    source=st.lists(SKU, max_size=6),
    destination=st.lists(SKU, max_size=6),
)
def test_every_variant_is_either_matched_or_reported(
    source: list[str], destination: list[str]
) -> None:
    src = [_v(f"s{i}", sku) for i, sku in enumerate(source)]
    dst = [_v(f"d{i}", sku) for i, sku in enumerate(destination)]
    report = match_by_sku(src, dst)
    matched = {m.source.id for m in report.matched} | {m.destination.id for m in report.matched}
    reported = {p.variant_id for p in report.problems}
    assert matched.isdisjoint(reported)
    assert matched | reported == {v.id for v in src + dst}
    for m in report.matched:
        sku = normalise_sku(m.source.sku)
        assert sku
        assert sku == normalise_sku(m.destination.sku)
        # the SKU is unique on both sides
        assert [normalise_sku(v.sku) for v in src].count(sku) == 1
        assert [normalise_sku(v.sku) for v in dst].count(sku) == 1
    for p in report.problems:
        assert "SKU" in p.reason
