"""Wraps every promo.v1 handler: database connection, authentication, error mapping, logs.

It wraps the handler itself rather than acting in ``intercept_service``, which
runs on the serving thread: the database connection and the caller's principal
must live in the worker thread that runs the handler.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import grpc
import peewee
from playhouse.pool import MaxConnectionsExceeded

from promo_server import metrics
from promo_server.api import auth
from promo_server.api.errors import status_of, to_status
from promo_server.api.handlers import Behavior, Continuation, promo_handler, rewrapped
from promo_server.domain.errors import DomainError
from promo_server.store import audit
from promo_server.store.db import database, discard_idle_connections, when_committed

_LOGGER = logging.getLogger(__name__)

class Guard(grpc.ServerInterceptor):
    def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler, method = promo_handler(continuation, handler_call_details)
        if handler is None or method is None:
            return handler
        guard = _guard_stream if handler.response_streaming else _guard_unary
        return rewrapped(handler, lambda behavior: guard(behavior, method))


def _guard_unary(behavior: Behavior, method: str) -> Behavior:
    def guarded(request: Any, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        failure = None
        opened = False
        token = None
        try:
            # The pool's connection, unless this thread holds one: the loop's write group.
            opened = database.connect(reuse_if_open=True)
            token = _enter(context, method)
            return behavior(request, context)
        except Exception as error:  # every failure becomes a status
            failure = _status_for(error, method)
        finally:
            _leave(opened, token, method, started, failure)
        context.abort_with_status(failure)

    return guarded


def _guard_stream(behavior: Behavior, method: str) -> Behavior:
    def guarded(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        started = time.perf_counter()
        failure = None
        opened = False
        token = None
        try:
            # The pool's connection, unless this thread holds one: the loop's write group.
            opened = database.connect(reuse_if_open=True)
            token = _enter(context, method)
            yield from behavior(request, context)
        except Exception as error:  # every failure becomes a status
            failure = _status_for(error, method)
        finally:
            _leave(opened, token, method, started, failure)
        if failure is not None:
            context.abort_with_status(failure)

    return guarded


def _enter(context: grpc.ServicerContext, method: str) -> Any:
    principal = auth.authenticate(context.invocation_metadata(), method)  # type: ignore[arg-type]
    return auth.set_current(principal), audit.acting_as(principal.key_id)


def _leave(
    opened: bool, token: Any, method: str, started: float, failure: grpc.Status | None
) -> None:
    if opened:
        database.close()  # back to the pool
    if token is not None:
        project = auth.current().project_id
        principal_token, actor_token = token
        auth.reset_current(principal_token)
        audit.stop_acting(actor_token)
    else:
        project = None
    code = failure.code.name if failure is not None else "OK"

    def record(committed: bool) -> None:
        told(method, code if committed else grpc.StatusCode.UNAVAILABLE.name, started, project)

    when_committed(record)  # a call in the loop's write group is told after its commit


def told(method: str, code: str, started: float, project: int | None) -> None:
    """Counts and logs a call's answer, timed from ``started`` (a perf_counter reading)."""
    seconds = time.perf_counter() - started
    metrics.record_call(method, code, seconds)
    _LOGGER.log(
        logging.DEBUG if code == "OK" else logging.INFO,
        "rpc method=%s code=%s ms=%.2f project=%s", method, code, seconds * 1000, project,
    )


def _status_for(error: Exception, method: str) -> grpc.Status:
    if isinstance(error, DomainError):
        return to_status(error)
    if isinstance(error, grpc.RpcError):
        # Reading a client stream after the client went away (cancel, deadline).
        return status_of(grpc.StatusCode.CANCELLED, "the call ended before the request stream")
    if isinstance(error, NotImplementedError):
        return status_of(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented yet")
    if isinstance(error, (peewee.OperationalError, peewee.InterfaceError, MaxConnectionsExceeded)):
        # A lock wait or statement that ran out of time, or a lost connection
        # (the pool discards it, and the idle ones, likely lost with it): the
        # client may retry, and the next calls get fresh connections.
        _LOGGER.warning("database unavailable method=%s error=%s", method, error)
        discard_idle_connections()
        return status_of(grpc.StatusCode.UNAVAILABLE, "the database is busy or unreachable; retry")
    _LOGGER.exception("internal error method=%s", method)
    return status_of(grpc.StatusCode.INTERNAL, "internal error")
