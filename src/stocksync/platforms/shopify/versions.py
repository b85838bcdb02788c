"""Shopify Admin API versions: which ones stocksync speaks, and when each stops being served.

Shopify relies on: a stable version is released every quarter (``YYYY-01/04/07/10``) and is
supported for at least twelve months after its release; requests to a version past its end
of support are answered by the oldest supported version instead, which may silently change
behaviour. Features stocksync depends on arrived in 2026-01 (``changeFromQuantity`` on
``inventorySetQuantities`` / ``inventoryAdjustQuantities`` and the ``@idempotent(key:)``
directive) and became mandatory in 2026-04 (``changeFromQuantity`` must be given on every
quantity, even as an explicit ``null``; inventory mutations must carry an idempotency key).

Versions before 2026-01 are refused (``refusal``): their adjustments carry no idempotency key,
so an adjustment retried after a timeout or a 5xx could count a sale twice, and they are past
Shopify's end of support anyway.
"""

from __future__ import annotations

import re
from datetime import date

DEFAULT_VERSION = "2026-10"

# Release quarter + 12 months (Shopify's documented minimum support window).
END_OF_SUPPORT: dict[str, date] = {
    "2025-01": date(2026, 1, 1),
    "2025-04": date(2026, 4, 1),
    "2025-07": date(2026, 7, 1),
    "2025-10": date(2026, 10, 1),
    "2026-01": date(2027, 1, 1),
    "2026-04": date(2027, 4, 1),
    "2026-07": date(2027, 7, 1),
    "2026-10": date(2027, 10, 1),
}
SUPPORTED_VERSIONS: tuple[str, ...] = tuple(sorted(END_OF_SUPPORT))

CHANGE_FROM_QUANTITY_SINCE = "2026-01"  # changeFromQuantity and @idempotent(key:)
MANDATORY_CAS_SINCE = "2026-04"  # both required on inventory mutations
MINIMUM_VERSION = CHANGE_FROM_QUANTITY_SINCE  # the first with idempotent adjustments

_VERSION = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def version_key(version: str) -> tuple[int, int]:
    """(year, month) of a version; ``unstable`` sorts after every stable version."""
    if version == "unstable":
        return (9999, 12)
    match = _VERSION.match(version)
    if match is None:
        raise ValueError(f"not a Shopify API version: {version!r} (expected YYYY-MM)")
    return int(match.group(1)), int(match.group(2))


def at_least(version: str, threshold: str) -> bool:
    return version_key(version) >= version_key(threshold)


def has_change_from_quantity(version: str) -> bool:
    """``changeFromQuantity`` and ``@idempotent`` exist from 2026-01."""
    return at_least(version, CHANGE_FROM_QUANTITY_SINCE)


def refusal(version: str) -> str | None:
    """Why stocksync will not use ``version``, or None when it may (a well-formed version)."""
    if at_least(version, MINIMUM_VERSION):
        return None
    return (
        f"API version {version} is refused: before {MINIMUM_VERSION} Shopify's inventory "
        "adjustments take no idempotency key, so an adjustment retried after a timeout or a "
        "server error could count a sale twice (and the version is past Shopify's end of "
        f"support); use {MINIMUM_VERSION} or later, e.g. {DEFAULT_VERSION}"
    )


def require_safe(version: str) -> None:
    """Raise ValueError (with :func:`refusal`'s reason) for a malformed or unsafe version."""
    reason = refusal(version)
    if reason is not None:
        raise ValueError(reason)


def end_of_support(version: str) -> date | None:
    """The date Shopify stops serving ``version``; None when unknown (or ``unstable``)."""
    return END_OF_SUPPORT.get(version)


def days_left(version: str, today: date) -> int | None:
    """Days until ``version`` is no longer served (negative once past); None when unknown."""
    ends = end_of_support(version)
    return None if ends is None else (ends - today).days


# Shopify asks apps to move to a newer version well before the old one stops being served;
# three months' notice leaves an operator a quarter to test the new one.
WARN_MONTHS_BEFORE_END = 3


def months_before(day: date, months: int) -> date:
    """``day`` moved back ``months`` calendar months (clamped to the month's last day)."""
    index = day.year * 12 + (day.month - 1) - months
    year, month = divmod(index, 12)
    month += 1
    for candidate in range(day.day, 0, -1):
        try:
            return date(year, month, candidate)
        except ValueError:
            continue
    raise AssertionError("unreachable: every month has a first day")


def support_warning(version: str, today: date) -> str | None:
    """What an operator should hear about ``version`` today, or None when all is well."""
    if version == "unstable":
        return "the unstable API version changes without notice; use a stable version"
    ends = end_of_support(version)
    if ends is None:
        return f"API version {version} is not one stocksync knows ({', '.join(SUPPORTED_VERSIONS)})"
    if today >= ends:
        return (
            f"API version {version} stopped being supported on {ends.isoformat()}: Shopify "
            f"answers its requests with the oldest supported version; move to {DEFAULT_VERSION}"
        )
    if today >= months_before(ends, WARN_MONTHS_BEFORE_END):
        return (
            f"API version {version} stops being supported on {ends.isoformat()} "
            f"({(ends - today).days} days): move to {DEFAULT_VERSION}"
        )
    return None
