"""PromoClient over the code lifecycle and profiles, against a real server on SQLite and
PostgreSQL: upserting and finding profiles, attaching and detaching codes, validating and
activating them against carts, request ids, rollback and the redemption lists."""

from __future__ import annotations

import contextlib
import io
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from promo import errors
from promo.client import PromoClient
from promo.v1 import code_pb2, profile_pb2
from tests.conftest import Project, Running

EXAMPLE = Path(__file__).parent.parent / "examples" / "promotion.json"

# 2 x 25.00 + 9.99 = 59.99; 10% of it, rounded once, is 6.00.
CART = {
    "currency": "USD",
    "items": [
        {"sku": "shirt", "quantity": 2, "unit_price": "25.00"},
        {"sku": "socks", "quantity": 1, "unitPrice": "9.99"},
    ],
}


@pytest.fixture
def client(running: Running, project: Project) -> Iterator[PromoClient]:
    with PromoClient(running.target, project.admin_key) as client:
        yield client


def promotion(client: PromoClient, external_id: str, *codes: str, **fields: object) -> str:
    """A 10% promotion with `codes` in its pool."""
    client.create_promotion(
        {
            "externalId": external_id,
            "name": {"en-US": external_id},
            "discount": {"percent": "10"},
            **fields,
        }
    )
    if codes:
        client.import_csv(io.BytesIO("".join(f"{c}\n" for c in codes).encode()), external_id)
    return external_id


def test_a_profile_is_upserted_and_found_by_each_mode(client: PromoClient) -> None:
    created = client.upsert_profile(
        {
            "profileId": "ann-42",
            "email": "ann@example.com",
            "phone": "+100",
            "custom_fields": {"crm_id": "C-7"},
            "attributes": {"tier": "gold"},
        }
    )

    for ref in (
        "ann-42",
        {"profile_id": "ann-42"},
        {"profileId": "ann-42"},  # either case, as every other mapping the client takes
        {"email": "ann@example.com"},
        {"phone": "+100"},
        {"custom": {"field": "crm_id", "value": "C-7"}},
        profile_pb2.ProfileRef(email="ann@example.com"),
    ):
        assert client.get_profile(ref) == created, ref
    assert dict(created.attributes) == {"tier": "gold"}

    replaced = client.upsert_profile(profile_pb2.Profile(profile_id="ann-42", phone="+200"))

    assert (replaced.email, replaced.phone, dict(replaced.custom_fields)) == ("", "+200", {})
    assert replaced.create_time == created.create_time
    with pytest.raises(errors.NotFound):
        client.get_profile({"email": "ann@example.com"})
    with pytest.raises(errors.NotFound):
        client.get_profile("nobody")


def test_attach_hands_out_codes_and_detach_takes_them_back(client: PromoClient) -> None:
    single = promotion(client, "single", "S-1", "S-2", redeemCodeLimit="1")
    client.upsert_profile({"profileId": "bob", "email": "bob@example.com"})

    handed = client.attach_code("ann", single)
    chosen = client.attach_code({"email": "bob@example.com"}, single, "s-2")

    assert (handed.code, handed.promotion, handed.profile_id) == ("S-1", single, "ann")
    assert (chosen.code, chosen.profile_id) == ("S-2", "bob")
    assert [code.code for code in client.iter_codes(profile="ann")] == ["S-1"]
    with pytest.raises(errors.FailedPrecondition) as taken:
        client.attach_code("ann", single, "S-2")
    assert taken.value.reason == "CODE_ALREADY_ATTACHED"
    with pytest.raises(errors.ResourceExhausted) as empty:
        client.attach_code("cid", single)
    assert empty.value.reason == "POOL_EMPTY"

    client.detach_code("S-1", "ann")
    client.detach_code("S-2")

    assert client.get_code("S-1").attachment_count == 0
    assert client.get_code("S-2").profile_id == ""


def test_validate_and_activate_agree(client: PromoClient) -> None:
    promo = promotion(client, "ten", "TEN-1")

    checked = client.validate_code("ten-1", "ann", CART)
    redeemed = client.activate_code("TEN-1", "ann", CART)

    assert checked.valid and checked.reason == ""
    assert checked.reward == redeemed.reward
    reward = redeemed.reward
    assert (reward.cart_total, reward.discount_total, reward.final_total) == (
        "59.99",
        "6.00",
        "53.99",
    )
    assert [(item.sku, item.quantity, item.unit_price) for item in reward.items] == [
        ("shirt", 2, "25.00"),
        ("socks", 1, "9.99"),
    ]
    assert (redeemed.code, redeemed.profile_id) == ("TEN-1", "ann")
    assert redeemed.state == code_pb2.Redemption.REDEEMED
    # Without a request id of the caller's, the client sends one of its own.
    assert uuid.UUID(redeemed.request_id).version == 4
    assert client.get_promotion(promo).redemption_count == 1


def test_a_cart_message_attributes_and_applied_promotions_reach_the_server(
    client: PromoClient,
) -> None:
    promotion(client, "rival")
    promotion(
        client,
        "gold",
        "G-1",
        attributeConditions=[
            {"attribute": "tier", "type": "STRING", "operator": "EQ", "value": "gold"}
        ],
        excludedPromotions=["rival"],
    )
    cart = code_pb2.Cart(
        currency="USD", items=[code_pb2.CartItem(sku="hat", quantity=1, unit_price="30")]
    )

    plain = client.validate_code("G-1", "ann", cart)
    gold = client.validate_code("G-1", "ann", cart, attributes={"tier": "gold"})
    excluded = client.validate_code(
        "G-1", "ann", cart, attributes={"tier": "gold"}, applied_promotions=["rival"]
    )

    assert (plain.valid, plain.reason) == (False, "CONDITIONS_NOT_MET")
    assert gold.valid and gold.reward.final_total == "27.00"
    assert (excluded.valid, excluded.reason) == (False, "PROMOTION_EXCLUDED")
    with pytest.raises(errors.FailedPrecondition) as refused:
        client.activate_code("G-1", "ann", cart)
    assert refused.value.reason == "CONDITIONS_NOT_MET"


