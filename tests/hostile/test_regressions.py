"""What the hostile campaign found, each pinned by a plain example, on SQLite and PostgreSQL."""

from __future__ import annotations

import grpc
import pytest

from promo.v1 import code_pb2 as code
from promo.v1 import code_pb2_grpc, profile_pb2, promotion_pb2, promotion_pb2_grpc
from tests.hostile import harness
from tests.hostile.strategies import METHODS
from tests.rpc import field_violations, refused, violation_list

INVALID = grpc.StatusCode.INVALID_ARGUMENT
BY_NAME = {method.name: method for method in METHODS}


@pytest.mark.parametrize("name, body", [
    ("GetPromotion", b"\xff"),
    ("CreatePromotion", b"\x0a\x05ab"),  # a field promising 5 bytes, holding 2
    ("ExportCodes", b"\x0a\xff\xff\xff\xff\x0f"),
    ("ImportCodes", [b"\x12\x02\xff"]),
])
def test_bytes_that_are_no_message_are_invalid_argument(
    channel: grpc.Channel, seeded: harness.Seed, name: str, body: bytes | list[bytes],
) -> None:
    """Was INTERNAL "Exception deserializing request!", from gRPC itself."""
    before = harness.snapshot()
    answer = harness.call(channel, BY_NAME[name], body, seeded.metadata("admin"), raw=True)
    assert answer.code == INVALID, answer.describe()
    assert answer.error is not None
    assert "is not a valid" in field_violations(answer.error)["request"]
    assert harness.snapshot() == before


def test_bytes_that_are_no_message_still_need_a_key(
    channel: grpc.Channel, seeded: harness.Seed,
) -> None:
    answer = harness.call(channel, BY_NAME["GetPromotion"], b"\xff", seeded.metadata("none"),
                          raw=True)
    assert answer.code == grpc.StatusCode.UNAUTHENTICATED, answer.describe()


def test_a_nul_in_any_string_is_invalid_argument_naming_the_field(
    channel: grpc.Channel, seeded: harness.Seed,
) -> None:
    """Was INTERNAL on PostgreSQL (text cannot hold NUL), and stored as given on SQLite."""
    metadata = seeded.metadata("admin")
    codes = code_pb2_grpc.CodeServiceStub(channel)
    before = harness.snapshot()

    error = refused(lambda: codes.GetCode(code.GetCodeRequest(code="CODE\x00-1"),
                                          metadata=metadata), INVALID)
    assert field_violations(error) == {"code": "must not contain NUL characters (U+0000)"}

    error = refused(lambda: list(codes.ExportCodes(
        code.ExportCodesRequest(promotion="p1\x00"), metadata=metadata)), INVALID)
    assert list(field_violations(error)) == ["promotion"]

    bad_name = promotion_pb2.Promotion(external_id="p9", name={"en-US": "Sale\x00"},
                                       discount=promotion_pb2.Discount(percent="10"))
    error = harness.call(channel, BY_NAME["CreatePromotion"],
                         promotion_pb2.CreatePromotionRequest(promotion=bad_name),
                         metadata).error
    assert error is not None and error.code() == INVALID
    assert list(field_violations(error)) == ["promotion.name['en-US']"]

    ref = profile_pb2.ProfileRef(custom=profile_pb2.ProfileRef.Custom(field="crm", value="\x00"))
    error = refused(lambda: codes.AttachCode(
        code.AttachCodeRequest(profile=ref, promotion="p1"), metadata=metadata), INVALID)
    assert list(field_violations(error)) == ["profile.custom.value"]
    assert harness.snapshot() == before


@pytest.mark.parametrize("profile_id, problem", [
    ("x" * 256, "must be at most 255 characters"),
    ("bob\x1b[2J", "must not contain control characters"),
])
def test_a_new_profile_id_that_upsert_would_refuse_is_refused_everywhere(
    channel: grpc.Channel, seeded: harness.Seed, profile_id: str, problem: str,
) -> None:
    """An unknown profile_id creates the profile: a 256-character one was INTERNAL on
    PostgreSQL (and stored on SQLite); one with control characters was stored on both."""
    metadata = seeded.metadata("admin")
    codes = code_pb2_grpc.CodeServiceStub(channel)
    ref = profile_pb2.ProfileRef(profile_id=profile_id)
    before = harness.snapshot()
    error = refused(lambda: codes.ActivateCode(
        code.ActivateCodeRequest(code="CODE-5", profile=ref, cart=harness.CART),
        metadata=metadata), INVALID)
    assert field_violations(error) == {"profile.profile_id": problem}
    error = refused(lambda: codes.AttachCode(
        code.AttachCodeRequest(profile=ref, promotion="p1"), metadata=metadata), INVALID)
    assert field_violations(error) == {"profile.profile_id": problem}
    assert harness.snapshot() == before


