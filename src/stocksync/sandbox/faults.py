"""Faults injected on demand, per shop: slow or failing API calls, lost responses, races,
misbehaving webhook delivery, and a shop that cannot be reached.

Each switchable fault has a `rate` (probability per request or delivery, drawn from a
seeded generator) and a `next` count (the next N requests or deliveries, deterministic,
which is what tests use).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field, fields
from typing import Any

SWITCHES = (
    "error_5xx",
    "throttle",
    "timeout",
    "lost_response",
    "race",
    "adjust_failed",
    "webhook_drop",
    "webhook_duplicate",
    "webhook_reorder",
)
SETTINGS = (
    "latency_ms",
    "latency_jitter_ms",
    "timeout_seconds",
    "race_delta",
    "webhook_delay_s",
    "webhook_delay_jitter_s",
    "webhook_reorder_hold_s",
    "unreachable",
)


@dataclass
class Switch:
    rate: float = 0.0
    next: int = 0


@dataclass
class Faults:
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    timeout_seconds: float = 30.0  # real seconds a timed-out request hangs before a 504
    race_delta: int = -1  # change applied to a level by the "race" fault
    webhook_delay_s: float = 0.0
    webhook_delay_jitter_s: float = 0.0
    webhook_reorder_hold_s: float = 2.0
    unreachable: bool = False
    error_5xx: Switch = field(default_factory=Switch)
    throttle: Switch = field(default_factory=Switch)
    timeout: Switch = field(default_factory=Switch)
    lost_response: Switch = field(default_factory=Switch)
    race: Switch = field(default_factory=Switch)
    # inventoryAdjustQuantities answers ADJUST_QUANTITIES_FAILED ("Try again"), applying
    # nothing; the key of that attempt is then spent (IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED)
    adjust_failed: Switch = field(default_factory=Switch)
    webhook_drop: Switch = field(default_factory=Switch)
    webhook_duplicate: Switch = field(default_factory=Switch)
    webhook_reorder: Switch = field(default_factory=Switch)
    rng: random.Random = field(default_factory=lambda: random.Random(0), repr=False)  # noqa: S311 (seeded simulation, not security)

    def take(self, name: str) -> bool:
        switch: Switch = getattr(self, name)
        if switch.next > 0:
            switch.next -= 1
            return True
        return switch.rate > 0 and self.rng.random() < switch.rate

    def latency_seconds(self) -> float:
        jitter = self.rng.uniform(0, self.latency_jitter_ms) if self.latency_jitter_ms else 0.0
        return (self.latency_ms + jitter) / 1000.0

    def webhook_delay(self) -> float:
        jitter = (
            self.rng.uniform(0, self.webhook_delay_jitter_s) if self.webhook_delay_jitter_s else 0.0
        )
        return self.webhook_delay_s + jitter

    def update(self, values: dict[str, Any]) -> None:
        """Apply settings such as {"latency_ms": 50, "error_5xx": 0.1,
        "webhook_drop": {"next": 2}, "race.next": 1}; unknown names raise ValueError."""
        for raw_name, value in values.items():
            name, _, part = raw_name.partition(".")
            if name in SWITCHES:
                switch: Switch = getattr(self, name)
                if part:
                    if part not in ("rate", "next"):
                        raise ValueError(f"unknown fault setting {raw_name!r}")
                    setattr(switch, part, float(value) if part == "rate" else int(value))
                elif isinstance(value, dict):
                    switch.rate = float(value.get("rate", switch.rate))
                    switch.next = int(value.get("next", switch.next))
                else:
                    switch.rate = float(value)
            elif name in SETTINGS and not part:
                current = getattr(self, name)
                if isinstance(current, bool):
                    setattr(self, name, _truthy(value))
                else:
                    setattr(self, name, type(current)(value))
            else:
                raise ValueError(f"unknown fault {raw_name!r}")

    def clear(self) -> None:
        fresh = Faults(rng=self.rng)
        for f in fields(self):
            if f.name != "rng":
                setattr(self, f.name, getattr(fresh, f.name))

    def describe(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("rng", None)
        return data


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def parse_cli_fault(text: str) -> tuple[str, str, Any]:
    """`SHOP:NAME=VALUE` (e.g. `source:latency_ms=50`, `dest:webhook_drop.next=2`)."""
    shop, sep, rest = text.partition(":")
    name, eq, value = rest.partition("=")
    if not sep or not eq or not shop or not name:
        raise ValueError(f"expected SHOP:NAME=VALUE, got {text!r}")
    return shop, name.strip(), value.strip()


@dataclass
class Stats:
    requests: int = 0
    points_spent: float = 0.0
    throttled: int = 0
    max_cost_exceeded: int = 0
    errors_5xx: int = 0
    timeouts: int = 0
    lost_responses: int = 0
    races: int = 0
    unreachable: int = 0
    webhooks_sent: int = 0
    webhooks_failed_attempts: int = 0
    webhooks_dropped: int = 0
    webhooks_duplicated: int = 0
    webhooks_delayed: int = 0
    webhooks_reordered: int = 0
    subscriptions_removed: int = 0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["points_spent"] = round(self.points_spent, 3)
        return data
