"""PromotionService through a real server, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2

from promo.v1 import promotion_pb2 as pb
from promo.v1 import promotion_pb2_grpc
from promo_server.app import create_server
from promo_server.config import Settings
from tests.conftest import Project, Running, bearer
from tests.rpc import field_violations, refused

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND


@dataclass
class Api:
    stub: promotion_pb2_grpc.PromotionServiceStub
    key: str

    def create(self, promotion: pb.Promotion) -> pb.Promotion:
        return self.stub.CreatePromotion(
            pb.CreatePromotionRequest(promotion=promotion), metadata=bearer(self.key)
        )

    def get(self, external_id: str) -> pb.Promotion:
        return self.stub.GetPromotion(
            pb.GetPromotionRequest(external_id=external_id), metadata=bearer(self.key)
        )

    def list(self, **fields: object) -> pb.ListPromotionsResponse:
        return self.stub.ListPromotions(
            pb.ListPromotionsRequest(**fields), metadata=bearer(self.key)
        )

    def update(self, promotion: pb.Promotion, *paths: str) -> pb.Promotion:
        return self.stub.UpdatePromotion(
            pb.UpdatePromotionRequest(
                promotion=promotion, update_mask=field_mask_pb2.FieldMask(paths=paths)
            ),
            metadata=bearer(self.key),
        )

    def delete(self, external_id: str) -> None:
        self.stub.DeletePromotion(
            pb.DeletePromotionRequest(external_id=external_id), metadata=bearer(self.key)
        )


@pytest.fixture
def api(running: Running, project: Project) -> Iterator[Api]:
    with running.channel() as channel:
        yield Api(promotion_pb2_grpc.PromotionServiceStub(channel), project.admin_key)


def at(iso: str) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromJsonString(iso)
    return ts


def full_promotion(external_id: str = "summer-sale") -> pb.Promotion:
    """A promotion with every field of the contract set."""
    return pb.Promotion(
        external_id=external_id,
        name={"en-US": "Summer sale", "de-DE": "Sommerschlussverkauf"},
        state=pb.Promotion.INACTIVE,
        start_time=at("2026-06-01T00:00:00.123456Z"),
        end_time=at("2026-09-01T00:00:00Z"),
        redeem_total_limit=1000,
        redeem_user_limit=2,
        redeem_code_limit=1,
        discount=pb.Discount(amount="5.2500", currency="EUR"),
        bonus=[pb.BonusItem(sku="tote-bag", quantity=2)],
        attribute_conditions=[
            pb.AttributeCondition(attribute="tier", type=pb.AttributeCondition.STRING,
                                  operator=pb.EQ, value="gold"),
            pb.AttributeCondition(attribute="age", type=pb.AttributeCondition.NUMBER,
                                  operator=pb.GE, value="18", can_be_missing=True),
            pb.AttributeCondition(attribute="signup", type=pb.AttributeCondition.DATE,
                                  operator=pb.LT, value="2026-01-01T00:00:00Z"),
        ],
        price_conditions=[pb.PriceCondition(operator=pb.GT, value="20")],
        item_price_conditions=[pb.PriceCondition(operator=pb.LE, value="100.5")],
        excluded_promotions=["black-friday", "welcome"],
    )


def without_output(promotion: pb.Promotion) -> pb.Promotion:
    copy = pb.Promotion()
    copy.CopyFrom(promotion)
    for name in ("create_time", "update_time", "redemption_count"):
        copy.ClearField(name)
    return copy


def test_every_field_round_trips(api: Api) -> None:
    sent = full_promotion()
    created = api.create(sent)
    assert without_output(created) == sent
    assert without_output(api.get("summer-sale")) == sent
    assert created.create_time.seconds > 0
    assert created.update_time == created.create_time
    assert created.redemption_count == 0


def test_discounted_items_round_trip(api: Api) -> None:
    sent = pb.Promotion(
        external_id="items",
        name={"en-US": "Items"},
        state=pb.Promotion.ACTIVE,
        discounted_items=[
            pb.DiscountedItem(sku="elven_shield", discount=pb.Discount(percent="10.00")),
            pb.DiscountedItem(sku="sword", discount=pb.Discount(amount="3", currency="USD")),
        ],
    )
    assert without_output(api.create(sent)) == sent


def test_unset_state_means_active_and_unset_limits_stay_unset(api: Api) -> None:
    created = api.create(pb.Promotion(external_id="p", name={"en-US": "P"}))
    assert created.state == pb.Promotion.ACTIVE
    for limit in ("redeem_total_limit", "redeem_user_limit", "redeem_code_limit"):
        assert not created.HasField(limit)
    assert not created.HasField("discount")
    assert not created.HasField("start_time")


def test_taken_external_id_is_already_exists_until_deleted(api: Api) -> None:
    api.create(full_promotion("dup"))
    refused(lambda: api.create(full_promotion("dup")), grpc.StatusCode.ALREADY_EXISTS)
    api.delete("dup")
    assert api.create(full_promotion("dup")).external_id == "dup"


def test_every_bad_field_is_named_at_once_and_nothing_is_written(api: Api) -> None:
    bad = pb.Promotion(
        external_id="has space",
        name={"english": "x"},
        start_time=at("2026-02-01T00:00:00Z"),
        end_time=at("2026-01-01T00:00:00Z"),
        redeem_total_limit=0,
        discount=pb.Discount(percent="101"),
        bonus=[pb.BonusItem(sku="x", quantity=0)],
        attribute_conditions=[pb.AttributeCondition(
            attribute="tier", type=pb.AttributeCondition.STRING, operator=pb.GT, value="a")],
        price_conditions=[pb.PriceCondition(operator=pb.GE, value="1.23456")],
    )
    error = refused(lambda: api.create(bad), INVALID)
    assert set(field_violations(error)) == {
        "promotion.external_id",
        "promotion.name['english']",
        "promotion.end_time",
        "promotion.redeem_total_limit",
        "promotion.discount.percent",
        "promotion.bonus[0].quantity",
        "promotion.attribute_conditions[0].operator",
        "promotion.price_conditions[0].value",
    }
    assert api.list().promotions == []


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda p: p.ClearField("external_id"), "promotion.external_id"),
        (lambda p: p.name.clear(), "promotion.name"),
        (lambda p: setattr(p, "state", 7), "promotion.state"),
        (lambda p: p.end_time.CopyFrom(p.start_time), "promotion.end_time"),
        (lambda p: setattr(p, "redeem_user_limit", -1), "promotion.redeem_user_limit"),
        (lambda p: p.discount.CopyFrom(pb.Discount(amount="5")), "promotion.discount.currency"),
        (lambda p: p.discount.CopyFrom(pb.Discount()), "promotion.discount"),
        (lambda p: p.discounted_items.add(sku="a", discount=pb.Discount(percent="5")),
         "promotion.discounted_items"),
        (lambda p: p.attribute_conditions.add(attribute="x", operator=pb.EQ, value="1"),
         "promotion.attribute_conditions[3].type"),
        (lambda p: p.item_price_conditions.add(value="1"),
         "promotion.item_price_conditions[1].operator"),
        (lambda p: p.excluded_promotions.append("summer-sale"), "promotion.excluded_promotions[2]"),
        (lambda p: p.start_time.CopyFrom(timestamp_pb2.Timestamp(seconds=-10**12)),
         "promotion.start_time"),
    ],
)
def test_each_rule_names_its_field(api: Api, change, path: str) -> None:  # type: ignore[no-untyped-def]
    promotion = full_promotion()
    change(promotion)
    error = refused(lambda: api.create(promotion), INVALID)
    assert path in field_violations(error)


def test_the_largest_promotion_allowed_is_read_back_and_listed(api: Api) -> None:
    letters = "ABCDEFGHIJ"
    locales = [f"{a.lower()}{b.lower()}-{c}{a}" for a in letters for b in letters for c in letters]
    longest = "\U0001F600" * 255  # 255 characters of 4 bytes each
    largest = pb.Promotion(
        external_id="x" * 255,
        name={locale: longest for locale in locales},
        discounted_items=[pb.DiscountedItem(sku=f"{i:04d}" + "s" * 251,
                                            discount=pb.Discount(percent="12.50"))
                          for i in range(1000)],
        bonus=[pb.BonusItem(sku=f"{i:04d}" + "b" * 251, quantity=9) for i in range(1000)],
        excluded_promotions=[f"{i:04d}" + "e" * 251 for i in range(1000)],
    )
    assert len(locales) == 1000 and largest.ByteSize() > 1_500_000

    created = api.create(largest)

    assert without_output(api.get(largest.external_id)) == without_output(created)
    assert [p.external_id for p in api.list(page_size=1000).promotions] == [largest.external_id]
    largest.excluded_promotions.append("one-more")
    error = refused(lambda: api.update(largest, "excluded_promotions"), INVALID)
    assert field_violations(error) == {
        "promotion.excluded_promotions": "at most 1,000 entries are allowed"
    }


def test_update_ignores_a_bad_time_the_mask_leaves_out(api: Api) -> None:
    api.create(full_promotion())
    patch = pb.Promotion(external_id="summer-sale", name={"fr-FR": "Soldes"},
                         start_time=timestamp_pb2.Timestamp(seconds=10**15))

    updated = api.update(patch, "name")

    assert dict(updated.name) == {"fr-FR": "Soldes"}
    assert updated.start_time == full_promotion().start_time
    error = refused(lambda: api.update(patch, "name", "start_time"), INVALID)
    assert set(field_violations(error)) == {"promotion.start_time"}


def test_update_with_mask_changes_only_the_named_fields(api: Api) -> None:
    api.create(full_promotion())
    patch = pb.Promotion(external_id="summer-sale", name={"fr-FR": "Soldes"},
                         redeem_total_limit=5, discount=pb.Discount(percent="20"))
    updated = api.update(patch, "name", "redeem_total_limit")
    expected = full_promotion()
    expected.name.clear()
    expected.name["fr-FR"] = "Soldes"
    expected.redeem_total_limit = 5
    assert without_output(updated) == expected
    assert updated.update_time.ToDatetime() >= updated.create_time.ToDatetime()
    assert without_output(api.get("summer-sale")) == expected


def test_update_mask_can_clear_a_limit_and_a_message(api: Api) -> None:
    api.create(full_promotion())
    updated = api.update(pb.Promotion(external_id="summer-sale"),
                         "redeem_total_limit", "discount", "bonus")
    assert not updated.HasField("redeem_total_limit")
    assert not updated.HasField("discount")
    assert list(updated.bonus) == []
    assert updated.redeem_user_limit == 2


def test_empty_mask_replaces_every_mutable_field(api: Api) -> None:
    created = api.create(full_promotion())
    replacement = pb.Promotion(external_id="summer-sale", name={"en-US": "Replaced"})
    updated = api.update(replacement)
    expected = pb.Promotion(external_id="summer-sale", name={"en-US": "Replaced"},
                            state=pb.Promotion.ACTIVE)
    assert without_output(updated) == expected
    assert updated.create_time == created.create_time


def test_update_checks_the_merged_promotion_and_writes_nothing_on_error(api: Api) -> None:
    api.create(full_promotion())
    error = refused(lambda: api.update(
        pb.Promotion(external_id="summer-sale", end_time=at("2026-01-01T00:00:00Z"),
                     redeem_code_limit=0),
        "end_time", "redeem_code_limit"), INVALID)
    assert set(field_violations(error)) == {"promotion.end_time", "promotion.redeem_code_limit"}
    assert without_output(api.get("summer-sale")) == full_promotion()


def test_update_mask_paths_are_checked(api: Api) -> None:
    api.create(full_promotion())
    error = refused(lambda: api.update(
        pb.Promotion(external_id="summer-sale"), "name", "nope", "*"), INVALID)
    assert set(field_violations(error)) == {
        "update_mask.paths[1]", "update_mask.paths[2]", "promotion.name"  # named, left empty
    }
    ignored = api.update(pb.Promotion(external_id="summer-sale", redemption_count=99),
                         "redemption_count", "external_id")  # output only; names the promotion
    assert ignored.redemption_count == 0
    assert without_output(ignored) == full_promotion()


def test_a_star_mask_replaces_every_mutable_field(api: Api) -> None:
    api.create(full_promotion())
    replacement = pb.Promotion(external_id="summer-sale", name={"en-US": "Replaced"})

    updated = api.update(replacement, "*")

    assert without_output(updated) == pb.Promotion(
        external_id="summer-sale", name={"en-US": "Replaced"}, state=pb.Promotion.ACTIVE)


def test_a_bad_update_names_the_bad_mask_paths_and_values_at_once(api: Api) -> None:
    api.create(full_promotion())
    error = refused(lambda: api.update(
        pb.Promotion(external_id="summer-sale", name={"xx": "a"}, redeem_user_limit=0,
                     start_time=timestamp_pb2.Timestamp(seconds=-10**12)),
        "name", "redeem_user_limit", "bogus", "start_time"), INVALID)
    assert set(field_violations(error)) == {
        "promotion.start_time", "update_mask.paths[2]", "promotion.name['xx']",
        "promotion.redeem_user_limit",
    }
    nameless = refused(lambda: api.update(pb.Promotion(name={"xx": "a"}), "name", "bogus"),
                       INVALID)
    assert set(field_violations(nameless)) == {"promotion.external_id", "update_mask.paths[1]"}
    assert without_output(api.get("summer-sale")) == full_promotion()


def test_update_and_delete_of_a_missing_promotion_are_not_found(api: Api) -> None:
    refused(lambda: api.update(full_promotion("ghost")), NOT_FOUND)
    refused(lambda: api.delete("ghost"), NOT_FOUND)
    refused(lambda: api.get("ghost"), NOT_FOUND)
    error = refused(lambda: api.get(""), INVALID)
    assert "external_id" in field_violations(error)


def test_deleted_promotion_is_gone(api: Api) -> None:
    api.create(full_promotion())
    api.delete("summer-sale")
    refused(lambda: api.get("summer-sale"), NOT_FOUND)
    refused(lambda: api.delete("summer-sale"), NOT_FOUND)
    assert api.list().promotions == []


def test_pages_walk_every_promotion_once_even_with_inserts_between_pages(api: Api) -> None:
    for i in range(7):
        api.create(pb.Promotion(external_id=f"p{i}", name={"en-US": f"P{i}"}))
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = api.list(page_size=3, page_token=token)
        seen += [p.external_id for p in page.promotions]
        pages += 1
        if pages == 1:
            api.create(pb.Promotion(external_id="late", name={"en-US": "Late"}))
        token = page.next_page_token
        if not token:
            break
    assert seen == [f"p{i}" for i in range(7)] + ["late"]
    assert pages == 3


def test_list_filters_by_state_and_clamps_page_size(api: Api) -> None:
    api.create(pb.Promotion(external_id="on", name={"en-US": "On"}))
    api.create(pb.Promotion(external_id="off", name={"en-US": "Off"},
                            state=pb.Promotion.INACTIVE))
    assert [p.external_id for p in api.list(state=pb.Promotion.INACTIVE).promotions] == ["off"]
    assert [p.external_id for p in api.list(state=pb.Promotion.ACTIVE).promotions] == ["on"]
    everything = api.list(page_size=5000)
    assert [p.external_id for p in everything.promotions] == ["on", "off"]
    assert everything.next_page_token == ""


def test_bad_list_arguments_are_invalid(api: Api) -> None:
    for i in range(2):
        api.create(pb.Promotion(external_id=f"p{i}", name={"en-US": "P"}))
    assert "page_size" in field_violations(refused(lambda: api.list(page_size=-1), INVALID))
    assert "page_token" in field_violations(
        refused(lambda: api.list(page_token="garbage!"), INVALID))
    token = api.list(page_size=1).next_page_token
    error = refused(lambda: api.list(page_size=1, page_token=token,
                                     state=pb.Promotion.INACTIVE), INVALID)
    assert "page_token" in field_violations(error)
    assert "state" in field_violations(refused(lambda: api.list(state=9), INVALID))
    every = refused(lambda: api.list(page_size=-1, state=9, page_token="!!!"), INVALID)
    assert set(field_violations(every)) == {"page_size", "state", "page_token"}


def test_a_page_too_big_for_one_response_is_shortened_and_continues(
    db_url: str, running: Running
) -> None:
    # A server whose responses hold at most 300 KB; each promotion is about 52 KB.
    small = Settings(database_url=db_url, listen="127.0.0.1:0", max_message_bytes=300_000)
    server, port = create_server("127.0.0.1:0", db_url, small)
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            api = Api(promotion_pb2_grpc.PromotionServiceStub(channel),
                      running.new_project().admin_key)
            conditions = [
                pb.AttributeCondition(attribute=f"{i:03d}" + "a" * 252, operator=pb.EQ,
                                      type=pb.AttributeCondition.STRING, value="v" * 255)
                for i in range(100)
            ]
            for i in range(10):
                api.create(pb.Promotion(external_id=f"big-{i}", name={"en-US": "Big"},
                                        attribute_conditions=conditions))

            pages = [api.list(page_size=10)]
            while pages[-1].next_page_token:
                pages.append(api.list(page_size=10, page_token=pages[-1].next_page_token))
    finally:
        server.stop(None).wait()

    assert len(pages) > 1 and all(page.ByteSize() <= 300_000 for page in pages)
    listed = [p.external_id for page in pages for p in page.promotions]
    assert listed == [f"big-{i}" for i in range(10)]  # each once, in order
