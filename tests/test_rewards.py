"""The reward engine as plain functions: carts, conditions, exclusions and the arithmetic.

Every expected amount below was worked out by hand; the comment beside it shows how.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promo_server.domain.errors import InvalidArgument
from promo_server.domain.promotions import (
    OPERATORS,
    AttributeCondition,
    BonusItem,
    Discount,
    DiscountedItem,
    PriceCondition,
    Promotion,
    validate,
)
from promo_server.domain.rewards import (
    CONDITIONS_NOT_MET,
    PROMOTION_EXCLUDED,
    Cart,
    CartItem,
    Refused,
    Reward,
    RewardItem,
    evaluate,
    money,
    parse_cart,
    undiscounted,
)

PROMOTION = "spring"
Line = tuple[str, int, str]
# cart_total, discount_total, final_total, each item's discount, bonus (sku, quantity)
Summary = tuple[str, str, str, tuple[str, ...], tuple[tuple[str, int], ...]]


def promo(**fields: Any) -> Promotion:
    return Promotion(external_id=PROMOTION, name={"en-US": "Spring"}, **fields)


def percent(value: str) -> Discount:
    return Discount(percent=value)


def amount(value: str, currency: str = "USD") -> Discount:
    return Discount(amount=value, currency=currency)


def reward(
    promotion: Promotion,
    lines: Sequence[Line],
    currency: str = "USD",
    attributes: Mapping[str, str] | None = None,
    applied: Mapping[str, Sequence[str]] | None = None,
) -> Reward:
    return evaluate(promotion, parse_cart(currency, lines), attributes or {}, applied or {})


def refusal(
    promotion: Promotion,
    lines: Sequence[Line] = (("A", 1, "10.00"),),
    currency: str = "USD",
    attributes: Mapping[str, str] | None = None,
    applied: Mapping[str, Sequence[str]] | None = None,
) -> Refused:
    with pytest.raises(Refused) as raised:
        reward(promotion, lines, currency, attributes, applied)
    return raised.value


def summary(result: Reward) -> Summary:
    return (
        money(result.cart_total),
        money(result.discount_total),
        money(result.final_total),
        tuple(money(item.discount) for item in result.items),
        tuple((bonus.sku, bonus.quantity) for bonus in result.bonus),
    )


GIFT = BonusItem("gift", 1)

REWARDS = [
    pytest.param(
        promo(discount=percent("15")),
        [("A", 3, "33.33")],
        "USD",
        # 99.99 * 0.15 = 14.9985 -> 15.00, rounded once
        ("99.99", "15.00", "84.99", ("15.00",), ()),
        id="cart-percent-rounded-once",
    ),
    pytest.param(
        promo(discounted_items=[DiscountedItem("A", percent("15"))]),
        [("A", 3, "33.33")],
        "USD",
        # 33.33 * 0.15 = 4.9995 -> 5.00 per unit, x3 = 15.00
        ("99.99", "15.00", "84.99", ("15.00",), ()),
        id="item-percent-rounded-per-unit",
    ),
    pytest.param(
        promo(discount=percent("10")),
        [("A", 1, "0.05")],
        "USD",
        # 0.05 * 0.10 = 0.005 -> 0.01 (half up)
        ("0.05", "0.01", "0.04", ("0.01",), ()),
        id="half-a-cent-rounds-up",
    ),
    pytest.param(
        promo(
            discounted_items=[
                DiscountedItem("A", percent("25")),
                DiscountedItem("B", percent("10")),
            ]
        ),
        [("A", 2, "19.99"), ("B", 3, "5.55"), ("C", 1, "7.00")],
        "USD",
        # A 19.99*.25=4.9975->5.00 x2=10.00; B 5.55*.10=.555->.56 x3=1.68; 39.98+16.65+7.00
        ("63.63", "11.68", "51.95", ("10.00", "1.68", "0.00"), ()),
        id="item-percents-with-quantities",
    ),
    pytest.param(
        promo(discounted_items=[DiscountedItem("A", amount("1.50"))]),
        [("A", 3, "4.00"), ("B", 1, "2.00")],
        "USD",
        # 1.50 x3 = 4.50 off A; 12.00 + 2.00 = 14.00
        ("14.00", "4.50", "9.50", ("4.50", "0.00"), ()),
        id="item-amount-per-unit",
    ),
    pytest.param(
        promo(discounted_items=[DiscountedItem("A", amount("5.00"))]),
        [("A", 3, "4.00")],
        "USD",
        # min(5.00, 4.00) = 4.00 per unit, x3 = 12.00
        ("12.00", "12.00", "0.00", ("12.00",), ()),
        id="item-amount-capped-at-unit-price",
    ),
    pytest.param(
        promo(discount=amount("50")),
        [("A", 2, "10.00")],
        "USD",
        # min(50.00, 20.00) = 20.00
        ("20.00", "20.00", "0.00", ("20.00",), ()),
        id="amount-above-cart-total",
    ),
    pytest.param(
        promo(discount=amount("10")),
        [("A", 1, "30.00"), ("B", 1, "10.00")],
        "USD",
        # A 30/40 * 10 = 7.50, B 10/40 * 10 = 2.50
        ("40.00", "10.00", "30.00", ("7.50", "2.50"), ()),
        id="amount-spread-by-line-total",
    ),
    pytest.param(
        promo(discount=amount("1.0050")),
        [("A", 1, "10.00")],
        "USD",
        # 1.005 -> 1.01
        ("10.00", "1.01", "8.99", ("1.01",), ()),
        id="four-decimal-amount-rounded",
    ),
    pytest.param(
        promo(discount=percent("100")),
        [("A", 2, "9.99"), ("B", 1, "0.01")],
        "USD",
        # 19.98 + 0.01 = 19.99, all of it
        ("19.99", "19.99", "0.00", ("19.98", "0.01"), ()),
        id="percent-100",
    ),
    pytest.param(
        promo(discount=amount("5", "EUR"), bonus=[GIFT]),
        [("A", 1, "10.00")],
        "USD",
        # EUR amount on a USD cart: 0.00, the gift still comes
        ("10.00", "0.00", "10.00", ("0.00",), (("gift", 1),)),
        id="amount-other-currency-with-bonus",
    ),
    pytest.param(
        promo(bonus=[BonusItem("gift", 2)]),
        [("A", 1, "10.00")],
        "USD",
        # no discount at all
        ("10.00", "0.00", "10.00", ("0.00",), (("gift", 2),)),
        id="bonus-only",
    ),
    pytest.param(
        promo(discount=percent("10"), bonus=[GIFT]),
        [("A", 1, "10.00")],
        "EUR",
        # 10.00 * 0.10 = 1.00; a percent knows no currency
        ("10.00", "1.00", "9.00", ("1.00",), (("gift", 1),)),
        id="percent-with-bonus",
    ),
    pytest.param(
        promo(discount=percent("10"), item_price_conditions=[PriceCondition("GE", "50.00")]),
        [("A", 1, "80.00"), ("B", 2, "20.00"), ("C", 1, "50.00")],
        "USD",
        # picked A, C: 130.00 * .10 = 13.00; A 80/130*13 = 8.00, C 50/130*13 = 5.00
        ("170.00", "13.00", "157.00", ("8.00", "0.00", "5.00"), ()),
        id="item-price-ge-50-picks",
    ),
    pytest.param(
        promo(
            discount=percent("50"),
            item_price_conditions=[PriceCondition("GT", "10"), PriceCondition("LT", "100")],
        ),
        [("A", 1, "5.00"), ("B", 1, "20.00"), ("C", 1, "100.00")],
        "USD",
        # only B is in (10, 100): 20.00 * .50 = 10.00
        ("125.00", "10.00", "115.00", ("0.00", "10.00", "0.00"), ()),
        id="item-price-conditions-all-hold",
    ),
    pytest.param(
        promo(
            discount=percent("10"),
            price_conditions=[PriceCondition("GE", "100")],
            item_price_conditions=[PriceCondition("GE", "50")],
        ),
        [("A", 1, "60.00"), ("B", 4, "10.00")],
        "USD",
        # total 60 + 40 = 100.00 passes GE 100; only A picked: 60.00 * .10 = 6.00
        ("100.00", "6.00", "94.00", ("6.00", "0.00"), ()),
        id="price-condition-reads-whole-cart",
    ),
    pytest.param(
        promo(discount=percent("10")),
        [("A", 1, "3.33"), ("B", 1, "3.33"), ("C", 1, "3.34")],
        "USD",
        # 1.00 over 10.00: .333->.33, .333->.33, .334->.33 = .99; +.01 on C, the largest
        ("10.00", "1.00", "9.00", ("0.33", "0.33", "0.34"), ()),
        id="spread-remainder-on-largest",
    ),
    pytest.param(
        promo(discount=amount("0.06")),
        [("A", 1, "1.00"), ("B", 1, "1.00"), ("C", 1, "1.00"), ("D", 1, "1.00"), ("E", 1, "4.00")],
        "USD",
        # .06/8 = .0075->.01 x4, E .06*4/8 = .03; .07 is .01 too many, taken off E
        ("8.00", "0.06", "7.94", ("0.01", "0.01", "0.01", "0.01", "0.02"), ()),
        id="spread-negative-remainder-on-largest",
    ),
    pytest.param(
        promo(discount=amount("0.02")),
        [("A", 1, "1.00"), ("B", 1, "1.00"), ("C", 1, "1.00"), ("D", 1, "1.00")],
        "USD",
        # .02/4 = .005->.01 x4 = .04; -.02 to place: A (first of the largest) and B go to 0
        ("4.00", "0.02", "3.98", ("0.00", "0.00", "0.01", "0.01"), ()),
        id="spread-never-below-zero",
    ),
    pytest.param(
        promo(discount=percent("10"), discounted_items=[DiscountedItem("A", percent("20"))]),
        [("A", 1, "100.00"), ("B", 1, "50.00")],
        "USD",
        # A 20.00 first; then 10% of 80 + 50 = 13.00: A 8.00, B 5.00
        ("150.00", "33.00", "117.00", ("28.00", "5.00"), ()),
        id="item-discount-then-cart-wide",
    ),
    pytest.param(
        promo(discount=percent("10")),
        [("A", 3, "0.3333")],
        "USD",
        # line 0.9999 -> 1.00; 1.00 * .10 = 0.10
        ("1.00", "0.10", "0.90", ("0.10",), ()),
        id="sub-cent-line-rounded-first",
    ),
    pytest.param(
        promo(discounted_items=[DiscountedItem("A", percent("100"))]),
        [("A", 3, "0.005")],
        "USD",
        # line 0.015 -> 0.02; per unit 0.005 -> 0.01 x3 = 0.03, capped at the line
        ("0.02", "0.02", "0.00", ("0.02",), ()),
        id="item-discount-capped-at-line",
    ),
    pytest.param(
        promo(discount=percent("10"), discounted_items=[DiscountedItem("A", percent("100"))]),
        [("A", 3, "0.005"), ("B", 1, "10.00")],
        "USD",
        # A as above 0.02, nothing left of it; 10% of B's 10.00 = 1.00; 0.02 + 10.00 = 10.02
        ("10.02", "1.02", "9.00", ("0.02", "1.00"), ()),
        id="capped-item-then-cart-wide",
    ),
]


@pytest.mark.parametrize(("promotion", "lines", "currency", "expected"), REWARDS)
def test_reward_worked_by_hand(
    promotion: Promotion, lines: list[Line], currency: str, expected: Summary
) -> None:
    assert summary(reward(promotion, lines, currency)) == expected


REFUSALS = [
    pytest.param(promo(discount=amount("5", "EUR")), [("A", 1, "10.00")], id="amount-in-eur"),
    pytest.param(
        promo(discounted_items=[DiscountedItem("A", amount("1", "EUR"))]),
        [("A", 1, "10.00")],
        id="item-amount-in-eur",
    ),
    pytest.param(
        promo(discounted_items=[DiscountedItem("Z", percent("10"))]),
        [("A", 1, "10.00")],
        id="discounted-sku-absent",
    ),
    pytest.param(
        promo(discount=percent("10"), price_conditions=[PriceCondition("GE", "100")]),
        [("A", 1, "99.99")],
        id="price-ge-100-at-99.99",
    ),
    pytest.param(
        promo(discount=percent("10"), item_price_conditions=[PriceCondition("GE", "50")]),
        [("A", 1, "49.99"), ("B", 3, "20.00")],
        id="no-item-picked",
    ),
    pytest.param(promo(), [("A", 1, "10.00")], id="nothing-to-give"),
    # 0.04 * 0.10 = 0.004 -> 0.00
    pytest.param(promo(discount=percent("10")), [("A", 1, "0.04")], id="percent-rounds-to-zero"),
    pytest.param(promo(discount=percent("10")), [("A", 1, "0.00")], id="free-cart"),
]


@pytest.mark.parametrize(("promotion", "lines"), REFUSALS)
def test_a_promotion_with_nothing_to_apply_to_is_refused(
    promotion: Promotion, lines: list[Line]
) -> None:
    refused = refusal(promotion, lines)

    assert refused.reason == CONDITIONS_NOT_MET
    assert refused.message


def test_a_request_without_a_cart_gets_the_bonus_only() -> None:
    no_cart = Cart("", ())

    result = evaluate(promo(discount=percent("10"), bonus=[GIFT]), no_cart, {}, {})

    assert summary(result) == ("0.00", "0.00", "0.00", (), (("gift", 1),))
    with pytest.raises(Refused) as raised:
        evaluate(promo(discount=percent("10")), no_cart, {}, {})
    assert raised.value.reason == CONDITIONS_NOT_MET


@pytest.mark.parametrize(
    ("operator", "value", "applies"),
    [
        ("EQ", "100", True),
        ("EQ", "100.01", False),
        ("NE", "100", False),
        ("NE", "99.99", True),
        ("GT", "99.99", True),
        ("GT", "100", False),
        ("GE", "100", True),
        ("GE", "100.01", False),
        ("LT", "100.01", True),
        ("LT", "100", False),
        ("LE", "100.0000", True),
        ("LE", "99.99", False),
    ],
)
def test_price_conditions_compare_the_cart_total(operator: str, value: str, applies: bool) -> None:
    promotion = promo(discount=percent("10"), price_conditions=[PriceCondition(operator, value)])
    lines = [("A", 4, "25.00")]  # 4 x 25.00 = 100.00

    if applies:
        assert money(reward(promotion, lines).discount_total) == "10.00"
    else:
        assert refusal(promotion, lines).reason == CONDITIONS_NOT_MET


def test_every_price_condition_must_hold() -> None:
    lines = [("A", 4, "25.00")]  # 100.00
    within = [PriceCondition("GE", "50"), PriceCondition("LE", "100")]
    beyond = [PriceCondition("GE", "50"), PriceCondition("LT", "100")]

    assert reward(promo(discount=percent("10"), price_conditions=within), lines)
    assert refusal(promo(discount=percent("10"), price_conditions=beyond), lines).reason == (
        CONDITIONS_NOT_MET
    )


def test_reward_items_keep_cart_order_and_show_cents() -> None:
    promotion = promo(
        discounted_items=[DiscountedItem("B", percent("10")), DiscountedItem("A", percent("25"))]
    )
    lines = [("A", 2, "19.99"), ("B", 3, "5.55"), ("C", 1, "7.0049")]

    result = reward(promotion, lines)

    assert result.items == (
        RewardItem("A", 2, Decimal("19.99"), Decimal("10.00"), Decimal("29.98")),  # 39.98 - 10
        RewardItem("B", 3, Decimal("5.55"), Decimal("1.68"), Decimal("14.97")),  # 16.65 - 1.68
        RewardItem("C", 1, Decimal("7.00"), Decimal("0.00"), Decimal("7.00")),  # 7.0049 -> 7.00
    )
    assert money(result.final_total) == "51.95"  # 29.98 + 14.97 + 7.00


STRING, NUMBER, DATE = "STRING", "NUMBER", "DATE"
WHEN = "2026-01-31T00:00:00Z"

ATTRIBUTES = [
    (STRING, "EQ", "gold", "gold", True),
    (STRING, "EQ", "gold", "Gold", False),
    (STRING, "EQ", "gold", "gold ", False),
    (STRING, "EQ", "gold", "", False),
    (STRING, "NE", "gold", "silver", True),
    (STRING, "NE", "gold", "gold", False),
    (NUMBER, "EQ", "10", "10.00", True),
    (NUMBER, "EQ", "10", "10.01", False),
    (NUMBER, "NE", "10", "9.99", True),
    (NUMBER, "NE", "10", "10.0", False),
    (NUMBER, "GT", "10", "10.5", True),
    (NUMBER, "GT", "10", "10", False),
    (NUMBER, "GE", "10", "10", True),
    (NUMBER, "GE", "10", "9.999", False),
    (NUMBER, "LT", "10", "-3", True),
    (NUMBER, "LT", "10", "10", False),
    (NUMBER, "LE", "10", "10.000", True),
    (NUMBER, "LE", "10", "11", False),
    (NUMBER, "GT", "-1.5", "-1", True),
    (NUMBER, "EQ", "10", "ten", False),
    (NUMBER, "NE", "10", "ten", False),
    (NUMBER, "EQ", "10", "1e1", False),
    (NUMBER, "EQ", "10", " 10", False),
    (NUMBER, "NE", "10", "", False),
    (DATE, "EQ", WHEN, "2026-01-31T01:00:00+01:00", True),  # the same instant
    (DATE, "EQ", WHEN, "2026-01-31T00:00:01Z", False),
    (DATE, "NE", WHEN, "2026-01-30T19:00:00-05:00", False),  # 19:00 + 5h = 00:00Z
    (DATE, "NE", WHEN, "2026-01-31T00:00:01Z", True),
    (DATE, "GT", WHEN, "2026-01-30T20:00:00-05:00", True),  # 01:00Z on the 31st
    (DATE, "GT", WHEN, "2026-01-31T00:30:00+01:00", False),  # 23:30Z on the 30th
    (DATE, "GE", WHEN, "2026-01-31t00:00:00z", True),
    (DATE, "GE", WHEN, "2026-01-30T23:59:59Z", False),
    (DATE, "LT", WHEN, "2026-01-31T00:59:59+01:00", True),  # 23:59:59Z on the 30th
    (DATE, "LT", WHEN, WHEN, False),
    (DATE, "LE", WHEN, "2026-01-31T05:30:00+05:30", True),  # 00:00Z
    (DATE, "LE", WHEN, "2026-01-31T00:00:00.5Z", False),
    (DATE, "GT", WHEN, "2026-01-31T00:00:00.000000001Z", True),  # to the nanosecond
    (DATE, "EQ", "2026-01-31T00:00:00.0000001Z", "2026-01-31T01:00:00.000000100+01:00", True),
    (DATE, "LT", "2026-01-31T00:00:00.0000002Z", "2026-01-31T00:00:00.0000001Z", True),
    (DATE, "EQ", WHEN, "2026-01-31", False),  # a bare date is not RFC 3339
    (DATE, "NE", WHEN, "yesterday", False),
]


@pytest.mark.parametrize(
    ("type_", "operator", "expected", "value", "holds"),
    [pytest.param(*case, id="-".join(map(str, case))) for case in ATTRIBUTES],
)
def test_attribute_condition(
    type_: str, operator: str, expected: str, value: str, holds: bool
) -> None:
    condition = AttributeCondition("tier", type_, operator, expected)
    promotion = promo(discount=percent("10"), attribute_conditions=[condition])

    if holds:
        result = reward(promotion, [("A", 1, "10.00")], attributes={"tier": value})
        assert money(result.discount_total) == "1.00"
    else:
        refused = refusal(promotion, attributes={"tier": value})
        assert refused.reason == CONDITIONS_NOT_MET
        assert "'tier'" in refused.message


@pytest.mark.parametrize("type_", [STRING, NUMBER, DATE])
@pytest.mark.parametrize(("can_be_missing", "holds"), [(False, False), (True, True)])
def test_a_missing_attribute_fails_unless_it_can_be_missing(
    type_: str, can_be_missing: bool, holds: bool
) -> None:
    value = {STRING: "gold", NUMBER: "10", DATE: WHEN}[type_]
    condition = AttributeCondition("tier", type_, "NE", value, can_be_missing=can_be_missing)
    promotion = promo(discount=percent("10"), attribute_conditions=[condition])
    other = {"plan": "gold"}

    if holds:
        assert reward(promotion, [("A", 1, "10.00")], attributes=other)
    else:
        refused = refusal(promotion, attributes=other)
        assert refused.reason == CONDITIONS_NOT_MET
        assert "'tier'" in refused.message


def test_an_attribute_that_may_be_missing_is_still_checked_when_present() -> None:
    condition = AttributeCondition("signup", DATE, "LT", WHEN, can_be_missing=True)
    promotion = promo(discount=percent("10"), attribute_conditions=[condition])

    refused = refusal(promotion, attributes={"signup": "2027-01-01T00:00:00Z"})

    assert refused.reason == CONDITIONS_NOT_MET


def test_every_attribute_condition_must_hold_and_the_failing_one_is_named() -> None:
    promotion = promo(
        discount=percent("10"),
        attribute_conditions=[
            AttributeCondition("tier", STRING, "EQ", "gold"),
            AttributeCondition("orders", NUMBER, "GE", "3"),
        ],
    )

    refused = refusal(promotion, attributes={"tier": "gold", "orders": "2"})

    assert refused.reason == CONDITIONS_NOT_MET
    assert "'orders'" in refused.message
    assert reward(promotion, [("A", 1, "10.00")], attributes={"tier": "gold", "orders": "3"})


@pytest.mark.parametrize(
    ("excluded_promotions", "applied"),
    [
        pytest.param([], {"winter": [PROMOTION]}, id="an-applied-one-excludes-it"),
        pytest.param(["winter"], {"winter": []}, id="it-excludes-an-applied-one"),
        pytest.param(["winter"], {"summer": [], "winter": ["autumn"]}, id="one-of-several"),
    ],
)
def test_exclusions_refuse_both_ways(
    excluded_promotions: list[str], applied: dict[str, list[str]]
) -> None:
    promotion = promo(discount=percent("10"), excluded_promotions=excluded_promotions)

    refused = refusal(promotion, applied=applied)

    assert refused.reason == PROMOTION_EXCLUDED
    assert "'winter'" in refused.message


@pytest.mark.parametrize(
    "applied",
    [
        pytest.param({}, id="nothing-applied"),
        pytest.param({"winter": ["autumn"], "summer": []}, id="unrelated"),
        pytest.param({PROMOTION: []}, id="itself-applied"),
    ],
)
def test_promotions_that_do_not_exclude_each_other_apply(applied: dict[str, list[str]]) -> None:
    promotion = promo(discount=percent("10"), excluded_promotions=["black-friday"])

    assert money(reward(promotion, [("A", 1, "10.00")], applied=applied).discount_total) == "1.00"


def test_exclusions_are_checked_before_conditions() -> None:
    promotion = promo(
        discount=percent("10"),
        attribute_conditions=[AttributeCondition("tier", STRING, "EQ", "gold")],
        price_conditions=[PriceCondition("GE", "1000")],
    )

    assert refusal(promotion, applied={"winter": [PROMOTION]}).reason == PROMOTION_EXCLUDED


def test_parse_cart_reads_the_request() -> None:
    cart = parse_cart("EUR", [("A", 2, "1.5"), ("B", 1_000_000, "999999999999999.9999")])

    assert cart == Cart(
        "EUR",
        (
            CartItem("A", 2, Decimal("1.5")),
            CartItem("B", 1_000_000, Decimal("999999999999999.9999")),
        ),
    )


def cart_violations(currency: str, lines: Sequence[Line], path: str = "cart") -> list[str]:
    with pytest.raises(InvalidArgument) as raised:
        parse_cart(currency, lines, path)
    return [violation.field for violation in raised.value.violations]


def test_parse_cart_names_every_bad_field_at_once() -> None:
    lines = [
        ("", 0, "1.23456"),
        ("ok", 1, "2.00"),
        ("B\n", 1_000_001, "-1"),
        ("x" * 256, 1, "1,50"),
        ("C", -1, "1000000000000000"),
    ]

    assert cart_violations("usd", lines) == [
        "cart.currency",
        "cart.items[0].sku",
        "cart.items[0].quantity",
        "cart.items[0].unit_price",
        "cart.items[2].sku",
        "cart.items[2].quantity",
        "cart.items[2].unit_price",
        "cart.items[3].sku",
        "cart.items[3].unit_price",
        "cart.items[4].quantity",
        "cart.items[4].unit_price",
    ]


def test_a_cart_needs_a_currency_and_an_item() -> None:
    assert cart_violations("", [], path="order") == ["order.currency", "order.items"]


def test_no_promotion_adds_the_cart_up_as_a_promotion_does() -> None:
    cart = parse_cart("USD", [("A", 1, "9.995"), ("B", 3, "0.125")])
    nothing = undiscounted(cart)

    assert money(nothing.cart_total) == money(
        evaluate(promo(discount=percent("10")), cart, {}, {}).cart_total
    ) == "10.38"  # 10.00 + 0.38: each line in cents, then added
    assert (money(nothing.discount_total), money(nothing.final_total)) == ("0.00", "10.38")
    assert [money(item.final_price) for item in nothing.items] == ["10.00", "0.38"]


def test_a_cart_currency_is_one_iso_4217_knows() -> None:
    assert cart_violations("ABC", [("A", 1, "1.00")]) == ["cart.currency"]
    assert parse_cart("XTS", [("A", 1, "1.00")]).currency == "XTS"  # ISO's code for tests


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("100", "100.00"),
        ("0", "0.00"),
        ("0.005", "0.01"),
        ("0.0049", "0.00"),
        ("1.234", "1.23"),
        ("2.5", "2.50"),
        ("1E+2", "100.00"),
        ("123456789012345678901234567890.125", "123456789012345678901234567890.13"),
    ],
)
def test_money_writes_two_decimals_half_up(value: str, written: str) -> None:
    assert money(Decimal(value)) == written


SKUS = ("A", "B", "C", "D")
CURRENCIES = ("USD", "EUR")
PERCENTS = st.integers(1, 10_000).map(lambda n: f"{n // 100}.{n % 100:02d}")  # 0.01..100.00
AMOUNTS = st.integers(1, 10**7).map(lambda n: f"{n // 10**4}.{n % 10**4:04d}")  # to 1000
PRICES = st.integers(0, 10**8).map(lambda n: f"{n // 10**4}.{n % 10**4:04d}")  # to 10000
DISCOUNTS = st.one_of(
    PERCENTS.map(percent),
    st.builds(amount, AMOUNTS, st.sampled_from(CURRENCIES)),
)
BONUS = st.lists(
    st.builds(BonusItem, st.sampled_from(("gift", "sample")), st.integers(1, 3)), max_size=1
)
CONDITIONS = st.lists(st.builds(PriceCondition, st.sampled_from(OPERATORS), AMOUNTS), max_size=2)
CARTS = st.builds(
    parse_cart,
    st.sampled_from(CURRENCIES),
    st.lists(st.tuples(st.sampled_from(SKUS), st.integers(1, 20), PRICES), min_size=1, max_size=6),
)


@st.composite
def promotions(draw: st.DrawFn) -> Promotion:
    """Any valid promotion: discounted items, or price conditions, never both."""
    discount = draw(st.none() | DISCOUNTS)
    bonus = draw(BONUS)
    if draw(st.booleans()):
        items = draw(
            st.lists(
                st.builds(DiscountedItem, st.sampled_from(SKUS), DISCOUNTS),
                max_size=3,
                unique_by=lambda item: item.sku,
            )
        )
        return promo(discount=discount, bonus=bonus, discounted_items=items)
    return promo(
        discount=discount,
        bonus=bonus,
        price_conditions=draw(CONDITIONS),
        item_price_conditions=draw(CONDITIONS),
    )


def amounts_of(result: Reward) -> list[Decimal]:
    return [
        result.cart_total,
        result.discount_total,
        result.final_total,
        *(value for i in result.items for value in (i.unit_price, i.discount, i.final_price)),
    ]


@settings(max_examples=200, deadline=None)
@given(promotion=promotions(), cart=CARTS)
def test_any_reward_adds_up_and_never_goes_below_zero(promotion: Promotion, cart: Cart) -> None:
    assert validate(promotion) == []
    try:
        result = evaluate(promotion, cart, {}, {})
    except Refused as refused:
        assert refused.reason == CONDITIONS_NOT_MET
        return

    assert result == evaluate(promotion, cart, {}, {})
    assert 0 <= result.discount_total <= result.cart_total
    assert result.final_total >= 0
    assert result.final_total == result.cart_total - result.discount_total
    assert sum(item.discount for item in result.items) == result.discount_total
    assert sum(item.final_price for item in result.items) == result.final_total
    assert all(item.discount >= 0 and item.final_price >= 0 for item in result.items)
    assert [(i.sku, i.quantity) for i in result.items] == [(i.sku, i.quantity) for i in cart.items]
    assert result.discount_total > 0 or result.bonus
    for value in amounts_of(result):
        assert re.fullmatch(r"[0-9]+\.[0-9]{2}", money(value))
        assert Decimal(money(value)) == value


@settings(max_examples=200, deadline=None)
@given(value=PERCENTS, cart=CARTS)
def test_a_cart_wide_percent_is_the_total_times_the_percent_rounded_once(
    value: str, cart: Cart
) -> None:
    promotion = promo(discount=percent(value), bonus=[GIFT])

    result = evaluate(promotion, cart, {}, {})

    exact = result.cart_total * Decimal(value) / 100
    assert result.discount_total == exact.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
