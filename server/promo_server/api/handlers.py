"""Rebuilding a gRPC method handler around a wrapped behaviour: what the interceptors share."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import grpc

Behavior = Callable[[Any, grpc.ServicerContext], Any]
Continuation = Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None]

_PACKAGE = "/promo.v1."

# By (request streaming, response streaming).
_FACTORIES = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def promo_handler(
    continuation: Continuation, details: grpc.HandlerCallDetails
) -> tuple[grpc.RpcMethodHandler | None, str | None]:
    """What an interceptor starts from: the handler found for the call, and the method's
    short name ("ValidateCode") if it is a promo.v1 one, else None (health, reflection)."""
    handler = continuation(details)
    full_name: str = details.method  # type: ignore[attr-defined]
    if handler is None or not full_name.startswith(_PACKAGE):
        return handler, None
    return handler, full_name.rsplit("/", 1)[-1]


def rewrapped(
    handler: grpc.RpcMethodHandler,
    wrap: Callable[[Behavior], Behavior],
    deserializer: Callable[[bytes], Any] | None = None,
) -> grpc.RpcMethodHandler:
    """The same kind of handler, running ``wrap(behavior)``, reading requests with
    ``deserializer`` (default: the handler's own)."""
    behavior = (handler.unary_unary or handler.unary_stream or handler.stream_unary
                or handler.stream_stream)
    factory = _FACTORIES[(handler.request_streaming, handler.response_streaming)]
    return factory(
        wrap(behavior),
        deserializer or handler.request_deserializer,
        handler.response_serializer,
    )


class _Details(grpc.HandlerCallDetails):
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


def intercepted(
    handler: grpc.RpcMethodHandler, method: str, interceptors: Sequence[grpc.ServerInterceptor]
) -> grpc.RpcMethodHandler:
    """``handler`` of ``method`` as a threaded server would run it behind ``interceptors``
    (the first outermost), built once ahead of the calls: for interceptors, like the
    promo ones, that choose by the method's name alone."""
    details = _Details(method)

    def through(index: int) -> grpc.RpcMethodHandler:
        if index == len(interceptors):
            return handler
        inner = interceptors[index].intercept_service(lambda _: through(index + 1), details)
        if inner is None:
            raise ValueError(f"an interceptor dropped {method}")
        return inner

    return through(0)
