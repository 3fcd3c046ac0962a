"""CodeService: parse, call one use case, answer.

The code lifecycle RPCs (attach, validate, activate...) are not served yet:
the generated base class answers them UNIMPLEMENTED.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import grpc

from promo.v1 import code_pb2 as pb
from promo.v1 import code_pb2_grpc
from promo_server.api import auth
from promo_server.api.convert import (
    code_to_proto,
    enum_name,
    import_result_to_proto,
    profile_ref_from_proto,
    time_from_proto,
)
from promo_server.domain import codes as domain
from promo_server.domain.errors import FieldViolation, InvalidArgument
from promo_server.usecases import codes


class CodeService(code_pb2_grpc.CodeServiceServicer):
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
        expire_time = (
            time_from_proto(request.expire_time, "expire_time", problems)
            if request.HasField("expire_time")
            else None
        )
        if problems:
            raise InvalidArgument(problems)
        generated = codes.generate(
            auth.current().project_id, request.promotion, request.count, request.pattern,
            expire_time,
        )
        return pb.GenerateCodesResponse(generated=generated)

    def ExportCodes(
        self, request: pb.ExportCodesRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ExportCodesResponse]:
        state = _code_filter(request.filter)
        for chunk in codes.export(auth.current().project_id, request.promotion, state):
            yield pb.ExportCodesResponse(chunk=chunk)

    def GetCode(self, request: pb.GetCodeRequest, context: grpc.ServicerContext) -> pb.Code:
        return code_to_proto(codes.get(auth.current().project_id, request.code))

    def ListCodes(
        self, request: pb.ListCodesRequest, context: grpc.ServicerContext
    ) -> pb.ListCodesResponse:
        problems: list[FieldViolation] = []
        profile = profile_ref_from_proto(request.profile, "profile", problems)
        if problems:
            raise InvalidArgument(problems)
        items, token = codes.list_page(
            auth.current().project_id,
            promotion=request.promotion,
            profile=profile,
            state=_code_filter(request.filter),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListCodesResponse(codes=[code_to_proto(c) for c in items], next_page_token=token)

    def UpdateCode(self, request: pb.UpdateCodeRequest, context: grpc.ServicerContext) -> pb.Code:
        problems: list[FieldViolation] = []
        expire_time = (
            time_from_proto(request.code.expire_time, "code.expire_time", problems)
            if request.code.HasField("expire_time")
            else None
        )
        change = domain.change_of(request.code.active, expire_time, request.update_mask.paths)
        if problems and "expire_time" in change.fields:
            raise InvalidArgument(problems)
        updated = codes.update(auth.current().project_id, request.code.code, change)
        return code_to_proto(updated)


def _import_spec(spec: pb.ImportCodesRequest.Spec) -> domain.ImportSpec:
    problems: list[FieldViolation] = []
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