def test_an_error_quoting_a_huge_input_still_reaches_the_caller(
    channel: grpc.Channel, seeded: harness.Seed,
) -> None:
    """Was a bare RESOURCE_EXHAUSTED raised by the client ("received metadata size exceeds
    hard limit"): the status quoted the 70,000 characters back, and the error was lost."""
    metadata = seeded.metadata("admin")
    huge = "\U0001f600" * 70_000
    promotion = promotion_pb2.Promotion(
        external_id=huge, name={huge[:300]: huge}, discount=promotion_pb2.Discount(percent=huge))
    answer = harness.call(channel, BY_NAME["CreatePromotion"],
                          promotion_pb2.CreatePromotionRequest(promotion=promotion), metadata)
    assert answer.code == INVALID, answer.describe()
    assert answer.error is not None
    violations = field_violations(answer.error)
    assert "promotion.external_id" in violations
    assert all(len(field.encode()) + len(text.encode()) <= 128 + 200
               for field, text in violations.items())

    answer = harness.call(channel, BY_NAME["RollbackRedemption"],
                          code.RollbackRedemptionRequest(redemption_id=huge), metadata)
    assert answer.code in {INVALID, grpc.StatusCode.NOT_FOUND}, answer.describe()


def _bad_bonus_items(channel: grpc.Channel, seeded: harness.Seed, count: int) -> grpc.RpcError:
    """CreatePromotion with ``count`` bonus items, each bad twice (sku and quantity)."""
    bonus = [promotion_pb2.BonusItem(sku="", quantity=-1)] * count
    promotion = promotion_pb2.Promotion(external_id="p9", name={"en-US": "Sale"}, bonus=bonus)
    return refused(lambda: promotion_pb2_grpc.PromotionServiceStub(channel).CreatePromotion(
        promotion_pb2.CreatePromotionRequest(promotion=promotion),
        metadata=seeded.metadata("admin")), INVALID)


def test_a_thousand_bad_items_are_reported_by_as_many_as_the_trailers_hold(
    channel: grpc.Channel, seeded: harness.Seed,
) -> None:
    error = _bad_bonus_items(channel, seeded, 1001)
    fields = [field for field, _ in violation_list(error)]
    assert 10 <= len(fields) < 2003 and all(f.startswith("promotion.bonus") for f in fields)
    # Each item's two, and one for more items than a promotion may hold.
    assert f"(2003 problems; the details list the first {len(fields)})" in (
        error.details() or ""
    )


def test_every_bad_field_of_an_ordinary_request_is_listed(
    channel: grpc.Channel, seeded: harness.Seed,
) -> None:
    error = _bad_bonus_items(channel, seeded, 15)
    assert len(violation_list(error)) == 30
    assert "the details list" not in (error.details() or "")


def test_an_import_cut_short_by_an_oversized_chunk_publishes_nothing(
    channel: grpc.Channel, seeded: harness.Seed,
) -> None:
    """gRPC's own refusal of a message over its limit ended the stream as if the client had
    finished it, and the REPLACE published its first chunk (now and then: a race). The
    server now refuses such a message itself, as an error that aborts the import."""
    codes = code_pb2_grpc.CodeServiceStub(channel)
    spec = code.ImportCodesRequest.Spec(promotion="p1", mode=code.ImportCodesRequest.Spec.REPLACE)
    before = harness.snapshot()
    for _ in range(5):
        error = refused(lambda: codes.ImportCodes(iter([
            code.ImportCodesRequest(spec=spec),
            code.ImportCodesRequest(chunk=b"CUT-1\n"),
            code.ImportCodesRequest(chunk=b"X" * (5 * 1024 * 1024)),
        ]), metadata=seeded.metadata("admin")), grpc.StatusCode.RESOURCE_EXHAUSTED)
        assert "over the limit of 4,194,304" in (error.details() or "")
    assert harness.snapshot() == before
