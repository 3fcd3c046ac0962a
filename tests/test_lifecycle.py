"""The code lifecycle through a real server, on SQLite and PostgreSQL: attach and detach,
validate and activate, limits under concurrency, request ids, rollback, redemptions."""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import grpc
import psycopg2
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promo.v1 import code_pb2 as pb
from promo.v1 import (
    code_pb2_grpc,
    profile_pb2,
    profile_pb2_grpc,
    promotion_pb2,
    promotion_pb2_grpc,
)
from tests.conftest import Project, Running, bearer
from tests.processes import check
from tests.rpc import error_reason, field_violations, refused

FAILED = grpc.StatusCode.FAILED_PRECONDITION
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
CART = pb.Cart(currency="USD", items=[pb.CartItem(sku="shirt", quantity=2, unit_price="50.00")])


def ref(profile_id: str) -> profile_pb2.ProfileRef:
    return profile_pb2.ProfileRef(profile_id=profile_id)


@dataclass
class Api:
    codes: code_pb2_grpc.CodeServiceStub
    promotions: promotion_pb2_grpc.PromotionServiceStub
    key: str

    def promotion(self, external_id: str, **fields: Any) -> str:
        fields.setdefault("discount", promotion_pb2.Discount(percent="10"))
        self.promotions.CreatePromotion(
            promotion_pb2.CreatePromotionRequest(promotion=promotion_pb2.Promotion(
                external_id=external_id, name={"en-US": "P"}, **fields)),
            metadata=bearer(self.key),
        )
        return external_id

    def pool(self, promotion: str, *codes: str) -> None:
        self.codes.ImportCodes(
            iter([pb.ImportCodesRequest(spec=pb.ImportCodesRequest.Spec(
                promotion=promotion, mode=pb.ImportCodesRequest.Spec.APPEND)),
                pb.ImportCodesRequest(chunk="".join(f"{c}\n" for c in codes).encode())]),
            metadata=bearer(self.key),
        )

    def attach(self, profile: str, promotion: str, code: str | None = None) -> pb.Attachment:
        request = pb.AttachCodeRequest(profile=ref(profile), promotion=promotion)
        if code is not None:
            request.code = code
        return self.codes.AttachCode(request, metadata=bearer(self.key))

    def activate(self, code: str, profile: str, request_id: str = "",
                 cart: pb.Cart = CART) -> pb.Redemption:
        return self.codes.ActivateCode(
            pb.ActivateCodeRequest(code=code, profile=ref(profile), cart=cart,
                                   request_id=request_id),
            metadata=bearer(self.key),
        )

    def validate(self, code: str, profile: str, cart: pb.Cart = CART) -> pb.ValidateCodeResponse:
        return self.codes.ValidateCode(
            pb.ValidateCodeRequest(code=code, profile=ref(profile), cart=cart),
            metadata=bearer(self.key),
        )

    def code(self, code: str) -> pb.Code:
        return self.codes.GetCode(pb.GetCodeRequest(code=code), metadata=bearer(self.key))


@pytest.fixture
def api(running: Running, project: Project) -> Iterator[Api]:
    with running.channel() as channel:
        yield Api(code_pb2_grpc.CodeServiceStub(channel),
                  promotion_pb2_grpc.PromotionServiceStub(channel), project.admin_key)


def reason_of(call: Callable[[], Any], code: grpc.StatusCode) -> str:
    return error_reason(refused(call, code))[1]


# --- attach and detach -----------------------------------------------------------------


def test_attach_without_a_code_hands_out_the_oldest_then_the_global_pool(api: Api) -> None:
    promo = api.promotion("p", redeem_code_limit=1)
    api.pool(promo, "P-1", "P-2")
    api.pool("", "G-1")

    handed = [api.attach(f"u{i}", promo).code for i in range(3)]

    assert handed == ["P-1", "P-2", "G-1"]
    assert api.code("G-1").issued_for == promo
    assert reason_of(lambda: api.attach("u9", promo), EXHAUSTED) == "POOL_EMPTY"


def test_attach_with_a_code_follows_the_single_use_rules(api: Api) -> None:
    single = api.promotion("single", redeem_code_limit=1)
    shared = api.promotion("shared")
    api.pool(single, "S-1")
    api.pool(shared, "SH-1")

    first = api.attach("ann", single, "S-1")
    assert api.attach("ann", single, "s-1").attach_time == first.attach_time
    assert reason_of(lambda: api.attach("bob", single, "S-1"), FAILED) == "CODE_ALREADY_ATTACHED"
    api.attach("ann", shared, "SH-1")
    api.attach("bob", shared, "SH-1")
    assert api.code("SH-1").attachment_count == 2
    assert api.code("S-1").profile_id == "ann"

    new = api.attach("cid", single, "NEW-1")  # unknown: imported into the pool, then attached
    assert api.code(new.code).promotion == single
    assert reason_of(lambda: api.attach("dan", shared, "NEW-1"), FAILED) == "CODE_IN_OTHER_POOL"


