"""Typed exceptions for failed promo.v1 calls, carrying the server's google.rpc details."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

_LOGGER = logging.getLogger(__name__)


class PromoError(Exception):
    """A call the service refused: its status code, message and google.rpc details."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str = "",
        field_violations: Sequence[tuple[str, str]] = (),
        retry_delay: float | None = None,
    ) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.reason = reason
        self.field_violations = list(field_violations)
        self.retry_delay = retry_delay

    def __str__(self) -> str:
        head = f"{self.code.name} {self.reason}" if self.reason else self.code.name
        if self.field_violations:
            detail = "; ".join(f"{field}: {why}" for field, why in self.field_violations)
        else:
            detail = self.message
        # Callers print this as a single log or terminal line.
        return " ".join(f"{head}: {detail}".split()) if detail else head


class InvalidArgument(PromoError):
    """INVALID_ARGUMENT: see `field_violations` for every offending field."""


class NotFound(PromoError):
    """NOT_FOUND, also for another project's resources."""


class AlreadyExists(PromoError):
    """ALREADY_EXISTS."""


class PermissionDenied(PromoError):
    """PERMISSION_DENIED: the API key's role does not allow the call."""


class Unauthenticated(PromoError):
    """UNAUTHENTICATED: the API key is missing or unknown."""


class FailedPrecondition(PromoError):
    """FAILED_PRECONDITION: see `reason` (CODE_EXPIRED, PROMOTION_ENDED, ...)."""


class ResourceExhausted(PromoError):
    """RESOURCE_EXHAUSTED: a limit was reached or a pool is empty; see `reason`."""


class Unavailable(PromoError):
    """UNAVAILABLE: the service could not be reached, even after retries."""


class Aborted(PromoError):
    """ABORTED."""


class DeadlineExceeded(PromoError):
    """DEADLINE_EXCEEDED."""


class Unimplemented(PromoError):
    """UNIMPLEMENTED."""


class Cancelled(PromoError):
    """CANCELLED: the call was cancelled, most often by the caller."""


class Unknown(PromoError):
    """UNKNOWN: an error with no better status (a request iterator that raised, say)."""


class OutOfRange(PromoError):
    """OUT_OF_RANGE."""


class Internal(PromoError):
    """INTERNAL: the server failed; its log says why."""


class DataLoss(PromoError):
    """DATA_LOSS."""


_CLASS_BY_CODE: dict[grpc.StatusCode, type[PromoError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.ABORTED: Aborted,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.UNKNOWN: Unknown,
    grpc.StatusCode.OUT_OF_RANGE: OutOfRange,
    grpc.StatusCode.INTERNAL: Internal,
    grpc.StatusCode.DATA_LOSS: DataLoss,
}
# Every status but OK has its class.
assert set(_CLASS_BY_CODE) == set(grpc.StatusCode) - {grpc.StatusCode.OK}


def from_rpc_error(err: grpc.RpcError) -> PromoError:
    """The typed exception for a failed call, with its BadRequest/ErrorInfo/RetryInfo details."""
    if not isinstance(err, grpc.Call):
        # Only a completed call has a status; anything else is a client-side failure.
        return PromoError(grpc.StatusCode.UNKNOWN, str(err))
    code: grpc.StatusCode = err.code()
    reason = ""
    field_violations: list[tuple[str, str]] = []
    retry_delay: float | None = None
    for detail in _rich_status_details(err):
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            field_violations.extend(
                (violation.field, violation.description)
                for violation in bad_request.field_violations
            )
        elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_delay = retry.retry_delay.ToTimedelta().total_seconds()
    return _CLASS_BY_CODE.get(code, PromoError)(
        code,
        err.details() or "",
        reason=reason,
        field_violations=field_violations,
        retry_delay=retry_delay,
    )


def _rich_status_details(call: grpc.Call) -> Sequence[any_pb2.Any]:
    try:
        status = rpc_status.from_call(call)
    except ValueError:
        # A proxy may rewrite the status without its details; the plain status still holds.
        _LOGGER.warning("ignoring status details that contradict the call's status")
        return ()
    return () if status is None else status.details
