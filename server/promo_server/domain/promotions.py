"""Promotions: what they are made of and every rule a valid one obeys."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from promo_server.domain.errors import FieldViolation, InvalidArgument, Violations
from promo_server.domain.values import (
    ATTRIBUTE,
    LOCALE,
    MAX_TEXT,
    amount_problem,
    currency_problem,
    decimal_problem,
    external_id_problem,
    parse_rfc3339,
    percent_problem,
    text_problem,
)

ACTIVE = "ACTIVE"
INACTIVE = "INACTIVE"
STATES = (ACTIVE, INACTIVE)

OPERATORS = ("EQ", "NE", "GT", "GE", "LT", "LE")
STRING_OPERATORS = ("EQ", "NE")
ATTRIBUTE_TYPES = ("STRING", "NUMBER", "DATE")
MAX_ATTRIBUTE_CONDITIONS = 100
# Entries of every other list (and locales of the name): far more than a promotion
# needs, and few enough that the largest promotion (about 2 MB) fits in a reply.
MAX_ENTRIES = 1000
_LISTS = ("name", "discounted_items", "bonus", "price_conditions", "item_price_conditions",
          "excluded_promotions")


@dataclass(frozen=True)
class Discount:
    """``percent``, or ``amount`` in ``currency``: exactly one of the two."""

    percent: str = ""
    amount: str = ""
    currency: str = ""


@dataclass(frozen=True)
class DiscountedItem:
    sku: str
    discount: Discount | None


@dataclass(frozen=True)
class BonusItem:
    sku: str
    quantity: int


@dataclass(frozen=True)
class AttributeCondition:
    attribute: str
    type: str
    operator: str
    value: str
    can_be_missing: bool = False


@dataclass(frozen=True)
class PriceCondition:
    operator: str
    value: str


@dataclass
class Promotion:
    """A promotion as callers define it; enum fields hold the proto value names."""

    external_id: str
    name: dict[str, str] = field(default_factory=dict)
    state: str = ACTIVE
    start_time: datetime | None = None
    end_time: datetime | None = None
    redeem_total_limit: int | None = None
    redeem_user_limit: int | None = None
    redeem_code_limit: int | None = None
    discount: Discount | None = None
    discounted_items: list[DiscountedItem] = field(default_factory=list)
    bonus: list[BonusItem] = field(default_factory=list)
    attribute_conditions: list[AttributeCondition] = field(default_factory=list)
    price_conditions: list[PriceCondition] = field(default_factory=list)
    item_price_conditions: list[PriceCondition] = field(default_factory=list)
    excluded_promotions: list[str] = field(default_factory=list)
    low_stock_threshold: int | None = None
    create_time: datetime | None = None
    update_time: datetime | None = None
    redemption_count: int = 0
    available_code_count: int = 0


OUTPUT_ONLY = frozenset({"create_time", "update_time", "redemption_count", "available_code_count"})
IMMUTABLE = frozenset({"external_id"})
MUTABLE = tuple(
    f.name for f in dataclasses.fields(Promotion) if f.name not in OUTPUT_ONLY | IMMUTABLE
)


def validate(promotion: Promotion, prefix: str = "promotion") -> list[FieldViolation]:
    """Every rule of the contract; returns all violations, each with its path."""
    out = Violations()
    p = prefix
    if problem := external_id_problem(promotion.external_id):
        out.add(f"{p}.external_id", problem)
    _check_name(promotion.name, f"{p}.name", out)
    for name in _LISTS:
        if len(getattr(promotion, name)) > MAX_ENTRIES:
            out.add(f"{p}.{name}", f"at most {MAX_ENTRIES:,} entries are allowed")
    if promotion.state not in STATES:
        out.add(f"{p}.state", "must be ACTIVE or INACTIVE")
    if (
        promotion.start_time is not None
        and promotion.end_time is not None
        and promotion.end_time <= promotion.start_time
    ):
        out.add(f"{p}.end_time", "must be after start_time")
    for limit in ("redeem_total_limit", "redeem_user_limit", "redeem_code_limit"):
        value = getattr(promotion, limit)
        if value is not None and value < 1:
            out.add(f"{p}.{limit}", "must be at least 1 when set (leave it unset for no limit)")
    if promotion.discount is not None:
        _check_discount(promotion.discount, f"{p}.discount", out)
    _check_discounted_items(promotion, p, out)
    for i, bonus in enumerate(promotion.bonus):
        if problem := text_problem(bonus.sku):
            out.add(f"{p}.bonus[{i}].sku", problem)
        if bonus.quantity < 1:
            out.add(f"{p}.bonus[{i}].quantity", "must be at least 1")
    _check_attribute_conditions(promotion.attribute_conditions, f"{p}.attribute_conditions", out)
    for name in ("price_conditions", "item_price_conditions"):
        for i, condition in enumerate(getattr(promotion, name)):
            _check_price_condition(condition, f"{p}.{name}[{i}]", out)
    for i, excluded in enumerate(promotion.excluded_promotions):
        if problem := external_id_problem(excluded):
            out.add(f"{p}.excluded_promotions[{i}]", problem)
        elif excluded == promotion.external_id:
            out.add(f"{p}.excluded_promotions[{i}]", "a promotion cannot exclude itself")
    if promotion.low_stock_threshold is not None and (
        problem := low_stock_threshold_problem(promotion.low_stock_threshold)
    ):
        out.add(f"{p}.low_stock_threshold", problem)
    return out.items


def low_stock_threshold_problem(threshold: int) -> str | None:
    """What is wrong with a pool's low-stock threshold (a promotion's or the global pool's)."""
    if threshold < 0:
        return "must be 0 or more when set (leave it unset for no low-stock warning)"
    return None