def set_limit(api: Api, promotion: str, limit_field: str, limit: int | None) -> None:
    """UpdatePromotion of one of the promotion's limits; None lifts it."""
    changed = promotion_pb2.Promotion(external_id=promotion)
    if limit is not None:
        setattr(changed, limit_field, limit)
    api.promotions.UpdatePromotion(
        promotion_pb2.UpdatePromotionRequest(
            promotion=changed, update_mask=field_mask_pb2.FieldMask(paths=[limit_field])
        ),
        metadata=bearer(api.key),
    )


def exported_holders(api: Api, promotion: str) -> dict[str, str]:
    """Each code of the promotion's pool and the profile_id ExportCodes shows for it."""
    data = b"".join(response.chunk for response in api.codes.ExportCodes(
        pb.ExportCodesRequest(promotion=promotion), metadata=bearer(api.key)))
    return {row["code"]: row["profile_id"] for row in csv.DictReader(io.StringIO(data.decode()))}


def test_a_code_made_single_use_is_for_the_profiles_attached_to_it(api: Api) -> None:
    promo = api.promotion("p", redeem_code_limit=2)
    api.pool(promo, "TWO-1")
    api.attach("ann", promo, "TWO-1")
    api.attach("bob", promo, "TWO-1")

    set_limit(api, promo, "redeem_code_limit", 1)

    assert reason_of(lambda: api.attach("cid", promo, "TWO-1"), FAILED) == (
        "CODE_ALREADY_ATTACHED"
    )
    assert api.attach("bob", promo, "TWO-1").code == "TWO-1"  # bob's attachment, as it was
    assert api.code("TWO-1").attachment_count == 2
    answer = api.validate("TWO-1", "cid")
    assert (answer.valid, answer.reason) == (False, "CODE_ATTACHED_TO_OTHER_PROFILE")
    assert reason_of(lambda: api.activate("TWO-1", "cid"), FAILED) == (
        "CODE_ATTACHED_TO_OTHER_PROFILE"
    )
    assert api.code("TWO-1").redemption_count == 0
    assert api.activate("TWO-1", "bob").profile_id == "bob"
    assert reason_of(lambda: api.activate("TWO-1", "ann"), EXHAUSTED) == "CODE_LIMIT_REACHED"


@contextlib.contextmanager
def profile_being_created(db_url: str, project_id: int, profile_id: str) -> Iterator[None]:
    """Another client in the middle of creating the profile: a call that creates it too
    waits until the block ends (on SQLite, every write waits)."""
    if db_url.startswith("sqlite"):
        blocker: Any = sqlite3.connect(db_url.removeprefix("sqlite:///"))
        blocker.execute("BEGIN IMMEDIATE")
    else:
        blocker = psycopg2.connect(db_url)
        blocker.cursor().execute(
            "INSERT INTO profile (project_id, profile_id, attributes, create_time, update_time)"
            " VALUES (%s, %s, '{}', now(), now())", (project_id, profile_id))
    try:
        yield
    finally:
        blocker.rollback()
        blocker.close()


def test_an_attach_that_read_a_shared_promotion_made_single_use_meanwhile_takes_no_one_more(
    api: Api, running: Running, project: Project
) -> None:
    """bob's attach reads the promotion (shared), then waits to store bob; meanwhile the
    code is made single-use and ann attaches it. bob's attach must then be refused,
    not count as shared and drop ann's hold."""
    promo = api.promotion("p", redeem_code_limit=5)
    api.pool(promo, "RACE-1")
    api.attach("ann", promo, "RACE-2")  # ann exists: her attach stores no profile
    with ThreadPoolExecutor(max_workers=2) as calls:
        with profile_being_created(running.db_url, project.id, "bob"):
            bob = calls.submit(api.attach, "bob", promo, "RACE-1")
            time.sleep(0.3)  # bob's attach has read the promotion

            def made_single_use_then_ann() -> Any:
                set_limit(api, promo, "redeem_code_limit", 1)
                return api.attach("ann", promo, "RACE-1")

            ann = calls.submit(made_single_use_then_ann)
            time.sleep(0.3)
        answers = []
        for attaching in (bob, ann):
            try:
                answers.append(attaching.result(timeout=20).profile_id)
            except grpc.RpcError as error:
                answers.append(error_reason(error)[1])

    assert sorted(answers) in (["CODE_ALREADY_ATTACHED", "ann"], ["CODE_ALREADY_ATTACHED", "bob"])
    assert api.code("RACE-1").attachment_count == 1
    assert check(running.db_url)[0] == 0