def test_the_same_request_id_redeems_once_and_fresh_ones_redeem_again(
    client: PromoClient,
) -> None:
    promotion(client, "shared", "SH-1")

    first = client.activate_code("SH-1", "ann", CART, request_id="order-1001")
    again = client.activate_code("SH-1", "ann", CART, request_id="order-1001")
    other = client.activate_code("SH-1", "ann", CART)
    another = client.activate_code("SH-1", "ann", CART)

    same = ("id", "code", "profile_id", "reward", "state", "request_id", "create_time")
    assert [getattr(again, field) for field in same] == [getattr(first, field) for field in same]
    assert first.request_id == "order-1001"
    assert len({first.id, other.id, another.id}) == 3
    assert client.get_code("SH-1").redemption_count == 3


def test_a_refused_activation_raises_the_reason_validate_gives(client: PromoClient) -> None:
    promotion(client, "once", "O-1", redeemCodeLimit="1")
    client.activate_code("O-1", "ann", CART)

    answer = client.validate_code("O-1", "bob", CART)

    assert (answer.valid, answer.reason) == (False, "CODE_LIMIT_REACHED")
    assert not answer.HasField("reward")
    with pytest.raises(errors.ResourceExhausted) as refused:
        client.activate_code("O-1", "bob", CART)
    assert refused.value.reason == "CODE_LIMIT_REACHED"


def test_rollback_gives_the_use_back_once(client: PromoClient) -> None:
    promotion(client, "once", "B-1", redeemCodeLimit="1")
    redeemed = client.activate_code("B-1", "ann", CART)

    rolled = client.rollback_redemption(redeemed.id, reason="order cancelled")

    assert rolled.id == redeemed.id
    assert rolled.state == code_pb2.Redemption.ROLLED_BACK
    assert rolled.rollback_reason == "order cancelled" and rolled.HasField("rollback_time")
    assert client.validate_code("B-1", "ann", CART).valid
    with pytest.raises(errors.FailedPrecondition) as twice:
        client.rollback_redemption(redeemed.id)
    assert twice.value.reason == "ALREADY_ROLLED_BACK"
    with pytest.raises(errors.NotFound):
        client.rollback_redemption(str(uuid.uuid4()))


def test_redemptions_are_listed_a_page_at_a_time_and_by_filter(client: PromoClient) -> None:
    promotion(client, "a", "A-1")
    promotion(client, "b", "B-1")
    client.upsert_profile({"profileId": "ann", "email": "ann@example.com"})
    made = [client.activate_code("A-1", profile, CART).id for profile in ("ann", "bob", "cid")]
    made.append(client.activate_code("B-1", "ann", CART).id)
    made.append(client.activate_code("B-1", "bob", CART).id)

    first = client.list_redemptions(page_size=2)
    second = client.list_redemptions(page_size=2, page_token=first.next_page_token)
    every = [r.id for r in client.iter_redemptions(page_size=2)]

    assert len(first.redemptions) == len(second.redemptions) == 2
    assert first.next_page_token and second.next_page_token
    assert sorted(every) == sorted(made)
    assert [r.id for r in [*first.redemptions, *second.redemptions]] == every[:4]
    assert len([r.id for r in client.iter_redemptions(promotion="a")]) == 3
    assert {r.profile_id for r in client.iter_redemptions(code="b-1")} == {"ann", "bob"}
    by_email = client.list_redemptions(profile={"email": "ann@example.com"})
    assert {r.code for r in by_email.redemptions} == {"A-1", "B-1"}
    assert [r.code for r in client.iter_redemptions(profile="cid")] == ["A-1"]


def test_a_redemption_read_back_names_its_promotion(client: PromoClient) -> None:
    promo = promotion(client, "named", "N-1")
    redeemed = client.activate_code("N-1", "ann", CART, request_id="order-1")

    again = client.activate_code("N-1", "ann", CART, request_id="order-1")
    [listed] = client.list_redemptions(code="N-1").redemptions
    rolled = client.rollback_redemption(redeemed.id)

    assert redeemed.promotion == promo
    assert [again.promotion, listed.promotion, rolled.promotion] == [promo] * 3


def test_the_readme_snippet_runs(client: PromoClient) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    [snippet] = [
        block
        for block in re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
        if "activate_code(" in block
    ]
    # The example's rules, without its time window: this test is about the snippet.
    example = json.loads(EXAMPLE.read_text())
    client.create_promotion({k: v for k, v in example.items() if not k.endswith("Time")})
    client.import_csv(io.BytesIO(b"SUMMER-1\n"), "summer-sale")
    printed = io.StringIO()

    with contextlib.redirect_stdout(printed):
        exec(snippet, {"client": client})

    redemption = next(client.iter_redemptions(promotion="summer-sale"))
    assert printed.getvalue().splitlines() == [
        "42.50",
        f"{redemption.id} SUMMER-1 7.50",
    ]
    assert redemption.state == code_pb2.Redemption.ROLLED_BACK
