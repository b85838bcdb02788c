"""SKU hygiene and matching (B11, B12).

Variants are linked by SKU, exactly, after trimming surrounding white space. A variant whose
SKU is empty, or shared by several variants of the same store, is never linked: a shared SKU
would make one stock level stand for several products and cause discrepancies."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from stocksync.domain.ports import Variant


def normalise_sku(sku: str | None) -> str:
    return (sku or "").strip()


@dataclass(frozen=True)
class SkuProblem:
    variant_id: str
    sku: str
    reason: str


@dataclass(frozen=True)
class SkuMatch:
    source: Variant
    destination: Variant


@dataclass(frozen=True)
class MatchReport:
    matched: tuple[SkuMatch, ...]
    problems: tuple[SkuProblem, ...]  # variants that will not be linked, and why


EMPTY = "the variant has no SKU, so it cannot be linked; give it a unique SKU"
SHARED = (
    "the SKU {sku!r} is used by {n} variants in this store; shared SKUs cause inventory "
    "discrepancies, so none of them is linked until each has its own SKU"
)
NO_MATCH = "no variant with the SKU {sku!r} exists in the {side} store"
UNTRACKED = "inventory is not tracked for this variant, so there is no level to sync"


def duplicates(variants: Iterable[Variant]) -> dict[str, int]:
    counts = Counter(normalise_sku(v.sku) for v in variants)
    return {sku: n for sku, n in counts.items() if sku and n > 1}


def hygiene(variants: Sequence[Variant]) -> tuple[dict[str, Variant], list[SkuProblem]]:
    """Variants usable for linking, by normalised SKU, and the problems of the others."""
    dups = duplicates(variants)
    usable: dict[str, Variant] = {}
    problems: list[SkuProblem] = []
    for v in variants:
        sku = normalise_sku(v.sku)
        if not sku:
            problems.append(SkuProblem(v.id, v.sku, EMPTY))
        elif sku in dups:
            problems.append(SkuProblem(v.id, sku, SHARED.format(sku=sku, n=dups[sku])))
        else:
            usable[sku] = v
    return usable, problems


def match_by_sku(source: Sequence[Variant], destination: Sequence[Variant]) -> MatchReport:
    """Pair source and destination variants by SKU, listing each variant left out and why."""
    src, problems = hygiene(source)
    dst, dst_problems = hygiene(destination)
    problems.extend(dst_problems)
    matched: list[SkuMatch] = []
    for sku, s in src.items():
        d = dst.get(sku)
        if d is None:
            problems.append(SkuProblem(s.id, sku, NO_MATCH.format(sku=sku, side="destination")))
        else:
            matched.append(SkuMatch(s, d))
    for sku, d in dst.items():
        if sku not in src:
            problems.append(SkuProblem(d.id, sku, NO_MATCH.format(sku=sku, side="source")))
    return MatchReport(tuple(matched), tuple(problems))