@contextlib.contextmanager
def replace_in_progress(db_url: str, promotion: str, new_code: str) -> Iterator[None]:
    """Another server in the middle of a REPLACE of the promotion's pool with one new
    code: the old available codes retired, the new one added, not yet committed."""
    statements = [
        "UPDATE code SET retire_time = '2026-01-01 00:00:00' WHERE hand_out_time IS NULL "
        "AND promotion_id = (SELECT id FROM promotion WHERE external_id = ?)",
        "INSERT INTO code (project_id, promotion_id, code, code_key, active, attachment_count,"
        " redemption_count, create_time) SELECT project_id, id, ?, lower(?), TRUE, 0, 0,"
        " '2026-01-01 00:00:00' FROM promotion WHERE external_id = ?",
    ]
    params = [(promotion,), (new_code, new_code, promotion)]
    if db_url.startswith("sqlite"):
        other: Any = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        for statement, values in zip(statements, params, strict=True):
            other.execute(statement, values)
    else:
        other = psycopg2.connect(db_url)
        for statement, values in zip(statements, params, strict=True):
            other.cursor().execute(statement.replace("?", "%s"), values)
    try:
        yield
    finally:
        if db_url.startswith("sqlite"):
            other.execute("COMMIT")
        else:
            other.commit()
        other.close()


def test_a_hand_out_during_a_replace_waits_for_the_new_codes(
    api: Api, running: Running
) -> None:
    """On PostgreSQL the REPLACE holds every old code's row: skipping them all, a hand-out
    once took the global pool's code (or failed POOL_EMPTY) though the pool never ran dry."""
    promo = api.promotion("p", redeem_code_limit=1)
    api.pool(promo, "OLD-1", "OLD-2")
    api.pool("", "G-1")

    with ThreadPoolExecutor(max_workers=1) as calls:
        with replace_in_progress(running.db_url, promo, "NEW-1"):
            attaching = calls.submit(api.attach, "ann", promo)
            time.sleep(0.3)
            waited = not attaching.done()
        handed = attaching.result(timeout=20)

    assert (waited, handed.code) == (True, "NEW-1")
    assert not api.code("G-1").issued_for


def test_no_code_is_attached_after_a_concurrent_replace_retired_it(
    api: Api, running: Running
) -> None:
    promo = api.promotion("p")
    old = [f"OLD-{i}" for i in range(300)]
    api.pool(promo, *old)
    attached: list[str] = []

    def attaching(start: int) -> None:
        for code in old[start::4]:
            try:
                attached.append(api.attach(f"for-{code}", promo, code).code)
            except grpc.RpcError as error:
                assert error_reason(error)[1] == "CODE_RETIRED", error.details()

    with ThreadPoolExecutor(max_workers=5) as calls:
        started = [calls.submit(attaching, start) for start in range(4)]
        time.sleep(0.05)
        api.codes.ImportCodes(iter([  # REPLACE: retires every old code not handed out
            pb.ImportCodesRequest(spec=pb.ImportCodesRequest.Spec(promotion=promo)),
            pb.ImportCodesRequest(chunk="".join(f"NEW-{i}\n" for i in range(50)).encode())]),
            metadata=bearer(api.key))
        for attach in started:
            attach.result()

    assert attached and not [code for code in attached if api.code(code).retired]
    assert check(running.db_url)[0] == 0


def test_a_code_made_shared_is_held_by_no_one(api: Api, running: Running) -> None:
    promo = api.promotion("p", redeem_code_limit=1)
    api.pool(promo, "ONE-1", "ONE-2")
    api.attach("ann", promo, "ONE-1")
    api.attach("ann", promo, "ONE-2")

    set_limit(api, promo, "redeem_code_limit", 3)

    assert api.code("ONE-1").profile_id == ""
    assert exported_holders(api, promo) == {"ONE-1": "", "ONE-2": ""}
    assert api.validate("ONE-1", "cid").valid
    assert api.activate("ONE-1", "cid").profile_id == "cid"  # anyone may redeem a shared code
    api.attach("bob", promo, "ONE-1")
    assert api.activate("ONE-1", "bob").profile_id == "bob"
    assert api.code("ONE-1").attachment_count == 2
    assert check(running.db_url)[0] == 0

    set_limit(api, promo, "redeem_code_limit", 1)

    # ONE-2's holder binds it again; ONE-1 went to two profiles while it was shared.
    assert api.code("ONE-2").profile_id == "ann"
    assert exported_holders(api, promo)["ONE-2"] == "ann"
    assert reason_of(lambda: api.activate("ONE-2", "bob"), FAILED) == (
        "CODE_ATTACHED_TO_OTHER_PROFILE"
    )
    assert api.activate("ONE-2", "ann").profile_id == "ann"


def test_detach_without_a_profile_needs_a_single_holder(api: Api) -> None:
    shared = api.promotion("shared")
    api.pool(shared, "SH-1")
    api.attach("ann", shared, "SH-1")
    api.attach("bob", shared, "SH-1")

    assert reason_of(lambda: api.codes.DetachCode(pb.DetachCodeRequest(code="SH-1"),
                                                  metadata=bearer(api.key)), FAILED) == (
        "CODE_ATTACHED_TO_SEVERAL_PROFILES"
    )
    api.codes.DetachCode(pb.DetachCodeRequest(code="SH-1", profile=ref("ann")),
                         metadata=bearer(api.key))
    api.codes.DetachCode(pb.DetachCodeRequest(code="SH-1"), metadata=bearer(api.key))
    assert api.code("SH-1").attachment_count == 0


# --- validate and activate -------------------------------------------------------------


def test_activate_returns_the_reward_and_validate_agrees(api: Api) -> None:
    promo = api.promotion("ten")
    api.pool(promo, "TEN-1")

    checked = api.validate("TEN-1", "ann")
    redeemed = api.activate("TEN-1", "ann")

    assert checked.valid and checked.reward == redeemed.reward
    assert (redeemed.reward.cart_total, redeemed.reward.discount_total,
            redeemed.reward.final_total) == ("100.00", "10.00", "90.00")
    assert redeemed.state == pb.Redemption.REDEEMED
    assert api.code("TEN-1").redemption_count == 1


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ({"state": promotion_pb2.Promotion.INACTIVE}, "PROMOTION_INACTIVE"),
        ({"redeem_code_limit": 1}, "CODE_LIMIT_REACHED"),
        ({"redeem_user_limit": 1}, "USER_LIMIT_REACHED"),
        ({"redeem_total_limit": 1}, "TOTAL_LIMIT_REACHED"),
    ],
)
def test_each_refusal_has_its_reason(api: Api, setup: dict[str, Any], reason: str) -> None:
    promo = api.promotion("p", **setup)
    api.pool(promo, "C-1", "C-2")
    if reason != "PROMOTION_INACTIVE":
        api.activate("C-1", "ann")
    code = "C-1" if reason == "CODE_LIMIT_REACHED" else "C-2"

    status = FAILED if reason == "PROMOTION_INACTIVE" else EXHAUSTED
    assert reason_of(lambda: api.activate(code, "ann"), status) == reason
    answer = api.validate(code, "ann")
    assert (answer.valid, answer.reason) == (False, reason)


def test_only_an_activation_that_passes_stores_a_new_profile(
    api: Api, running: Running
) -> None:
    promo = api.promotion("p", redeem_total_limit=1)
    api.pool(promo, "N-1", "N-2")
    api.activate("N-1", "ann")

    def stored(profile_id: str) -> bool:
        with running.channel() as channel:
            try:
                profile_pb2_grpc.ProfileServiceStub(channel).GetProfile(
                    profile_pb2.GetProfileRequest(profile=ref(profile_id)),
                    metadata=bearer(api.key),
                )
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.NOT_FOUND
                return False
        return True

    assert reason_of(lambda: api.activate("N-2", "newcomer"), EXHAUSTED) == (
        "TOTAL_LIMIT_REACHED"
    )
    assert not stored("newcomer")
    set_limit(api, promo, "redeem_user_limit", 1)  # a limit the read does not show for her
    assert reason_of(lambda: api.activate("N-2", "newcomer"), EXHAUSTED) == (
        "TOTAL_LIMIT_REACHED"
    )
    assert not stored("newcomer")
    assert api.code("N-2").redemption_count == 0

    set_limit(api, promo, "redeem_total_limit", 2)
    assert api.activate("N-2", "newcomer").profile_id == "newcomer"
    assert stored("newcomer")


def test_an_attached_single_use_code_is_for_its_holder_only(api: Api) -> None:
    promo = api.promotion("p", redeem_code_limit=1)
    api.pool(promo, "H-1")
    api.attach("ann", promo, "H-1")

    assert reason_of(lambda: api.activate("H-1", "bob"), FAILED) == (
        "CODE_ATTACHED_TO_OTHER_PROFILE"
    )
    assert api.activate("H-1", "ann").profile_id == "ann"


def test_the_same_request_id_redeems_once(api: Api) -> None:
    promo = api.promotion("p")
    api.pool(promo, "R-1")

    first = api.activate("R-1", "ann", request_id="order-1")
    again = api.activate("R-1", "ann", request_id="order-1")

    assert again.id == first.id
    assert api.code("R-1").redemption_count == 1


def test_a_repeated_request_id_gets_its_redemption_after_the_code_is_used_up(api: Api) -> None:
    promo = api.promotion("p", redeem_code_limit=1)
    api.pool(promo, "U-1")
    first = api.activate("U-1", "ann", request_id="order-2")

    assert reason_of(lambda: api.activate("U-1", "ann"), EXHAUSTED) == "CODE_LIMIT_REACHED"
    assert api.activate("U-1", "ann", request_id="order-2").id == first.id
    assert api.code("U-1").redemption_count == 1


def test_a_request_id_reused_for_another_code_or_profile_is_refused(api: Api) -> None:
    promo = api.promotion("p")
    api.pool(promo, "R-1", "R-2")
    first = api.activate("R-1", "ann", request_id="order-3")

    for code, profile in (("R-2", "ann"), ("R-1", "bob")):
        error = refused(lambda code=code, profile=profile: api.activate(
            code, profile, request_id="order-3"), grpc.StatusCode.ALREADY_EXISTS)
        assert "order-3" in error.details() and first.id in error.details()

    assert api.code("R-2").redemption_count == 0
    assert api.activate("r-1", "ann", request_id="order-3").id == first.id  # codes ignore case
    other_cart = pb.Cart(currency="USD", items=[pb.CartItem(sku="hat", quantity=1,
                                                            unit_price="9.00")])
    assert api.activate("R-1", "ann", request_id="order-3", cart=other_cart).id == first.id


def test_an_updated_promotion_rewards_and_limits_by_its_new_rules(api: Api) -> None:
    promo = api.promotion("p")
    api.pool(promo, "V-1", "V-2", "V-3")
    assert api.activate("V-1", "ann").reward.discount_total == "10.00"  # 10% of 100.00

    api.promotions.UpdatePromotion(
        promotion_pb2.UpdatePromotionRequest(
            promotion=promotion_pb2.Promotion(
                external_id=promo, discount=promotion_pb2.Discount(percent="25"),
                redeem_total_limit=2,
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["discount", "redeem_total_limit"]),
        ),
        metadata=bearer(api.key),
    )

    assert api.activate("V-2", "ann").reward.discount_total == "25.00"
    assert reason_of(lambda: api.activate("V-3", "ann"), EXHAUSTED) == "TOTAL_LIMIT_REACHED"


def test_rollback_gives_the_use_back_once(api: Api) -> None:
    promo = api.promotion("p", redeem_code_limit=1)
    api.pool(promo, "B-1")
    redeemed = api.activate("B-1", "ann")

    rolled = api.codes.RollbackRedemption(
        pb.RollbackRedemptionRequest(redemption_id=redeemed.id, reason="refund"),
        metadata=bearer(api.key),
    )

    assert rolled.state == pb.Redemption.ROLLED_BACK and rolled.rollback_reason == "refund"
    assert reason_of(lambda: api.codes.RollbackRedemption(
        pb.RollbackRedemptionRequest(redemption_id=redeemed.id), metadata=bearer(api.key)),
        FAILED) == "ALREADY_ROLLED_BACK"
    assert api.activate("B-1", "ann").state == pb.Redemption.REDEEMED
    listed = api.codes.ListRedemptions(pb.ListRedemptionsRequest(code="B-1"),
                                       metadata=bearer(api.key))
    assert [r.state for r in listed.redemptions] == [pb.Redemption.REDEEMED,
                                                     pb.Redemption.ROLLED_BACK]
    assert {r.promotion for r in listed.redemptions} == {promo}


# --- concurrency ------------------------------------------------------------------------


def in_parallel(calls: list[Callable[[], Any]]) -> list[Any]:
    """Runs the calls at once; each result is the answer or the grpc.RpcError."""
    start = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        start.wait()
        try:
            return call()
        except grpc.RpcError as error:
            return error

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def reasons(results: list[Any]) -> list[str]:
    return sorted(error_reason(r)[1] for r in results if isinstance(r, grpc.RpcError))


@pytest.mark.parametrize(
    ("limits", "codes", "profiles", "allowed", "reason"),
    [
        ({"redeem_code_limit": 5}, 1, 100, 5, "CODE_LIMIT_REACHED"),
        ({"redeem_user_limit": 3}, 100, 1, 3, "USER_LIMIT_REACHED"),
        ({"redeem_total_limit": 7}, 100, 100, 7, "TOTAL_LIMIT_REACHED"),
    ],
)
def test_concurrent_activations_never_exceed_a_limit(
    api: Api, limits: dict[str, int], codes: int, profiles: int, allowed: int, reason: str
) -> None:
    promo = api.promotion("hot", **limits)
    api.pool(promo, *[f"HOT-{i}" for i in range(codes)])
    calls = [
        (lambda i=i: api.activate(f"HOT-{i % codes}", f"u{i % profiles}"))
        for i in range(100)
    ]

    results = in_parallel(calls)

    redeemed = [r for r in results if isinstance(r, pb.Redemption)]
    assert len(redeemed) == allowed
    assert reasons(results) == [reason] * (100 - allowed)
    promotion = api.promotions.GetPromotion(
        promotion_pb2.GetPromotionRequest(external_id=promo), metadata=bearer(api.key))
    assert promotion.redemption_count == allowed


def test_concurrent_attaches_hand_each_code_out_once(api: Api) -> None:
    promo = api.promotion("drain", redeem_code_limit=1)
    api.pool(promo, *[f"D-{i}" for i in range(15)])
    api.pool("", *[f"G-{i}" for i in range(10)])

    results = in_parallel([(lambda i=i: api.attach(f"u{i}", promo)) for i in range(30)])

    handed = [r.code for r in results if isinstance(r, pb.Attachment)]
    assert len(handed) == len(set(handed)) == 25
    assert reasons(results) == ["POOL_EMPTY"] * 5


def test_the_same_request_id_fired_concurrently_redeems_once(api: Api) -> None:
    promo = api.promotion("p")
    api.pool(promo, "SAME-1")

    results = in_parallel([lambda: api.activate("SAME-1", "ann", request_id="r-1")] * 12)

    assert {r.id for r in results if isinstance(r, pb.Redemption)} == {results[0].id}
    assert api.code("SAME-1").redemption_count == 1


# --- validate and activate agree -------------------------------------------------------

_NUMBERS = itertools.count()  # names unique across examples sharing one server
PRICES = st.decimals(min_value="0.01", max_value="999.99", places=2).map(str)
PERCENTS = st.decimals(min_value="0.01", max_value="100", places=2).map(str)


@given(
    percent=PERCENTS,
    lines=st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(1, 5), PRICES),
                   min_size=1, max_size=4),
    floor=st.none() | PRICES,
)
@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_validate_and_activate_agree(
    api: Api, percent: str, lines: list[tuple[str, int, str]], floor: str | None
) -> None:
    number = next(_NUMBERS)
    conditions = (
        [promotion_pb2.PriceCondition(operator=promotion_pb2.GE, value=floor)] if floor else []
    )
    promo = api.promotion(f"agree-{number}", discount=promotion_pb2.Discount(percent=percent),
                          item_price_conditions=conditions)
    api.pool(promo, f"AGREE-{number}")
    cart = pb.Cart(currency="USD", items=[pb.CartItem(sku=s, quantity=q, unit_price=p)
                                          for s, q, p in lines])

    checked = api.validate(f"AGREE-{number}", "ann", cart)
    try:
        redeemed = api.activate(f"AGREE-{number}", "ann", cart=cart)
    except grpc.RpcError as error:
        assert (checked.valid, checked.reason) == (False, error_reason(error)[1])
    else:
        assert checked.valid and checked.reward == redeemed.reward
        assert Decimal(redeemed.reward.final_total) >= 0



# --- more refusals ---------------------------------------------------------------------

LATER = timestamp_pb2.Timestamp(seconds=4_000_000_000)
EARLIER = timestamp_pb2.Timestamp(seconds=1_000_000_000)
EARLIER_END = timestamp_pb2.Timestamp(seconds=1_000_000_001)


@pytest.mark.parametrize(
    ("promotion", "change", "reason"),
    [
        ({}, {"active": False}, "CODE_INACTIVE"),
        ({}, {"expire_time": EARLIER}, "CODE_EXPIRED"),
        ({"start_time": LATER}, {}, "PROMOTION_NOT_STARTED"),
        ({"start_time": EARLIER, "end_time": EARLIER_END}, {}, "PROMOTION_ENDED"),
        ({"price_conditions": [promotion_pb2.PriceCondition(operator=promotion_pb2.GE,
                                                             value="500")]},
         {}, "CONDITIONS_NOT_MET"),
        ({"excluded_promotions": ["other"]}, {"applied": ["other"]}, "PROMOTION_EXCLUDED"),
    ],
)
def test_refusals_before_the_limits(
    api: Api, promotion: dict[str, Any], change: dict[str, Any], reason: str
) -> None:
    promo = api.promotion("p", **promotion)
    api.pool(promo, "X-1")
    change = dict(change)  # the table is shared by both backends' runs
    applied = change.pop("applied", [])
    if change:
        api.codes.UpdateCode(
            pb.UpdateCodeRequest(code=pb.Code(code="X-1", **change),
                                 update_mask=field_mask_pb2.FieldMask(paths=list(change))),
            metadata=bearer(api.key),
        )
    request = pb.ActivateCodeRequest(code="X-1", profile=ref("ann"), cart=CART,
                                     applied_promotions=applied)

    error = refused(lambda: api.codes.ActivateCode(request, metadata=bearer(api.key)), FAILED)

    assert error_reason(error) == ("promo.v1", reason)
    answer = api.codes.ValidateCode(
        pb.ValidateCodeRequest(code="X-1", profile=ref("ann"), cart=CART,
                               applied_promotions=applied),
        metadata=bearer(api.key),
    )
    assert (answer.valid, answer.reason) == (False, reason)
    assert api.code("X-1").redemption_count == 0


def test_a_retired_code_is_refused(api: Api) -> None:
    promo = api.promotion("p")
    api.pool(promo, "OLD-1")
    api.codes.ImportCodes(
        iter([pb.ImportCodesRequest(spec=pb.ImportCodesRequest.Spec(promotion=promo)),
              pb.ImportCodesRequest(chunk=b"NEW-1\n")]),
        metadata=bearer(api.key),
    )

    assert reason_of(lambda: api.activate("OLD-1", "ann"), FAILED) == "CODE_RETIRED"


