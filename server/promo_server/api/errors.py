"""The one place where a domain error becomes a gRPC status with google.rpc details."""

from __future__ import annotations

import math

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from promo_server.domain.errors import DomainError, InvalidArgument, ResourceExhausted

ERROR_DOMAIN = "promo.v1"
# A status travels in trailing metadata, which gRPC clients refuse over 8 KiB (soft) to
# 16 KiB (hard) with a bare RESOURCE_EXHAUSTED that hides the error; messages and
# violations quote the caller's input, which can be far larger. These keep the
# metadata under about 6 KiB: a message, and the first violations, each cut short
# (in bytes of UTF-8).
MAX_MESSAGE = 512
MAX_FIELD = 128
MAX_DESCRIPTION = 200
# The violations, in order, as many as fit in this many bytes (before base64): every
# one of any request seen in practice (13 take about 1 KiB), at least 10 of any.
MAX_VIOLATION_BYTES = 3_500


def to_status(error: DomainError) -> grpc.Status:
    code = getattr(code_pb2, error.kind.value)
    details: list[any_pb2.Any] = []
    listed = 0
    if isinstance(error, InvalidArgument):
        violations = _violations(error)
        listed = len(violations)
        details.append(_pack(error_details_pb2.BadRequest(field_violations=violations)))
    if error.reason:
        info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN)
        details.append(_pack(info))
    if isinstance(error, ResourceExhausted) and error.retry_delay is not None:
        # Rounded up: a client that waits exactly this long finds the token back.
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(math.ceil(error.retry_delay * 1000))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    status = status_pb2.Status(code=code, message=_message(error, listed), details=details)
    return rpc_status.to_status(status)


def _violations(error: InvalidArgument) -> list[error_details_pb2.BadRequest.FieldViolation]:
    out: list[error_details_pb2.BadRequest.FieldViolation] = []
    size = 0
    for violation in error.violations:
        listed = error_details_pb2.BadRequest.FieldViolation(
            field=_cut(violation.field, MAX_FIELD),
            description=_cut(violation.description, MAX_DESCRIPTION),
        )
        size += listed.ByteSize() + 3  # its tag and length in the list
        if size > MAX_VIOLATION_BYTES:
            break
        out.append(listed)
    return out


def _message(error: DomainError, listed: int) -> str:
    message = _cut(error.message, MAX_MESSAGE)
    if isinstance(error, InvalidArgument) and len(error.violations) > listed:
        message += f" ({len(error.violations)} problems; the details list the first {listed})"
    return message


def _cut(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` bytes of UTF-8, ending in "..." when cut."""
    encoded = text.encode()
    if len(encoded) <= limit:
        return text
    return encoded[: limit - 3].decode(errors="ignore") + "..."


def status_of(code: grpc.StatusCode, message: str) -> grpc.Status:
    """A status without details, for failures that are not the caller's to act on."""
    return rpc_status.to_status(status_pb2.Status(code=code.value[0], message=message))


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed
