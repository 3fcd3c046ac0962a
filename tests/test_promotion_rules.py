"""Every rule a Promotion obeys: one valid promotion, then one change at a time."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from promo_server.domain.errors import FieldViolation, InvalidArgument, Kind
from promo_server.domain.promotions import (
    MUTABLE,
    AttributeCondition,
    BonusItem,
    Discount,
    DiscountedItem,
    PriceCondition,
    Promotion,
    require_valid,
    validate,
)

EXTERNAL_ID = "spring-sale_2026.v1"
START = datetime(2026, 3, 1, tzinfo=UTC)
END = datetime(2026, 4, 1, tzinfo=UTC)


def valid_promotion() -> Promotion:
    return Promotion(
        external_id=EXTERNAL_ID,
        name={"en-US": "Spring sale", "de-DE": "Frühlingsverkauf"},
        state="ACTIVE",
        start_time=START,
        end_time=END,
        redeem_total_limit=1000,
        redeem_user_limit=2,
        redeem_code_limit=1,
        discount=Discount(percent="12.50"),
        bonus=[BonusItem("gift-bag", 1)],
        attribute_conditions=[
            AttributeCondition("tier", "STRING", "EQ", "gold"),
            AttributeCondition("orders", "NUMBER", "GE", "3.5"),
            AttributeCondition("signup", "DATE", "LT", "2026-01-31T00:00:00Z", can_be_missing=True),
        ],
        price_conditions=[PriceCondition("GE", "50.00")],
        item_price_conditions=[PriceCondition("LT", "20")],
        excluded_promotions=["winter-sale", "black-friday"],
    )


def changed(**changes: Any) -> Promotion:
    return dataclasses.replace(valid_promotion(), **changes)


def paths(promotion: Promotion) -> list[str]:
    return sorted(v.field for v in validate(promotion))


def condition(type_: str = "STRING", operator: str = "EQ", value: str = "gold") -> dict[str, Any]:
    return {"attribute_conditions": [AttributeCondition("tier", type_, operator, value)]}


def discounted(*items: DiscountedItem, **changes: Any) -> dict[str, Any]:
    return {
        "discounted_items": list(items),
        "price_conditions": [],
        "item_price_conditions": [],
        **changes,
    }


TEN_PERCENT = Discount(percent="10")
TWO_DOLLARS = Discount(amount="2.50", currency="USD")
LIMITS = ("redeem_total_limit", "redeem_user_limit", "redeem_code_limit")
P = "promotion"

CASES = [
    pytest.param({"external_id": "a" * 255}, [], id="external_id-255-chars"),
    pytest.param({"external_id": "-_.AZaz09"}, [], id="external_id-every-allowed-kind"),
    pytest.param({"external_id": "a" * 256}, [f"{P}.external_id"], id="external_id-256-chars"),
    pytest.param({"external_id": ""}, [f"{P}.external_id"], id="external_id-empty"),
    pytest.param({"external_id": "spring sale"}, [f"{P}.external_id"], id="external_id-space"),
    pytest.param({"external_id": "a/b"}, [f"{P}.external_id"], id="external_id-slash"),
    pytest.param({"external_id": "café"}, [f"{P}.external_id"], id="external_id-non-ascii"),
    pytest.param({"name": {"fr-FR": "Soldes"}}, [], id="name-one-locale"),
    pytest.param({"name": {}}, [f"{P}.name"], id="name-empty-map"),
    pytest.param({"name": {"en": "Sale"}}, [f"{P}.name['en']"], id="locale-language-only"),
    pytest.param({"name": {"en_US": "Sale"}}, [f"{P}.name['en_US']"], id="locale-underscore"),
    pytest.param({"name": {"en-us": "Sale"}}, [f"{P}.name['en-us']"], id="locale-lower-region"),
    pytest.param({"name": {"EN-US": "Sale"}}, [f"{P}.name['EN-US']"], id="locale-upper-language"),
    pytest.param({"name": {"": "Sale"}}, [f"{P}.name['']"], id="locale-empty"),
    pytest.param(
        {"name": {"en-US": "", "de-DE": "Angebot"}}, [f"{P}.name['en-US']"], id="name-empty-text"
    ),
    pytest.param({"state": "INACTIVE"}, [], id="state-inactive"),
    pytest.param({"state": "STATE_UNSPECIFIED"}, [f"{P}.state"], id="state-unspecified"),
    pytest.param({"state": "active"}, [f"{P}.state"], id="state-lowercase"),
    pytest.param({"start_time": None}, [], id="no-start"),
    pytest.param({"end_time": None}, [], id="no-end"),
    pytest.param({"end_time": START + timedelta(microseconds=1)}, [], id="end-just-after-start"),
    pytest.param({"end_time": START}, [f"{P}.end_time"], id="end-equals-start"),
    pytest.param({"end_time": START - timedelta(days=1)}, [f"{P}.end_time"], id="end-before-start"),
    *(pytest.param({limit: None}, [], id=f"{limit}-unset") for limit in LIMITS),
    *(pytest.param({limit: 1}, [], id=f"{limit}-1") for limit in LIMITS),
    *(pytest.param({limit: 0}, [f"{P}.{limit}"], id=f"{limit}-0") for limit in LIMITS),
    *(pytest.param({limit: -1}, [f"{P}.{limit}"], id=f"{limit}-negative") for limit in LIMITS),
    pytest.param({"discount": None}, [], id="no-discount"),
    pytest.param({"discount": Discount(percent="100")}, [], id="percent-100"),
    pytest.param({"discount": Discount(percent="100.00")}, [], id="percent-100.00"),
    pytest.param({"discount": Discount(percent="0.01")}, [], id="percent-0.01"),
    pytest.param({"discount": Discount(percent="0")}, [f"{P}.discount.percent"], id="percent-0"),
    pytest.param(
        {"discount": Discount(percent="0.00")}, [f"{P}.discount.percent"], id="percent-0.00"
    ),
    pytest.param(
        {"discount": Discount(percent="100.01")}, [f"{P}.discount.percent"], id="percent-100.01"
    ),
    pytest.param(
        {"discount": Discount(percent="12.345")}, [f"{P}.discount.percent"], id="percent-3-decimals"
    ),
    pytest.param(
        {"discount": Discount(percent="abc")}, [f"{P}.discount.percent"], id="percent-abc"
    ),
    pytest.param({"discount": Discount(percent="-5")}, [f"{P}.discount.percent"], id="percent-neg"),
    pytest.param({"discount": Discount(percent=".5")}, [f"{P}.discount.percent"], id="percent-.5"),
    pytest.param(
        {"discount": Discount(percent="10", currency="USD")},
        [f"{P}.discount.currency"],
        id="percent-with-currency",
    ),
    pytest.param(
        {"discount": Discount(percent="\u0665\u0660")},
        [f"{P}.discount.percent"],
        id="percent-arabic-indic-digits",
    ),
    pytest.param({"discount": TWO_DOLLARS}, [], id="amount-usd"),
    pytest.param({"discount": Discount(amount="1.2345", currency="EUR")}, [], id="amount-4-dec"),
    pytest.param(
        {"discount": Discount(percent="10", amount="5", currency="USD")},
        [f"{P}.discount"],
        id="amount-and-percent",
    ),
    pytest.param(
        {"discount": Discount(amount="5")}, [f"{P}.discount.currency"], id="amount-no-currency"
    ),
    pytest.param(
        {"discount": Discount(amount="5", currency="usd")},
        [f"{P}.discount.currency"],
        id="currency-lowercase",
    ),
    pytest.param(
        {"discount": Discount(amount="5", currency="ABC")},
        [f"{P}.discount.currency"],
        id="currency-not-in-iso-4217",
    ),
    pytest.param(
        {"discount": Discount(amount="5", currency="US")},
        [f"{P}.discount.currency"],
        id="currency-2-letters",
    ),
    pytest.param(
        {"discount": Discount(amount="0", currency="USD")}, [f"{P}.discount.amount"], id="amount-0"
    ),
    pytest.param(
        {"discount": Discount(amount="0.0000", currency="USD")},
        [f"{P}.discount.amount"],
        id="amount-0.0000",
    ),
    pytest.param(
        {"discount": Discount(amount="1.23456", currency="USD")},
        [f"{P}.discount.amount"],
        id="amount-5-decimals",
    ),
    pytest.param(
        {"discount": Discount(amount="-1", currency="USD")},
        [f"{P}.discount.amount"],
        id="amount-neg",
    ),
    pytest.param(
        {"discount": Discount(amount="1,50", currency="EUR")},
        [f"{P}.discount.amount"],
        id="amount-comma",
    ),
    pytest.param({"discount": Discount()}, [f"{P}.discount"], id="discount-empty"),
    pytest.param({"discount": Discount(currency="USD")}, [f"{P}.discount"], id="currency-only"),
    pytest.param(
        discounted(DiscountedItem("sku-1", TEN_PERCENT), DiscountedItem("sku-2", TWO_DOLLARS)),
        [],
        id="discounted-items",
    ),
    pytest.param(
        discounted(
            DiscountedItem("sku-1", TEN_PERCENT), price_conditions=[PriceCondition("GE", "10")]
        ),
        [f"{P}.discounted_items"],
        id="discounted-items-with-price-conditions",
    ),
    pytest.param(
        discounted(
            DiscountedItem("sku-1", TEN_PERCENT),
            item_price_conditions=[PriceCondition("GE", "10")],
        ),
        [f"{P}.discounted_items"],
        id="discounted-items-with-item-price-conditions",
    ),
    pytest.param(
        discounted(DiscountedItem("sku-1", TEN_PERCENT), DiscountedItem("sku-1", TWO_DOLLARS)),
        [f"{P}.discounted_items[1].sku"],
        id="discounted-items-duplicate-sku",
    ),
    pytest.param(
        discounted(DiscountedItem("sku-1", TEN_PERCENT), DiscountedItem("", TEN_PERCENT)),
        [f"{P}.discounted_items[1].sku"],
        id="discounted-item-empty-sku",
    ),
    pytest.param(
        discounted(DiscountedItem("sku-1", None)),
        [f"{P}.discounted_items[0].discount"],
        id="discounted-item-without-discount",
    ),
    pytest.param(
        discounted(DiscountedItem("sku-1", Discount(percent="0"))),
        [f"{P}.discounted_items[0].discount.percent"],
        id="discounted-item-percent-0",
    ),
    pytest.param(
        discounted(DiscountedItem("sku-1", Discount(amount="3"))),
        [f"{P}.discounted_items[0].discount.currency"],
        id="discounted-item-amount-no-currency",
    ),
    pytest.param({"bonus": [BonusItem("gift", 100)]}, [], id="bonus-100"),
    pytest.param({"bonus": [BonusItem("gift", 0)]}, [f"{P}.bonus[0].quantity"], id="bonus-qty-0"),
    pytest.param(
        {"bonus": [BonusItem("gift", -1)]}, [f"{P}.bonus[0].quantity"], id="bonus-qty-negative"
    ),
    pytest.param({"bonus": [BonusItem("", 1)]}, [f"{P}.bonus[0].sku"], id="bonus-empty-sku"),
    pytest.param(
        {
            "attribute_conditions": [
                AttributeCondition(f"a{i}", "NUMBER", "GT", "1") for i in range(100)
            ]
        },
        [],
        id="100-attribute-conditions",
    ),
    pytest.param(
        {"attribute_conditions": [AttributeCondition("a", "NUMBER", "GT", "1")] * 101},
        [f"{P}.attribute_conditions"],
        id="101-attribute-conditions",
    ),
    pytest.param(condition(operator="NE"), [], id="string-ne"),
    pytest.param(condition(value=""), [], id="string-empty-value"),
    pytest.param(condition(value="v" * 255), [], id="value-255-chars"),
    *(
        pytest.param(condition("NUMBER", op, "-2.5"), [], id=f"number-{op.lower()}")
        for op in ("EQ", "NE", "GT", "GE", "LT", "LE")
    ),
    pytest.param(condition("DATE", "LE", "2026-01-31T10:00:00+02:00"), [], id="date-offset"),
    *(
        pytest.param(
            condition(operator=op),
            [f"{P}.attribute_conditions[0].operator"],
            id=f"string-{op.lower()}",
        )
        for op in ("GT", "GE", "LT", "LE")
    ),
    pytest.param(
        condition("NUMBER", "GT", "many"),
        [f"{P}.attribute_conditions[0].value"],
        id="number-not-a-number",
    ),
    pytest.param(
        condition("NUMBER", "GT", ""), [f"{P}.attribute_conditions[0].value"], id="number-empty"
    ),
    pytest.param(
        condition("NUMBER", "GT", "NaN"), [f"{P}.attribute_conditions[0].value"], id="number-nan"
    ),
    pytest.param(
        condition("DATE", "GT", "2026-01-31"),
        [f"{P}.attribute_conditions[0].value"],
        id="date-without-time",
    ),
    pytest.param(
        condition("DATE", "GT", "2026-01-31T10:00:00"),
        [f"{P}.attribute_conditions[0].value"],
        id="date-without-offset",
    ),
    pytest.param(
        condition("DATE", "GT", "last week"),
        [f"{P}.attribute_conditions[0].value"],
        id="date-words",
    ),
    pytest.param(
        condition("DATE", "GT", "2026-01-31T10:00Z"),
        [f"{P}.attribute_conditions[0].value"],
        id="date-without-seconds",
    ),
    pytest.param(condition(type_="7"), [f"{P}.attribute_conditions[0].type"], id="type-7"),
    pytest.param(
        condition(type_="TYPE_UNSPECIFIED"),
        [f"{P}.attribute_conditions[0].type"],
        id="type-unspecified",
    ),
    pytest.param(
        condition(operator="7"), [f"{P}.attribute_conditions[0].operator"], id="operator-7"
    ),
    pytest.param(
        condition(operator="OPERATOR_UNSPECIFIED"),
        [f"{P}.attribute_conditions[0].operator"],
        id="operator-unspecified",
    ),
    pytest.param(
        condition(value="v" * 256), [f"{P}.attribute_conditions[0].value"], id="value-256-chars"
    ),
    pytest.param(
        {"attribute_conditions": [AttributeCondition("", "STRING", "EQ", "x")]},
        [f"{P}.attribute_conditions[0].attribute"],
        id="attribute-empty",
    ),
    pytest.param(
        {"attribute_conditions": [AttributeCondition("a" * 256, "STRING", "EQ", "x")]},
        [f"{P}.attribute_conditions[0].attribute"],
        id="attribute-256-chars",
    ),
    pytest.param(
        {"attribute_conditions": [AttributeCondition("home town", "STRING", "EQ", "x")]},
        [f"{P}.attribute_conditions[0].attribute"],
        id="attribute-space",
    ),
    pytest.param({"price_conditions": [PriceCondition("LT", "0")]}, [], id="price-0"),
    pytest.param(
        {"price_conditions": [PriceCondition("GE", "-1")]},
        [f"{P}.price_conditions[0].value"],
        id="price-negative",
    ),
    pytest.param(
        {"price_conditions": [PriceCondition("GE", "1.23456")]},
        [f"{P}.price_conditions[0].value"],
        id="price-5-decimals",
    ),
    pytest.param(
        {"price_conditions": [PriceCondition("GE", "")]},
        [f"{P}.price_conditions[0].value"],
        id="price-empty",
    ),
    pytest.param(
        {"price_conditions": [PriceCondition("OPERATOR_UNSPECIFIED", "10")]},
        [f"{P}.price_conditions[0].operator"],
        id="price-operator-unspecified",
    ),
    pytest.param(
        {"item_price_conditions": [PriceCondition("LT", "20"), PriceCondition("GT", "-1")]},
        [f"{P}.item_price_conditions[1].value"],
        id="item-price-negative",
    ),
    pytest.param(
        {"price_conditions": [PriceCondition("GE", "\u0661\u0660")]},
        [f"{P}.price_conditions[0].value"],
        id="price-arabic-indic-digits",
    ),
    pytest.param({"excluded_promotions": []}, [], id="excludes-nothing"),
    pytest.param(
        {"excluded_promotions": [EXTERNAL_ID]},
        [f"{P}.excluded_promotions[0]"],
        id="excludes-itself",
    ),
    pytest.param(
        {"excluded_promotions": ["not valid!"]},
        [f"{P}.excluded_promotions[0]"],
        id="excludes-bad-id",
    ),
    pytest.param(
        {"excluded_promotions": ["winter-sale", ""]},
        [f"{P}.excluded_promotions[1]"],
        id="excludes-empty-id",
    ),
]


def test_a_fully_specified_promotion_is_valid() -> None:
    assert validate(valid_promotion()) == []
    require_valid(valid_promotion())


def test_a_promotion_with_only_an_id_and_a_name_is_valid() -> None:
    assert validate(Promotion(external_id="minimal", name={"en-US": "Minimal"})) == []


@pytest.mark.parametrize(("changes", "expected"), CASES)
def test_each_rule_names_the_offending_field(changes: dict[str, Any], expected: list[str]) -> None:
    violations = validate(changed(**changes))

    assert sorted(v.field for v in violations) == sorted(expected)
    assert all(v.description.strip() for v in violations)


@pytest.mark.parametrize(
    ("changes", "explanation"),
    [
        pytest.param({"end_time": START}, "after start_time", id="end-time"),
        pytest.param({"redeem_user_limit": 0}, "at least 1", id="limit"),
        pytest.param(
            {"discount": Discount(percent="10", amount="5", currency="USD")},
            "not both",
            id="percent-and-amount",
        ),
        pytest.param(
            {"discount": Discount(amount="0", currency="USD")}, "greater than 0", id="amount-0"
        ),
        pytest.param(
            discounted(DiscountedItem("sku-1", TEN_PERCENT), DiscountedItem("sku-1", TEN_PERCENT)),
            "'sku-1' is listed twice",
            id="duplicate-sku",
        ),
        pytest.param(condition(operator="GT"), "EQ and NE only", id="string-operator"),
        pytest.param(
            {"attribute_conditions": [AttributeCondition("a", "NUMBER", "GT", "1")] * 101},
            "at most 100",
            id="too-many-conditions",
        ),
        pytest.param({"excluded_promotions": [EXTERNAL_ID]}, "itself", id="excludes-itself"),
    ],
)
def test_a_violation_says_why(changes: dict[str, Any], explanation: str) -> None:
    (violation,) = validate(changed(**changes))

    assert explanation in violation.description


def test_every_bad_field_is_reported_at_once() -> None:
    promotion = changed(
        external_id="",
        name={"english": "Sale"},
        state="STATE_UNSPECIFIED",
        end_time=START,
        redeem_code_limit=0,
        discount=Discount(percent="0"),
        bonus=[BonusItem("gift", 0)],
        attribute_conditions=[AttributeCondition("tier", "STRING", "LT", "gold")],
        price_conditions=[PriceCondition("GE", "-1")],
        excluded_promotions=["not valid!"],
    )

    fields = [v.field for v in validate(promotion)]

    assert sorted(fields) == sorted(
        [
            "promotion.external_id",
            "promotion.name['english']",
            "promotion.state",
            "promotion.end_time",
            "promotion.redeem_code_limit",
            "promotion.discount.percent",
            "promotion.bonus[0].quantity",
            "promotion.attribute_conditions[0].operator",
            "promotion.price_conditions[0].value",
            "promotion.excluded_promotions[0]",
        ]
    )


def test_one_condition_can_break_several_rules_at_once() -> None:
    promotion = changed(
        attribute_conditions=[AttributeCondition("", "TYPE_UNSPECIFIED", "7", "v" * 256)]
    )

    assert paths(promotion) == [
        "promotion.attribute_conditions[0].attribute",
        "promotion.attribute_conditions[0].operator",
        "promotion.attribute_conditions[0].type",
        "promotion.attribute_conditions[0].value",
    ]


def test_paths_start_with_the_given_prefix() -> None:
    promotion = changed(end_time=START, bonus=[BonusItem("gift", 0)])

    fields = sorted(v.field for v in validate(promotion, prefix="promotions[3]"))

    assert fields == ["promotions[3].bonus[0].quantity", "promotions[3].end_time"]


def test_require_valid_raises_invalid_argument_with_every_violation() -> None:
    promotion = changed(end_time=START, redeem_total_limit=0)

    with pytest.raises(InvalidArgument) as raised:
        require_valid(promotion)

    assert raised.value.kind is Kind.INVALID_ARGUMENT
    assert sorted(v.field for v in raised.value.violations) == [
        "promotion.end_time",
        "promotion.redeem_total_limit",
    ]
    assert "promotion.end_time" in str(raised.value)
    assert "promotion.redeem_total_limit" in str(raised.value)


def test_require_valid_puts_known_violations_first() -> None:
    known = [
        FieldViolation("update_mask", "unknown path 'colour'"),
        FieldViolation("promotion.create_time", "is output only"),
    ]

    with pytest.raises(InvalidArgument) as raised:
        require_valid(changed(end_time=START, state="STATE_UNSPECIFIED"), known)

    violations = raised.value.violations
    assert violations[:2] == known
    assert sorted(v.field for v in violations[2:]) == ["promotion.end_time", "promotion.state"]


def test_require_valid_reports_known_violations_of_a_valid_promotion() -> None:
    known = [FieldViolation("update_mask", "unknown path 'colour'")]

    with pytest.raises(InvalidArgument) as raised:
        require_valid(valid_promotion(), known)

    assert raised.value.violations == known


def test_every_caller_settable_field_but_the_id_is_mutable() -> None:
    assert set(MUTABLE) == {
        "name",
        "state",
        "start_time",
        "end_time",
        "redeem_total_limit",
        "redeem_user_limit",
        "redeem_code_limit",
        "discount",
        "discounted_items",
        "bonus",
        "attribute_conditions",
        "price_conditions",
        "item_price_conditions",
        "excluded_promotions",
        "low_stock_threshold",
    }