def test_a_global_code_never_issued_redeems_once_with_an_empty_reward(api: Api) -> None:
    api.pool("", "FREE-1")

    redeemed = api.activate("FREE-1", "ann")

    assert redeemed.promotion == ""
    assert (redeemed.reward.cart_total, redeemed.reward.discount_total) == ("100.00", "0.00")
    assert reason_of(lambda: api.activate("FREE-1", "ann"), EXHAUSTED) == "CODE_LIMIT_REACHED"


def test_a_global_code_issued_for_a_promotion_redeems_once(api: Api) -> None:
    promo = api.promotion("p")  # no redeem_code_limit: its own codes redeem without limit
    api.pool("", "G-1")
    assert api.attach("ann", promo).code == "G-1"

    api.activate("G-1", "ann")

    assert reason_of(lambda: api.activate("G-1", "ann"), EXHAUSTED) == "CODE_LIMIT_REACHED"
    assert not api.validate("G-1", "ann").valid
    assert api.code("G-1").redemption_count == 1


def test_a_global_code_issued_for_a_deleted_promotion_is_retired_with_it(api: Api) -> None:
    promo = api.promotion("gone")
    api.pool("", "G-1", "G-2")
    assert api.attach("ann", promo).code == "G-1"

    api.promotions.DeletePromotion(promotion_pb2.DeletePromotionRequest(external_id=promo),
                                   metadata=bearer(api.key))

    assert api.code("G-1").retired
    assert api.validate("G-1", "ann").reason == "CODE_RETIRED"
    assert reason_of(lambda: api.activate("G-1", "ann"), FAILED) == "CODE_RETIRED"
    assert not api.code("G-2").retired  # never issued: still the global pool's to hand out
    assert api.attach("bob", api.promotion("next")).code == "G-2"


def test_redemptions_page_by_promotion_and_profile(api: Api) -> None:
    promo = api.promotion("p")
    api.pool(promo, *[f"L-{i}" for i in range(7)])
    for i in range(7):
        api.activate(f"L-{i}", "ann" if i % 2 else "bob")

    def every(**fields: Any) -> list[str]:
        seen, token = [], ""
        while True:
            page = api.codes.ListRedemptions(
                pb.ListRedemptionsRequest(page_size=2, page_token=token, **fields),
                metadata=bearer(api.key))
            seen += [r.code for r in page.redemptions]
            token = page.next_page_token
            if not token:
                return seen

    assert every(promotion=promo) == [f"L-{i}" for i in reversed(range(7))]  # newest first
    assert every(profile=ref("ann")) == ["L-5", "L-3", "L-1"]
    assert every(profile=ref("nobody")) == []
    two = refused(lambda: every(promotion=promo, code="L-1"), grpc.StatusCode.INVALID_ARGUMENT)
    assert "at most one" in field_violations(two)["code"]


# --- bad requests ---------------------------------------------------------------------

BAD_CART = pb.Cart(currency="usd", items=[pb.CartItem(sku="a", quantity=0, unit_price="x")])
NO_ONE = profile_pb2.ProfileRef(profile_id="")


