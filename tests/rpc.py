"""Reading what a caller sees of a refused call: its status and google.rpc details."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status


def refused(call: Callable[[], Any], code: grpc.StatusCode) -> grpc.RpcError:
    """Runs ``call``, which must fail with ``code``; returns the error."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    error = caught.value
    assert error.code() == code, f"{error.code()}: {error.details()}"
    return error


def field_violations(error: grpc.RpcError) -> dict[str, str]:
    """The BadRequest field paths of an error, with their descriptions (joined by "; "
    where one field has several)."""
    out: dict[str, str] = {}
    for field, description in violation_list(error):
        out[field] = f"{out[field]}; {description}" if field in out else description
    return out


def violation_list(error: grpc.RpcError) -> list[tuple[str, str]]:
    """Every BadRequest field violation of an error, in order."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "the error carries no google.rpc.Status"
    out: list[tuple[str, str]] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            out += [(v.field, v.description) for v in bad.field_violations]
    return out


def error_reason(error: grpc.RpcError) -> tuple[str, str]:
    """(domain, reason) of the error's ErrorInfo; ("", "") without one."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.domain, info.reason
    return "", ""
