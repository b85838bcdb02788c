"""A connection's settings: what a destination chose for the products it copies from a source."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Literal

FieldMode = Literal["sync", "create_only", "ignore"]
FIELD_MODES: tuple[FieldMode, ...] = ("sync", "create_only", "ignore")

# The product fields a destination may let follow the source (B9). Inventory always syncs.
SYNC_FIELDS: tuple[str, ...] = (
    "price",
    "compare_at_price",
    "title",
    "description",
    "images",
    "tags",
    "vendor",
    "product_type",
    "weight",
    "barcode",
    "publish_status",
    "variants",
)

HiddenAction = Literal["keep", "unpublish", "archive"]
DeletedAction = Literal["keep", "unpublish", "archive", "delete"]
HIDDEN_ACTIONS: tuple[HiddenAction, ...] = ("keep", "unpublish", "archive")
DELETED_ACTIONS: tuple[DeletedAction, ...] = ("keep", "unpublish", "archive", "delete")
PRICE_RULE_FIELDS = ("currency_rate", "multiplier", "add", "ending")


class SettingsError(ValueError):
    """A setting has a value it cannot take; the message says which and why."""


def _default_field_sync() -> dict[str, FieldMode]:
    return {name: ("sync" if name == "price" else "create_only") for name in SYNC_FIELDS}


@dataclass(frozen=True)
class PriceRules:
    """B10: applied whenever price is synced, in this order: rate, multiplier, add, ending."""

    currency_rate: Decimal = Decimal(1)
    multiplier: Decimal = Decimal(1)
    add: Decimal = Decimal(0)
    ending: Decimal | None = None  # e.g. 0.99: round up to the next price ending in .99

    def __post_init__(self) -> None:
        # Checked here, not when a price is synced: NaN, a zero rate or an ending of 1.5 would
        # otherwise be stored and make every later price sync fail or go wrong.
        values = [self.currency_rate, self.multiplier, self.add]
        if self.ending is not None:
            values.append(self.ending)
        if not all(isinstance(v, Decimal) and v.is_finite() for v in values):
            raise SettingsError("price rules must be finite decimal numbers")
        if self.currency_rate <= 0:
            raise SettingsError("price rules: currency_rate must be more than zero")
        if self.multiplier <= 0:
            raise SettingsError("price rules: multiplier must be more than zero")
        if self.ending is not None and not 0 <= self.ending < 1:
            raise SettingsError("price rules: ending must be from 0.00 to 0.99 (e.g. 0.99)")

    def apply(self, price: Decimal) -> Decimal:
        value = price * self.currency_rate * self.multiplier + self.add
        value = value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        if self.ending is not None:
            whole = value.to_integral_value(rounding="ROUND_FLOOR")
            candidate = whole + self.ending
            if candidate < value:
                candidate += 1
            value = candidate
        return max(value, Decimal(0))


@dataclass(frozen=True)
class ConnectionSettings:
    # B15: which financial states count a destination order against the source. Paid (and
    # states only reachable from paid) always count.
    count_authorized: bool = False
    count_partially_paid: bool = False
    count_pending: bool = False
    safety_buffer: int = 0  # B20
    field_sync: Mapping[str, FieldMode] = field(default_factory=_default_field_sync)
    price_rules: PriceRules = field(default_factory=PriceRules)
    on_hidden: HiddenAction = "keep"  # B6
    on_source_deleted: DeletedAction = "keep"  # B13

    def __post_init__(self) -> None:
        # Settings come from JSON: a wrong type must be refused with a reason, not stored
        # (a text buffer, or "yes" taken as true) nor fail later with a TypeError.
        for name in ("count_authorized", "count_partially_paid", "count_pending"):
            if not isinstance(getattr(self, name), bool):
                raise SettingsError(f"{name} must be true or false")
        if isinstance(self.safety_buffer, bool) or not isinstance(self.safety_buffer, int):
            raise SettingsError("safety_buffer must be a whole number")
        if self.safety_buffer < 0:
            raise SettingsError("safety_buffer must be zero or more")
        if self.on_hidden not in HIDDEN_ACTIONS:
            raise SettingsError(f"on_hidden must be one of {HIDDEN_ACTIONS}")
        if self.on_source_deleted not in DELETED_ACTIONS:
            raise SettingsError(f"on_source_deleted must be one of {DELETED_ACTIONS}")
        if not isinstance(self.price_rules, PriceRules):
            raise SettingsError("price_rules must be a set of price rules")
        for name, mode in self.field_sync.items():
            if name not in SYNC_FIELDS:
                raise SettingsError(f"unknown sync field {name!r}")
            if mode not in FIELD_MODES:
                raise SettingsError(f"field {name!r}: mode must be one of {FIELD_MODES}")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["field_sync"] = dict(self.field_sync)
        rules = self.price_rules
        data["price_rules"] = {
            "currency_rate": str(rules.currency_rate),
            "multiplier": str(rules.multiplier),
            "add": str(rules.add),
            "ending": None if rules.ending is None else str(rules.ending),
        }
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> ConnectionSettings:
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise SettingsError(f"unknown settings: {', '.join(sorted(unknown))}")
        merged = _default_field_sync()
        merged.update(data.pop("field_sync", None) or {})
        rules_data = data.pop("price_rules", None) or {}
        unknown_rules = set(rules_data) - set(PRICE_RULE_FIELDS)
        if unknown_rules:  # a misspelt rule must not be dropped silently
            raise SettingsError(f"unknown price rules: {', '.join(sorted(unknown_rules))}")
        try:
            rules = PriceRules(
                currency_rate=Decimal(str(rules_data.get("currency_rate", "1"))),
                multiplier=Decimal(str(rules_data.get("multiplier", "1"))),
                add=Decimal(str(rules_data.get("add", "0"))),
                ending=(
                    None
                    if rules_data.get("ending") in (None, "")
                    else Decimal(str(rules_data["ending"]))
                ),
            )
        except InvalidOperation as exc:
            raise SettingsError(f"price rules must be decimal numbers: {exc}") from None
        return cls(field_sync=merged, price_rules=rules, **data)

    def with_changes(self, **changes: Any) -> ConnectionSettings:
        return replace(self, **changes)