@pytest.mark.parametrize(
    ("call", "fields"),
    [
        ("AttachCode", pb.AttachCodeRequest(code="bad code!")),
        ("DetachCode", pb.DetachCodeRequest(profile=NO_ONE)),
        ("ListCodes", pb.ListCodesRequest(profile=NO_ONE, filter=99, page_size=-1,
                                          page_token="zz")),
        ("ListRedemptions", pb.ListRedemptionsRequest(code="bad code!", profile=NO_ONE,
                                                      page_size=-1, page_token="zz")),
        ("ValidateCode", pb.ValidateCodeRequest(code="bad code!", cart=BAD_CART)),
        ("ActivateCode", pb.ActivateCodeRequest(cart=BAD_CART, request_id="r" * 300,
                                                attributes={"a b": "x"},
                                                applied_promotions=["ok", "no such!"])),
        ("RollbackRedemption", pb.RollbackRedemptionRequest(reason="x" * 1025)),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_a_bad_request_names_every_bad_field_at_once(
    api: Api, call: str, fields: Any
) -> None:
    expected = {
        "AttachCode": {"profile", "promotion", "code"},
        "DetachCode": {"code", "profile.profile_id"},
        "ListCodes": {"profile.profile_id", "filter", "page_size", "page_token"},
        "ListRedemptions": {"code", "profile", "profile.profile_id", "page_size", "page_token"},
        "ValidateCode": {"code", "profile", "cart.currency", "cart.items[0].quantity",
                         "cart.items[0].unit_price"},
        "ActivateCode": {"code", "profile", "cart.currency", "cart.items[0].quantity",
                         "cart.items[0].unit_price", "request_id", "attributes['a b']",
                         "applied_promotions[1]"},
        "RollbackRedemption": {"redemption_id", "reason"},
    }[call]

    error = refused(lambda: getattr(api.codes, call)(fields, metadata=bearer(api.key)),
                    grpc.StatusCode.INVALID_ARGUMENT)

    assert set(field_violations(error)) == expected


MALFORMED = "no such!"


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda api, md: api.promotions.GetPromotion(
            promotion_pb2.GetPromotionRequest(external_id=MALFORMED), metadata=md),
         "external_id"),
        (lambda api, md: api.promotions.DeletePromotion(
            promotion_pb2.DeletePromotionRequest(external_id=MALFORMED), metadata=md),
         "external_id"),
        (lambda api, md: api.promotions.UpdatePromotion(promotion_pb2.UpdatePromotionRequest(
            promotion=promotion_pb2.Promotion(external_id=MALFORMED),
            update_mask=field_mask_pb2.FieldMask(paths=["state"])), metadata=md),
         "promotion.external_id"),
        (lambda api, md: api.codes.AttachCode(
            pb.AttachCodeRequest(promotion=MALFORMED, profile=ref("ann")), metadata=md),
         "promotion"),
        (lambda api, md: api.codes.ListCodes(pb.ListCodesRequest(promotion=MALFORMED),
                                             metadata=md), "promotion"),
        (lambda api, md: api.codes.ListRedemptions(
            pb.ListRedemptionsRequest(promotion=MALFORMED), metadata=md), "promotion"),
        (lambda api, md: api.codes.GenerateCodes(
            pb.GenerateCodesRequest(promotion=MALFORMED, pattern="A-####", count=1),
            metadata=md), "promotion"),
        (lambda api, md: list(api.codes.ExportCodes(
            pb.ExportCodesRequest(promotion=MALFORMED), metadata=md)), "promotion"),
        (lambda api, md: api.codes.ImportCodes(iter([
            pb.ImportCodesRequest(spec=pb.ImportCodesRequest.Spec(promotion=MALFORMED)),
            pb.ImportCodesRequest(chunk=b"A-1\n")]), metadata=md), "spec.promotion"),
    ],
    ids=["GetPromotion", "DeletePromotion", "UpdatePromotion", "AttachCode", "ListCodes",
         "ListRedemptions", "GenerateCodes", "ExportCodes", "ImportCodes"],
)
def test_a_promotion_id_no_promotion_could_have_is_a_bad_field(
    api: Api, call: Callable[[Api, Any], Any], field: str
) -> None:
    error = refused(lambda: call(api, bearer(api.key)), grpc.StatusCode.INVALID_ARGUMENT)

    assert field_violations(error) == {field: "must be 1..255 characters of [-_.A-Za-z0-9]"}


# --- no deadlocks between concurrent writers ------------------------------------------


def test_concurrent_activations_and_rollbacks_of_one_profile_all_go_through(api: Api) -> None:
    """Rollbacks once locked the promotion before the profile's usage, activations the
    other way round: on PostgreSQL some of each died in a deadlock (UNAVAILABLE)."""
    promo = api.promotion("busy")
    api.pool(promo, *[f"RB-{i}" for i in range(60)])
    earlier = [api.activate(f"RB-{i}", "ann") for i in range(30)]

    def roll_back(redemption: pb.Redemption) -> pb.Redemption:
        return api.codes.RollbackRedemption(
            pb.RollbackRedemptionRequest(redemption_id=redemption.id), metadata=bearer(api.key))

    results = in_parallel([
        call for i in range(30) for call in (
            lambda i=i: api.activate(f"RB-{30 + i}", "ann"),
            lambda i=i: roll_back(earlier[i]),
        )
    ])

    assert [r for r in results if not isinstance(r, pb.Redemption)] == []
    total = api.promotions.GetPromotion(
        promotion_pb2.GetPromotionRequest(external_id=promo), metadata=bearer(api.key))
    assert total.redemption_count == 30


def test_concurrent_imports_and_hand_outs_of_one_pool_all_go_through(api: Api) -> None:
    """An import locked its promotion FOR UPDATE, which the foreign-key checks of a
    concurrent AttachCode wait for: on PostgreSQL the two could deadlock."""
    promo = api.promotion("stocked", redeem_code_limit=1)
    api.pool(promo, *[f"ST-{i}" for i in range(40)])

    results = in_parallel([
        call for i in range(20) for call in (
            lambda i=i: api.attach(f"u{i}", promo),
            lambda i=i: api.pool(promo, *[f"ST-{100 + 10 * i + j}" for j in range(10)]),
        )
    ])

    assert [r for r in results if isinstance(r, grpc.RpcError)] == []
    assert len({r.code for r in results if isinstance(r, pb.Attachment)}) == 20
