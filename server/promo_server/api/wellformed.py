"""Refuses, with INVALID_ARGUMENT, a request that is not a promo.v1 message at all, or
one holding text that no database can store; and, with RESOURCE_EXHAUSTED, a
message over the largest allowed size.

gRPC answers a request its deserializer cannot parse with INTERNAL ("Exception
deserializing request!"), which blames the server for the caller's bytes; and
PostgreSQL cannot hold a NUL character in text, so a NUL in any string would
fail deep in a query (and SQLite would store it, so the two backends would
disagree). This interceptor, placed inside the guard, lets the deserializer hand
over what it could not parse and checks every string of what it could; the
refusal is raised when the handler runs, so the guard authenticates, maps and
logs it like any other.

Oversized messages are refused here rather than by gRPC (which is set to accept
a few times more): gRPC's refusal ends a client stream on the server as if the
client had finished it, so an import cut short would publish its first part.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

from promo_server.api.handlers import Continuation, promo_handler, rewrapped
from promo_server.domain.errors import (
    DomainError,
    FieldViolation,
    InvalidArgument,
    ResourceExhausted,
)

# The field a violation names when the request as a whole could not be read.
WHOLE_REQUEST = "request"
_NUL = "\x00"
_NO_NUL = "must not contain NUL characters (U+0000)"

Deserializer = Callable[[bytes], Any]


class _Refused:
    """What the deserializer hands over instead of a request it refuses."""

    def __init__(self, error: DomainError) -> None:
        self.error = error


class WellFormed(grpc.ServerInterceptor):
    def __init__(self, max_message_bytes: int) -> None:
        self.max_message_bytes = max_message_bytes

    def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler, method = promo_handler(continuation, handler_call_details)
        if handler is None or method is None or handler.request_deserializer is None:
            return handler
        deserialize = _checking(handler.request_deserializer, method, self.max_message_bytes)
        return rewrapped(handler, _each if handler.request_streaming else _one, deserialize)


def _checking(deserializer: Deserializer, method: str, max_bytes: int) -> Deserializer:
    def deserialize(data: bytes) -> Any:
        if len(data) > max_bytes:
            return _Refused(ResourceExhausted(
                f"a {method} request message of {len(data):,} bytes is over the limit of "
                f"{max_bytes:,}: send smaller messages (an import, smaller chunks)"
            ))
        try:
            request = deserializer(data)
        except DecodeError as error:
            problem = f"is not a valid {method} request message: {error}"
            return _Refused(InvalidArgument([FieldViolation(WHOLE_REQUEST, problem)]))
        # A NUL in a string is a zero byte in the message: most messages have none,
        # and need no walk through their fields.
        violations = nul_violations(request) if b"\x00" in data else None
        return _Refused(InvalidArgument(violations)) if violations else request

    return deserialize


def nul_violations(message: Message, prefix: str = "") -> list[FieldViolation]:
    """A violation for every string of ``message``, at any depth, that holds a NUL."""
    out: list[FieldViolation] = []
    for field, value in message.ListFields():
        path = f"{prefix}{field.name}"
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            out += _map_violations(field, value, path)
        elif field.is_repeated:
            for index, item in enumerate(value):
                out += _value_violations(field, item, f"{path}[{index}]")
        else:
            out += _value_violations(field, value, path)
    return out


def _map_violations(field: FieldDescriptor, entries: Any, path: str) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    value_field = field.message_type.fields_by_name["value"]
    for key, item in entries.items():
        if isinstance(key, str) and _NUL in key:
            out.append(FieldViolation(path, f"keys {_NO_NUL}"))
        out += _value_violations(value_field, item, f"{path}[{key!r}]")
    return out


def _value_violations(field: FieldDescriptor, value: Any, path: str) -> list[FieldViolation]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return nul_violations(value, f"{path}.")
    if field.type == FieldDescriptor.TYPE_STRING and _NUL in value:
        return [FieldViolation(path, _NO_NUL)]
    return []


def _one(behavior: Callable[[Any, grpc.ServicerContext], Any]
         ) -> Callable[[Any, grpc.ServicerContext], Any]:
    def checked(request: Any, context: grpc.ServicerContext) -> Any:
        if isinstance(request, _Refused):
            raise request.error
        return behavior(request, context)

    return checked


def _each(behavior: Callable[[Iterator[Any], grpc.ServicerContext], Any]
          ) -> Callable[[Iterator[Any], grpc.ServicerContext], Any]:
    def checked(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
        return behavior(_checked(requests), context)

    return checked


def _checked(requests: Iterator[Any]) -> Iterator[Any]:
    for request in requests:
        if isinstance(request, _Refused):
            raise request.error
        yield request
