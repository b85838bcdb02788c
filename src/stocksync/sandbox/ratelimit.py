"""Shopify's cost-based leaky bucket, one per shop (one app per shop in the sandbox)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stocksync.sandbox.clock import Clock

MAX_QUERY_COST = 1000

# Restore rates by plan (points per second), as documented; bucket size defaults to 20 s of
# restore, as observed on Shopify (2,000 points on Standard).
PLAN_RESTORE_RATES = {"standard": 100.0, "advanced": 200.0, "plus": 1000.0, "enterprise": 2000.0}


@dataclass
class Bucket:
    clock: Clock
    capacity: float
    restore_rate: float
    enabled: bool = True

    def __post_init__(self) -> None:
        self._level = self.capacity
        self._at = self.clock.monotonic()

    def available(self) -> float:
        now = self.clock.monotonic()
        self._level = min(self.capacity, self._level + (now - self._at) * self.restore_rate)
        self._at = now
        return self._level

    def try_consume(self, cost: float) -> bool:
        if not self.enabled:
            return True
        if self.available() + 1e-9 < cost:
            return False
        self._level -= cost
        return True

    def refund(self, points: float) -> None:
        if self.enabled and points > 0:
            self._level = min(self.capacity, self.available() + points)

    def throttle_status(self) -> dict[str, Any]:
        return {
            "maximumAvailable": float(self.capacity),
            "currentlyAvailable": int(self.available()),
            "restoreRate": float(self.restore_rate),
        }


def bucket_for_plan(
    clock: Clock, plan: str, bucket_size: float | None = None, enabled: bool = True
) -> Bucket:
    if plan not in PLAN_RESTORE_RATES:
        raise ValueError(f"unknown plan {plan!r} (one of {', '.join(PLAN_RESTORE_RATES)})")
    rate = PLAN_RESTORE_RATES[plan]
    return Bucket(clock, bucket_size if bucket_size else rate * 20, rate, enabled)