def is_low_stock(available: int, threshold: int | None) -> bool:
    """Whether a pool holding ``available`` codes is under its threshold (None: never)."""
    return threshold is not None and available < threshold


def require_valid(promotion: Promotion, known: Sequence[FieldViolation] = ()) -> None:
    """Raises InvalidArgument naming every bad field, ``known`` ones first."""
    violations = [*known, *validate(promotion)]
    if violations:
        raise InvalidArgument(violations)


def _check_name(name: dict[str, str], path: str, out: Violations) -> None:
    if not name:
        out.add(path, "at least one entry is required")
    for locale, text in sorted(name.items()):
        if not LOCALE.fullmatch(locale):
            out.add(f"{path}[{locale!r}]", "the locale must match ^[a-z]{2}-[A-Z]{2}$ (en-US)")
        elif problem := text_problem(text):
            out.add(f"{path}[{locale!r}]", problem)


def _check_discount(discount: Discount, path: str, out: Violations) -> None:
    if discount.percent and discount.amount:
        out.add(path, "set either percent or amount, not both")
    elif discount.percent:
        if problem := percent_problem(discount.percent):
            out.add(f"{path}.percent", problem)
        if discount.currency:
            out.add(f"{path}.currency", "goes with amount only")
    elif discount.amount:
        if problem := amount_problem(discount.amount):
            out.add(f"{path}.amount", problem)
        elif not any(ch in "123456789" for ch in discount.amount):
            out.add(f"{path}.amount", "must be greater than 0")
        if not discount.currency:
            out.add(f"{path}.currency", "is required with amount")
        elif problem := currency_problem(discount.currency):
            out.add(f"{path}.currency", problem)
    else:
        out.add(path, "set percent, or amount and currency")


def _check_discounted_items(promotion: Promotion, p: str, out: Violations) -> None:
    if promotion.discounted_items and (
        promotion.price_conditions or promotion.item_price_conditions
    ):
        out.add(
            f"{p}.discounted_items",
            "cannot be combined with price_conditions or item_price_conditions",
        )
    seen: set[str] = set()
    for i, item in enumerate(promotion.discounted_items):
        path = f"{p}.discounted_items[{i}]"
        if problem := text_problem(item.sku):
            out.add(f"{path}.sku", problem)
        elif item.sku in seen:
            out.add(f"{path}.sku", f"{item.sku!r} is listed twice")
        seen.add(item.sku)
        if item.discount is None:
            out.add(f"{path}.discount", "is required")
        else:
            _check_discount(item.discount, f"{path}.discount", out)


def _check_attribute_conditions(
    conditions: list[AttributeCondition], path: str, out: Violations
) -> None:
    if len(conditions) > MAX_ATTRIBUTE_CONDITIONS:
        out.add(path, f"at most {MAX_ATTRIBUTE_CONDITIONS} conditions are allowed")
        return
    for i, condition in enumerate(conditions):
        at = f"{path}[{i}]"
        if not ATTRIBUTE.fullmatch(condition.attribute):
            out.add(f"{at}.attribute", "must be 1..255 characters of [-_.A-Za-z0-9]")
        if condition.type not in ATTRIBUTE_TYPES:
            out.add(f"{at}.type", "must be STRING, NUMBER or DATE")
        if condition.operator not in OPERATORS:
            out.add(f"{at}.operator", "must be one of EQ, NE, GT, GE, LT, LE")
        elif condition.type == "STRING" and condition.operator not in STRING_OPERATORS:
            out.add(f"{at}.operator", "a STRING condition allows EQ and NE only")
        if problem := _condition_value_problem(condition):
            out.add(f"{at}.value", problem)


def _condition_value_problem(condition: AttributeCondition) -> str | None:
    if problem := text_problem(condition.value, limit=MAX_TEXT, required=False):
        return problem
    if condition.type == "NUMBER":
        return decimal_problem(condition.value)
    if condition.type == "DATE" and parse_rfc3339(condition.value) is None:
        return "must be an RFC 3339 date-time (2026-01-31T00:00:00Z)"
    return None


def _check_price_condition(condition: PriceCondition, path: str, out: Violations) -> None:
    if condition.operator not in OPERATORS:
        out.add(f"{path}.operator", "must be one of EQ, NE, GT, GE, LT, LE")
    if problem := amount_problem(condition.value):
        out.add(f"{path}.value", problem)
