"""The one place where a domain error becomes a gRPC status with google.rpc details."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from promo_server.domain.errors import DomainError, InvalidArgument

ERROR_DOMAIN = "promo.v1"


def to_status(error: DomainError) -> grpc.Status:
    code = getattr(code_pb2, error.kind.value)
    details: list[any_pb2.Any] = []
    if isinstance(error, InvalidArgument):
        details.append(_pack(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in error.violations
        ])))
    if error.reason:
        info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN)
        details.append(_pack(info))
    status = status_pb2.Status(code=code, message=error.message, details=details)
    return rpc_status.to_status(status)


def status_of(code: grpc.StatusCode, message: str) -> grpc.Status:
    """A status without details, for failures that are not the caller's to act on."""
    return rpc_status.to_status(status_pb2.Status(code=code.value[0], message=message))


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed
