"""CodeService: parse, call one use case, answer."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import grpc
from google.protobuf import empty_pb2

from promo.v1 import code_pb2 as pb
from promo.v1 import code_pb2_grpc, profile_pb2, promotion_pb2
from promo_server.api import auth
from promo_server.api.convert import (
    code_to_proto,
    enum_name,
    import_result_to_proto,
    pool_from_proto,
    profile_ref_from_proto,
    time_from_proto,
    time_to_proto,
)
from promo_server.api.throttle import GuessThrottle
from promo_server.domain import codes as domain
from promo_server.domain import rewards
from promo_server.domain.codes import ProfileRef
from promo_server.domain.errors import FieldViolation, InvalidArgument, NotFound, Violations
from promo_server.domain.profiles import check_entries
from promo_server.domain.values import external_id_problem
from promo_server.usecases import codes, lifecycle

MAX_REQUEST_ID = 255
T = TypeVar("T")


class CodeService(code_pb2_grpc.CodeServiceServicer):
    def __init__(self, guesses: GuessThrottle) -> None:
        self._guesses = guesses

    def ImportCodes(
        self, request_iterator: Iterable[pb.ImportCodesRequest], context: grpc.ServicerContext
    ) -> pb.ImportCodesResponse:
        requests = iter(request_iterator)
        first = next(requests, None)
        if first is None or first.WhichOneof("payload") != "spec":
            raise InvalidArgument.field(
                "spec", "the first message must be the spec (promotion, mode...), then chunks"
            )
        result = codes.import_codes(
            auth.current().project_id, _import_spec(first.spec), _chunks(requests),
            context.is_active,
        )
        return import_result_to_proto(result)

    def GenerateCodes(
        self, request: pb.GenerateCodesRequest, context: grpc.ServicerContext
    ) -> pb.GenerateCodesResponse:
        problems: list[FieldViolation] = []
        promotion = pool_from_proto(request.promotion, "promotion", problems)
        expire_time = (
            time_from_proto(request.expire_time, "expire_time", problems)
            if request.HasField("expire_time")
            else None
        )
        generated = codes.generate(
            auth.current().project_id, promotion, request.count, request.pattern,
            expire_time, known=problems,
        )
        return pb.GenerateCodesResponse(generated=generated)

    def ExportCodes(
        self, request: pb.ExportCodesRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ExportCodesResponse]:
        problems = Violations()
        promotion = pool_from_proto(request.promotion, "promotion", problems.items)
        state = problems.check(lambda: _code_filter(request.filter), None)
        problems.raise_if_any()
        for chunk in codes.export(auth.current().project_id, promotion, state):
            yield pb.ExportCodesResponse(chunk=chunk)

    def GetCode(self, request: pb.GetCodeRequest, context: grpc.ServicerContext) -> pb.Code:
        return code_to_proto(codes.get(auth.current().project_id, request.code))

    def ListCodes(
        self, request: pb.ListCodesRequest, context: grpc.ServicerContext
    ) -> pb.ListCodesResponse:
        problems = Violations()
        promotion = pool_from_proto(request.promotion, "promotion", problems.items)
        profile = _profile_ref(request.profile, problems)
        state = problems.check(lambda: _code_filter(request.filter), None)
        items, token = codes.list_page(
            auth.current().project_id,
            promotion=promotion,
            profile=profile,
            state=state,
            page_size=request.page_size,
            page_token=request.page_token,
            known=problems.items,
        )
        return pb.ListCodesResponse(codes=[code_to_proto(c) for c in items], next_page_token=token)

    def UpdateCode(self, request: pb.UpdateCodeRequest, context: grpc.ServicerContext) -> pb.Code:
        problems = Violations()
        time_problems: list[FieldViolation] = []
        expire_time = (
            time_from_proto(request.code.expire_time, "code.expire_time", time_problems)
            if request.code.HasField("expire_time")
            else None
        )
        if "expire_time" in request.update_mask.paths:  # else the time is not used
            problems.extend(time_problems)
        problems.check(lambda: domain.require_code(request.code.code, "code.code"), "")
        change = problems.check(
            lambda: domain.change_of(request.code.active, expire_time, request.update_mask.paths),
            None,
        )
        problems.raise_if_any()
        assert change is not None
        updated = codes.update(auth.current().project_id, request.code.code, change)
        return code_to_proto(updated)


    def AttachCode(self, request: pb.AttachCodeRequest, context: grpc.ServicerContext
                   ) -> pb.Attachment:
        problems = Violations()
        ref = _profile_ref(request.profile, problems)
        promotion = pool_from_proto(request.promotion, "promotion", problems.items)
        code = request.code if request.HasField("code") else None
        attached = lifecycle.attach(
            auth.current().project_id, ref, promotion, code, known=problems.items
        )
        return pb.Attachment(
            code=attached.code, promotion=attached.promotion, profile_id=attached.profile_id,
            attach_time=time_to_proto(attached.attach_time),
        )

    def DetachCode(self, request: pb.DetachCodeRequest, context: grpc.ServicerContext
                   ) -> empty_pb2.Empty:
        problems = Violations()
        ref = _profile_ref(request.profile, problems)
        lifecycle.detach(auth.current().project_id, request.code, ref, known=problems.items)
        return empty_pb2.Empty()

    def ValidateCode(self, request: pb.ValidateCodeRequest, context: grpc.ServicerContext
                     ) -> pb.ValidateCodeResponse:
        valid, reason, reward = self._unless_guessing(
            lambda project_id: lifecycle.validate(project_id, _attempt(request))
        )
        return pb.ValidateCodeResponse(
            valid=valid, reason=reason,
            reward=reward_to_proto(lifecycle.reward_dict(reward)) if reward else None,
        )

    def ActivateCode(self, request: pb.ActivateCodeRequest, context: grpc.ServicerContext
                     ) -> pb.Redemption:
        redeemed = self._unless_guessing(
            lambda project_id: lifecycle.activate(
                project_id, _attempt(request, request.request_id)
            )
        )
        return redemption_to_proto(redeemed)

    def RollbackRedemption(
        self, request: pb.RollbackRedemptionRequest, context: grpc.ServicerContext
    ) -> pb.Redemption:
        rolled = lifecycle.roll_back(
            auth.current().project_id, request.redemption_id, request.reason
        )
        return redemption_to_proto(rolled)

    def ListRedemptions(
        self, request: pb.ListRedemptionsRequest, context: grpc.ServicerContext
    ) -> pb.ListRedemptionsResponse:
        problems = Violations()
        promotion = pool_from_proto(request.promotion, "promotion", problems.items)
        profile = _profile_ref(request.profile, problems)
        items, token = lifecycle.list_redemptions(
            auth.current().project_id,
            promotion=promotion,
            code=request.code,
            profile=profile,
            page_size=request.page_size,
            page_token=request.page_token,
            known=problems.items,
        )
        return pb.ListRedemptionsResponse(
            redemptions=[redemption_to_proto(r) for r in items], next_page_token=token
        )

    def _unless_guessing(self, call: Callable[[int], T]) -> T:
        """Runs ``call`` with the caller's project, unless its key asked for too many
        unknown codes; a NOT_FOUND answer counts as one more."""
        principal = auth.current()
        self._guesses.admit(principal.key_id, principal.project_id)
        try:
            return call(principal.project_id)
        except NotFound:
            self._guesses.miss(principal.key_id)
            raise


def _profile_ref(ref: profile_pb2.ProfileRef, problems: Violations) -> ProfileRef | None:
    """The reference, its bad fields added to ``problems``, for the use case to raise
    with its own."""
    return profile_ref_from_proto(ref, "profile", problems.items)


def _attempt(
    request: pb.ValidateCodeRequest | pb.ActivateCodeRequest, request_id: str = ""
) -> lifecycle.Attempt:
    problems = Violations()
    if problem := domain.code_problem(request.code):
        problems.add("code", problem)
    profile = profile_ref_from_proto(request.profile, "profile", problems.items)
    if profile is None:
        problems.add("profile", lifecycle.PROFILE_REQUIRED)
    cart = rewards.Cart("", ())
    if request.cart.currency or request.cart.items:
        cart = problems.check(lambda: rewards.parse_cart(
            request.cart.currency,
            [(i.sku, i.quantity, i.unit_price) for i in request.cart.items],
        ), cart)
    check_entries(request.attributes, "attributes", problems)
    for i, applied in enumerate(request.applied_promotions):
        if problem := external_id_problem(applied):
            problems.add(f"applied_promotions[{i}]", problem)
    if len(request_id) > MAX_REQUEST_ID:
        problems.add("request_id", f"must be at most {MAX_REQUEST_ID} characters")
    problems.raise_if_any()
    return lifecycle.Attempt(
        code=request.code, profile=profile, cart=cart, attributes=dict(request.attributes),
        applied_promotions=list(request.applied_promotions), request_id=request_id,
    )


def reward_to_proto(reward: dict[str, Any]) -> pb.Reward:
    return pb.Reward(
        cart_total=reward["cart_total"],
        discount_total=reward["discount_total"],
        final_total=reward["final_total"],
        items=[pb.RewardItem(**item) for item in reward["items"]],
        bonus=[promotion_pb2.BonusItem(**bonus) for bonus in reward["bonus"]],
    )


def redemption_to_proto(redemption: lifecycle.RedemptionView) -> pb.Redemption:
    return pb.Redemption(
        id=redemption.id,
        code=redemption.code,
        promotion=redemption.promotion,
        profile_id=redemption.profile_id,
        reward=reward_to_proto(redemption.reward),
        state=pb.Redemption.State.Value(redemption.state),
        request_id=redemption.request_id,
        create_time=time_to_proto(redemption.create_time),
        rollback_time=time_to_proto(redemption.rollback_time),
        rollback_reason=redemption.rollback_reason,
    )


def _import_spec(spec: pb.ImportCodesRequest.Spec) -> domain.ImportSpec:
    problems: list[FieldViolation] = []
    pool_from_proto(spec.promotion, "spec.promotion", problems)
    mode = (
        "REPLACE"
        if spec.mode == pb.ImportCodesRequest.Spec.MODE_UNSPECIFIED
        else enum_name(pb.ImportCodesRequest.Spec.Mode, spec.mode)
    )
    if mode not in domain.IMPORT_MODES:
        problems.append(FieldViolation("spec.mode", "must be REPLACE, APPEND or unset (REPLACE)"))
    default_expire_time = (
        time_from_proto(spec.default_expire_time, "spec.default_expire_time", problems)
        if spec.HasField("default_expire_time")
        else None
    )
    if problems:
        raise InvalidArgument(problems)
    return domain.ImportSpec(
        promotion=spec.promotion,
        mode=mode,
        has_header=spec.has_header,
        skip_invalid=spec.skip_invalid,
        default_expire_time=default_expire_time,
    )


def _chunks(requests: Iterator[pb.ImportCodesRequest]) -> Iterator[bytes]:
    for number, request in enumerate(requests, start=2):
        if request.WhichOneof("payload") == "spec":
            raise InvalidArgument.field(
                "spec", f"message {number} is a second spec: only the first message is the spec"
            )
        yield request.chunk


def _code_filter(value: int) -> str | None:
    if value == pb.CODE_FILTER_UNSPECIFIED:
        return None
    name = enum_name(pb.CodeFilter, value)
    if name not in domain.FILTERS:
        raise InvalidArgument.field(
            "filter", f"must be one of {', '.join(domain.FILTERS)} or unset"
        )
    return name
