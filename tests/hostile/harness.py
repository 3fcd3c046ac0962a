"""Calling any promo.v1 method with any request, and judging what the server answered.

Every answer must be OK or a status that blames the caller; INVALID_ARGUMENT must
name the fields; a refused call must leave every table as it was; and the server
must still serve afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import grpc
from google.protobuf import descriptor, message_factory
from google.protobuf.message import Message

from promo.v1 import code_pb2 as code
from promo.v1 import code_pb2_grpc, profile_pb2, profile_pb2_grpc, promotion_pb2, promotion_pb2_grpc
from promo_server.api import wellformed
from promo_server.store import models
from promo_server.store.db import database
from tests.conftest import Project, bearer
from tests.rpc import violation_list

EXAMPLES = int(os.environ.get("PROMO_HOSTILE_EXAMPLES", "25"))

CALLERS_MISTAKES = frozenset({
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.ABORTED,
})
# The name a violation gives to a request that could not be decoded at all.
WHOLE_REQUEST = wellformed.WHOLE_REQUEST
# Written by the server on every authenticated call, refused or not.
_BOOKKEEPING = {"last_used_time"}
TIMEOUT = 30


@dataclass
class Answer:
    code: grpc.StatusCode
    error: grpc.RpcError | None

    def describe(self) -> str:
        return f"{self.code.name}: {self.error.details() if self.error else ''}"


def path(method: descriptor.MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def request_class(method: descriptor.MethodDescriptor) -> type[Message]:
    return message_factory.GetMessageClass(method.input_type)


def call(channel: grpc.Channel, method: descriptor.MethodDescriptor, request: Any,
         metadata: Sequence[tuple[str, str]], raw: bool = False) -> Answer:
    """Calls ``method`` with one request (a sequence of them for a client stream), as
    messages or, with ``raw``, as bytes sent as they are; reads every response."""
    response = message_factory.GetMessageClass(method.output_type)
    serialize = None if raw else _serialize
    deserialize = response.FromString
    name = path(method)
    try:
        if method.client_streaming:
            channel.stream_unary(name, serialize, deserialize)(
                iter(request), metadata=metadata, timeout=TIMEOUT)
        elif method.server_streaming:
            for _ in channel.unary_stream(name, serialize, deserialize)(
                    request, metadata=metadata, timeout=TIMEOUT):
                pass
        else:
            channel.unary_unary(name, serialize, deserialize)(
                request, metadata=metadata, timeout=TIMEOUT)
    except grpc.RpcError as error:
        return Answer(error.code(), error)
    return Answer(grpc.StatusCode.OK, None)


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


def snapshot() -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in id order."""
    database.connect(reuse_if_open=True)
    try:
        tables: dict[str, list[tuple[Any, ...]]] = {}
        for model in models.ALL_MODELS:
            meta = model._meta  # type: ignore[attr-defined]
            columns = [f for f in meta.sorted_fields if f.name not in _BOOKKEEPING]
            query = model.select(*columns).order_by(meta.primary_key).tuples()
            tables[model.__name__] = list(cast("Iterable[tuple[Any, ...]]", query))
        return tables
    finally:
        database.close()


def check(answer: Answer, method: descriptor.MethodDescriptor,
          before: dict[str, list[tuple[Any, ...]]]) -> None:
    """The answer blames the caller (or is OK); a refusal names its fields and changes
    nothing."""
    assert answer.code in CALLERS_MISTAKES, f"{path(method)} answered {answer.describe()}"
    if answer.code == grpc.StatusCode.OK:
        return
    assert answer.error is not None
    # The client's own refusal of an answer too large to read, which hides the error.
    assert "received metadata size exceeds" not in (answer.error.details() or ""), \
        f"{path(method)}: the error was too large for the client: {answer.describe()}"
    if answer.code == grpc.StatusCode.INVALID_ARGUMENT:
        fields = [field for field, _ in violation_list(answer.error)]
        assert fields, f"{path(method)}: INVALID_ARGUMENT without field violations: " \
                       f"{answer.describe()}"
        known = {field.name for field in method.input_type.fields} | {WHOLE_REQUEST}
        for field in fields:
            root = field.split(".")[0].split("[")[0]
            assert root in known, f"{path(method)}: violation names {field!r}, " \
                                  f"not a field of {method.input_type.name}"
    after = snapshot()
    changed = {
        table: {"gone": [row for row in before[table] if row not in after[table]][:3],
                "new": [row for row in after[table] if row not in before[table]][:3]}
        for table in after if before.get(table) != after[table]
    }
    assert not changed, f"{path(method)} refused with {answer.describe()} but changed {changed}"


def check_serving(channel: grpc.Channel, project: Project) -> None:
    """The server still answers a call that reads the database."""
    promotion_pb2_grpc.PromotionServiceStub(channel).ListPromotions(
        promotion_pb2.ListPromotionsRequest(page_size=1), metadata=bearer(project.admin_key),
        timeout=TIMEOUT,
    )


@dataclass
class Seed:
    """A project with a promotion holding codes, a profile holding one and a redemption, so
    that hostile requests meet real objects."""

    project: Project
    redemption_id: str

    def metadata(self, who: str) -> tuple[tuple[str, str], ...]:
        keys = {"admin": self.project.admin_key, "read": self.project.read_key,
                "redeem": self.project.redeem_key, "garbage": "pk_garbage.nope"}
        if who == "none":
            return ()
        if who == "malformed":
            return (("authorization", "Basic Zm9vOmJhcg=="),)
        return bearer(keys[who])

    def valid(self, method: descriptor.MethodDescriptor) -> Message | list[Message]:
        """A request of ``method`` that the server accepts on the seed."""
        return _valid_requests(self.redemption_id)[method.name]


CART = code.Cart(currency="USD", items=[code.CartItem(sku="shirt", quantity=2, unit_price="50")])
ALICE = profile_pb2.ProfileRef(profile_id="alice")


def _promotion(external_id: str) -> promotion_pb2.Promotion:
    return promotion_pb2.Promotion(
        external_id=external_id, name={"en-US": "Sale"},
        discount=promotion_pb2.Discount(percent="10"),
    )


def _valid_requests(redemption_id: str) -> dict[str, Any]:
    spec = code.ImportCodesRequest.Spec
    return {
        "CreatePromotion": promotion_pb2.CreatePromotionRequest(promotion=_promotion("p2")),
        "GetPromotion": promotion_pb2.GetPromotionRequest(external_id="p1"),
        "ListPromotions": promotion_pb2.ListPromotionsRequest(page_size=10),
        "UpdatePromotion": promotion_pb2.UpdatePromotionRequest(
            promotion=promotion_pb2.Promotion(external_id="p1", redeem_total_limit=100),
            update_mask={"paths": ["redeem_total_limit"]},
        ),
        "DeletePromotion": promotion_pb2.DeletePromotionRequest(external_id="p1"),
        "ImportCodes": [
            code.ImportCodesRequest(spec=spec(promotion="p1", mode=spec.APPEND)),
            code.ImportCodesRequest(chunk=b"CODE-7\nCODE-8\n"),
        ],
        "GenerateCodes": code.GenerateCodesRequest(promotion="p1", count=3, pattern="G-####"),
        "ExportCodes": code.ExportCodesRequest(promotion="p1"),
        "GetCode": code.GetCodeRequest(code="CODE-1"),
        "ListCodes": code.ListCodesRequest(promotion="p1", page_size=10),
        "UpdateCode": code.UpdateCodeRequest(
            code=code.Code(code="CODE-3", active=False), update_mask={"paths": ["active"]}),
        "AttachCode": code.AttachCodeRequest(profile=ALICE, promotion="p1", code="CODE-4"),
        "DetachCode": code.DetachCodeRequest(code="CODE-2", profile=ALICE),
        "ValidateCode": code.ValidateCodeRequest(code="CODE-5", profile=ALICE, cart=CART),
        "ActivateCode": code.ActivateCodeRequest(
            code="CODE-5", profile=ALICE, cart=CART, request_id="r1"),
        "RollbackRedemption": code.RollbackRedemptionRequest(
            redemption_id=redemption_id, reason="returned"),
        "ListRedemptions": code.ListRedemptionsRequest(promotion="p1"),
        "UpsertProfile": profile_pb2.UpsertProfileRequest(profile=profile_pb2.Profile(
            profile_id="alice", email="alice@example.com", custom_fields={"crm": "crm-1"},
            attributes={"age": "42"})),
        "GetProfile": profile_pb2.GetProfileRequest(profile=ALICE),
    }


def seed(channel: grpc.Channel, project: Project) -> Seed:
    metadata = bearer(project.admin_key)
    promotions = promotion_pb2_grpc.PromotionServiceStub(channel)
    codes = code_pb2_grpc.CodeServiceStub(channel)
    profiles = profile_pb2_grpc.ProfileServiceStub(channel)
    promotions.CreatePromotion(promotion_pb2.CreatePromotionRequest(promotion=_promotion("p1")),
                               metadata=metadata)
    spec = code.ImportCodesRequest.Spec

    def upload(promotion: str, csv: bytes) -> None:
        codes.ImportCodes(iter([
            code.ImportCodesRequest(spec=spec(promotion=promotion, mode=spec.APPEND)),
            code.ImportCodesRequest(chunk=csv),
        ]), metadata=metadata)

    upload("p1", b"CODE-1\ncode-2\nCODE-3\nCODE-4\nCODE-5\n")
    upload("", b"GLOBAL-1\n")
    profiles.UpsertProfile(_valid_requests("")["UpsertProfile"], metadata=metadata)
    codes.AttachCode(code.AttachCodeRequest(profile=ALICE, promotion="p1", code="code-2"),
                     metadata=metadata)
    redemption = codes.ActivateCode(
        code.ActivateCodeRequest(code="CODE-1", profile=ALICE, cart=CART), metadata=metadata)
    return Seed(project, redemption.id)
