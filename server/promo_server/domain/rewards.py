"""The reward engine: whether a promotion applies to a cart, and what it gives.

Plain arithmetic on ``decimal.Decimal`` so that ValidateCode, ActivateCode and the
tests agree to the cent. Where the contract is silent, it is read as a checkout
expects:

- A line total (unit_price x quantity) is rounded to cents where it is made, as on
  an invoice, and the cart total is the sum of those lines. So every reward adds up:
  the items' discounts sum to ``discount_total`` and their final prices to
  ``final_total``, even for unit prices with four decimals.
- An item discount never exceeds its line: with sub-cent unit prices, a rounded
  per-unit discount times the quantity can come out above the rounded line total.
- ``discounted_items`` apply first; a cart-wide ``discount`` then applies to what the
  picked lines have left, so the two never discount the same cent twice.
- An amount ``DiscountedItem`` is rounded per unit, then multiplied, as the contract
  says of an item percent.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Context, Decimal, localcontext
from typing import Any

from promo_server.domain.errors import Violations
from promo_server.domain.promotions import (
    AttributeCondition,
    BonusItem,
    Discount,
    PriceCondition,
    Promotion,
)
from promo_server.domain.values import (
    DECIMAL,
    amount_problem,
    currency_problem,
    parse_rfc3339,
    text_problem,
)

PROMOTION_EXCLUDED = "PROMOTION_EXCLUDED"
CONDITIONS_NOT_MET = "CONDITIONS_NOT_MET"

MAX_QUANTITY = 1_000_000
# Far above any real price, and small enough that _ARITHMETIC below stays exact.
PRICE_CEILING = 10**15

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
# A cart parse_cart accepts has line totals below 10**21 and (in a gRPC message)
# fewer than 10**7 lines; the widest product made below, a cart-wide discount times
# a line, has about 64 digits. With 100 digits every sum and product is exact, and
# the one division (in _spread) keeps far more digits than its rounding to cents needs.
_ARITHMETIC = Context(prec=100, rounding=ROUND_HALF_UP)

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "EQ": operator.eq,
    "NE": operator.ne,
    "GT": operator.gt,
    "GE": operator.ge,
    "LT": operator.lt,
    "LE": operator.le,
}


@dataclass(frozen=True)
class CartItem:
    sku: str
    quantity: int
    unit_price: Decimal


@dataclass(frozen=True)
class Cart:
    currency: str
    items: tuple[CartItem, ...]


@dataclass(frozen=True)
class RewardItem:
    """One cart line as rewarded; every amount is in cents."""

    sku: str
    quantity: int
    unit_price: Decimal
    discount: Decimal
    final_price: Decimal


@dataclass(frozen=True)
class Reward:
    """What a promotion gives a cart; every amount is in cents and they add up."""

    cart_total: Decimal
    discount_total: Decimal
    final_total: Decimal
    items: tuple[RewardItem, ...]
    bonus: tuple[BonusItem, ...]


class Refused(Exception):
    """The promotion does not apply to this cart: ``reason`` is the contract's
    ErrorInfo reason, ``message`` says which rule failed, for a human."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def money(value: Decimal) -> str:
    """The contract writes every Reward amount with exactly two decimals."""
    # The context given, not a local one entered: money() runs several times a call.
    return f"{value.quantize(CENT, rounding=ROUND_HALF_UP, context=_ARITHMETIC):f}"


def parse_cart(currency: str, items: Sequence[tuple[str, int, str]], path: str = "cart") -> Cart:
    """A Cart from the request's strings; raises InvalidArgument naming every bad field,
    so a caller fixes the whole cart in one round trip."""
    out = Violations()
    if problem := currency_problem(currency):
        out.add(f"{path}.currency", problem)
    if not items:
        out.add(f"{path}.items", "at least one item is required")
    parsed: list[CartItem] = []
    for i, (sku, quantity, unit_price) in enumerate(items):
        at = f"{path}.items[{i}]"
        if problem := text_problem(sku):
            out.add(f"{at}.sku", problem)
        if not 1 <= quantity <= MAX_QUANTITY:
            out.add(f"{at}.quantity", f"must be between 1 and {MAX_QUANTITY:,}")
        if problem := _price_problem(unit_price):
            out.add(f"{at}.unit_price", problem)
        else:
            parsed.append(CartItem(sku, quantity, Decimal(unit_price)))
    out.raise_if_any()
    return Cart(currency, tuple(parsed))


def evaluate(
    promotion: Promotion,
    cart: Cart,
    attributes: Mapping[str, str],
    applied: Mapping[str, Sequence[str]],
) -> Reward:
    """The reward of ``promotion`` on ``cart``, or Refused with the first rule it fails,
    checked in the contract's order: exclusions, attributes, price, item price, and
    last whether anything is left to give.

    ``attributes`` are the request's over the profile's; ``applied`` maps each promotion
    already applied to the cart to the promotions it excludes.
    """
    _check_exclusions(promotion, applied)
    for condition in promotion.attribute_conditions:
        if problem := _attribute_problem(condition, attributes.get(condition.attribute)):
            raise Refused(CONDITIONS_NOT_MET, problem)
    with localcontext(_ARITHMETIC):
        return _reward(promotion, cart)


def _price_problem(value: str) -> str | None:
    if problem := amount_problem(value):
        return problem
    if Decimal(value) >= PRICE_CEILING:
        return f"must be below {PRICE_CEILING:,}"
    return None


def undiscounted(cart: Cart) -> Reward:
    """The reward of no promotion: the cart's totals, as ``evaluate`` adds them up, and no
    discount (a global-pool code that was never issued for a promotion)."""
    lines = _line_totals(cart)
    total = sum(lines, ZERO)
    items = tuple(
        RewardItem(item.sku, item.quantity, _cents(item.unit_price), ZERO, line)
        for item, line in zip(cart.items, lines, strict=True)
    )
    return Reward(total, ZERO, total, items, ())


def _line_totals(cart: Cart) -> list[Decimal]:
    """Each line's price, in cents: the cart total is their sum."""
    return [_cents(item.unit_price * item.quantity) for item in cart.items]


def _cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _holds(left: object, op: str, right: object) -> bool:
    return _COMPARE[op](left, right)


def _check_exclusions(promotion: Promotion, applied: Mapping[str, Sequence[str]]) -> None:
    # The promotion itself among the applied ones is not an exclusion: a checkout
    # re-validates its codes with the full list of what the cart carries.
    for applied_id, excluded in applied.items():
        if promotion.external_id in excluded:
            raise Refused(
                PROMOTION_EXCLUDED,
                f"applied promotion {applied_id!r} excludes {promotion.external_id!r}",
            )
        if applied_id in promotion.excluded_promotions:
            raise Refused(
                PROMOTION_EXCLUDED,
                f"{promotion.external_id!r} excludes applied promotion {applied_id!r}",
            )


def _attribute_problem(condition: AttributeCondition, value: str | None) -> str | None:
    name = condition.attribute
    if value is None:
        return None if condition.can_be_missing else f"attribute {name!r} is missing"
    left = _typed(condition.type, value)
    right = _typed(condition.type, condition.value)
    if left is None or right is None:
        return f"attribute {name!r} = {value!r} is not a {condition.type.lower()}"
    if not _holds(left, condition.operator, right):
        return f"attribute {name!r} = {value!r} is not {condition.operator} {condition.value!r}"
    return None


def _typed(type_: str, text: str) -> str | Decimal | tuple[datetime, int] | None:
    """The attribute text as its condition compares it; None when it is not one."""
    if type_ == "NUMBER":
        return Decimal(text) if DECIMAL.fullmatch(text) else None
    if type_ == "DATE":
        return _instant(text)
    return text


def _instant(text: str) -> tuple[datetime, int] | None:
    """An RFC 3339 date-time as (UTC second, nanoseconds): compared to the nanosecond
    RFC 3339 may give, where a datetime keeps only microseconds."""
    moment = parse_rfc3339(text)
    if moment is None:
        return None
    fraction = text[19:].partition(".")[2]
    digits = "".join(itertools.takewhile(str.isdigit, fraction))
    return moment.astimezone(UTC).replace(microsecond=0), int(digits.ljust(9, "0"))


def _reward(promotion: Promotion, cart: Cart) -> Reward:
    lines = _line_totals(cart)
    cart_total = sum(lines, ZERO)
    for condition in promotion.price_conditions:
        if not _holds(cart_total, condition.operator, Decimal(condition.value)):
            raise Refused(
                CONDITIONS_NOT_MET,
                f"the cart total {cart_total} is not {condition.operator} {condition.value}",
            )
    picked = _picked(promotion.item_price_conditions, cart.items)
    discounts = _item_discounts(promotion, cart, lines)
    remaining = [
        line - discount if chosen else ZERO
        for line, discount, chosen in zip(lines, discounts, picked, strict=True)
    ]
    cart_wide = _discount_on(promotion.discount, sum(remaining, ZERO), cart.currency)
    discounts = [
        discount + share
        for discount, share in zip(discounts, _spread(cart_wide, remaining), strict=True)
    ]
    discount_total = sum(discounts, ZERO)
    if not discount_total and not promotion.bonus:
        raise Refused(
            CONDITIONS_NOT_MET,
            f"{promotion.external_id!r} has nothing to give this cart "
            "(no discounted item in it, or a discount in another currency)",
        )
    items = tuple(
        RewardItem(item.sku, item.quantity, _cents(item.unit_price), discount, line - discount)
        for item, line, discount in zip(cart.items, lines, discounts, strict=True)
    )
    return Reward(
        cart_total, discount_total, cart_total - discount_total, items, tuple(promotion.bonus)
    )


def _picked(conditions: Sequence[PriceCondition], items: Sequence[CartItem]) -> list[bool]:
    """Which lines a cart-wide discount applies to: those whose unit price meets every
    item price condition (all of them when there are none)."""
    picked = [
        all(_holds(item.unit_price, c.operator, Decimal(c.value)) for c in conditions)
        for item in items
    ]
    if conditions and not any(picked):
        wanted = " and ".join(f"{c.operator} {c.value}" for c in conditions)
        raise Refused(CONDITIONS_NOT_MET, f"no cart item has a unit price {wanted}")
    return picked


def _item_discounts(promotion: Promotion, cart: Cart, lines: Sequence[Decimal]) -> list[Decimal]:
    """Each line's discount from ``discounted_items``: per unit, rounded, times the
    quantity, and never more than the line."""
    by_sku = {item.sku: item.discount for item in promotion.discounted_items}
    return [
        min(
            _discount_on(by_sku.get(item.sku), item.unit_price, cart.currency) * item.quantity, line
        )
        for item, line in zip(cart.items, lines, strict=True)
    ]


def _discount_on(discount: Discount | None, base: Decimal, currency: str) -> Decimal:
    """What ``discount`` takes off ``base``, in cents: a percent rounded once; an amount
    only in its own currency and never more than ``base``."""
    if discount is None:
        return ZERO
    if discount.percent:
        return _cents(base * Decimal(discount.percent) / 100)
    if discount.currency != currency:
        return ZERO
    return _cents(min(Decimal(discount.amount), base))


def _spread(total: Decimal, weights: Sequence[Decimal]) -> list[Decimal]:
    """``total`` shared over lines in proportion to ``weights``, each share rounded half
    up, summing exactly to ``total``.

    The rounding remainder goes on the largest line (the first of equals). Should that
    line not absorb it without its share leaving 0..weight (a negative share, or more
    than the line holds), the rest goes on the next largest, and so on; ``total`` never
    exceeds the sum of the weights, so there is always room.
    """
    base = sum(weights, ZERO)
    if not base:  # nothing left to discount, so total is zero as well
        return [ZERO for _ in weights]
    shares = [_cents(total * weight / base) for weight in weights]
    left = total - sum(shares, ZERO)
    for i in sorted(range(len(weights)), key=lambda i: (-weights[i], i)):
        step = min(max(left, -shares[i]), weights[i] - shares[i])
        shares[i] += step
        left -= step
    return shares
