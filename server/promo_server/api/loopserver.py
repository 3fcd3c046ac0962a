"""Serving SQLite from an event loop: the hot calls run on the loop itself, when they
cannot wait; every other call runs on the worker threads, as on the threaded server.

The threaded gRPC server moves each call from its polling thread to a worker
thread, and each sqlite3 call hands the GIL to whichever thread wants it next:
measured with ``perf``, about half of such a server's CPU went to those
hand-offs (futex waits and the scheduler), not to the calls. ``grpc.aio``
serves every call from one event loop instead, and a handler that runs on the
loop costs no hand-off at all.

Only a handler that cannot wait may run there, for while it runs no other call
moves. On SQLite in WAL mode a read never waits for a writer, so ValidateCode
always runs on the loop. ActivateCode writes, so it runs there only when this
process can take the write lock at once (``db.writer_if_free``), and on a
worker thread, waiting its turn in line, otherwise. (Asking again from the loop
instead was tried: the process that just wrote always won the lock again, and
the other one starved.) PostgreSQL answers every statement over the network,
so on PostgreSQL the threaded server serves (see app.py).

The handlers are the threaded server's own, inside the same interceptors:
``LoopServer`` adapts each to ``grpc.aio`` (a context they can call from any
thread, request streams read and response streams written through the loop)
and drives the aio server from other threads as ``grpc.Server`` is driven.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterator,
    Sequence,
)
from concurrent import futures
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health

from promo_server.api.handlers import Behavior, rewrapped

T = TypeVar("T")

# Decides, as a call arrives, whether it runs on the loop: yields True while it may.
InlineWhen = Callable[[], AbstractContextManager[bool]]

# How long a request stream's end waits for a cancellation (see _read_from_loop).
STREAM_END_SETTLE_SECONDS = 0.005

_LOOP_LOCK = threading.Lock()
_LOOP: asyncio.AbstractEventLoop | None = None


def event_loop() -> asyncio.AbstractEventLoop:
    """The process's event loop for gRPC, running on a thread of its own from first use.

    One loop serves every LoopServer of the process (tests start many); it is
    never stopped, and its thread is a daemon.
    """
    global _LOOP
    with _LOOP_LOCK:
        if _LOOP is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="grpc-loop", daemon=True).start()
            _LOOP = loop
        return _LOOP


def _on_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """Runs ``coroutine`` on the loop and waits for its result (never call from the loop)."""
    return asyncio.run_coroutine_threadsafe(coroutine, event_loop()).result()


class LoopServer:
    """A ``grpc.aio`` server on the process's event loop, with ``grpc.Server``'s methods,
    callable from any thread but the loop's."""

    def __init__(self, options: Sequence[tuple[str, Any]]) -> None:
        async def create() -> grpc.aio.Server:
            return grpc.aio.server(options=options)

        self._server = _on_loop(create())

    @property
    def aio(self) -> grpc.aio.Server:
        """The aio server itself: for servicers written for it (health, reflection)."""
        return self._server

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def add_insecure_port(self, address: str) -> int:
        return self._server.add_insecure_port(address)

    def add_secure_port(self, address: str, credentials: grpc.ServerCredentials) -> int:
        return self._server.add_secure_port(address, credentials)

    def start(self) -> None:
        _on_loop(self._server.start())

    def stop(self, grace: float | None) -> threading.Event:
        """As ``grpc.Server.stop``: the event is set once the server has stopped."""
        stopped = threading.Event()
        future = asyncio.run_coroutine_threadsafe(self._server.stop(grace), event_loop())
        future.add_done_callback(lambda _: stopped.set())
        return stopped

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return _on_loop(self._server.wait_for_termination(timeout))


class LoopHealth:
    """grpc_health's aio servicer, with the threaded servicer's methods."""

    def __init__(self) -> None:
        self.servicer = health.aio.HealthServicer()

    def set(self, service: str, status: Any) -> None:
        _on_loop(self.servicer.set(service, status))

    def enter_graceful_shutdown(self) -> None:
        _on_loop(self.servicer.enter_graceful_shutdown())


class _Aborted(Exception):
    """What the threaded handlers' ``abort_with_status`` raises, to be sent from the loop."""

    def __init__(self, status: grpc.Status) -> None:
        super().__init__(status.details)
        self.status = status


class _StreamBroken(grpc.RpcError):
    """Reading the request stream failed: the client went away (cancel, deadline)."""


class _Context:
    """The part of ``grpc.ServicerContext`` the handlers use, for an aio call.

    ``gone`` is set when the call is cancelled: the handler, maybe still running
    on a worker thread, then finds it inactive.
    """

    def __init__(self, context: grpc.aio.ServicerContext) -> None:
        self._context = context
        self.gone = False

    def invocation_metadata(self) -> Any:
        return self._context.invocation_metadata()

    def abort_with_status(self, status: grpc.Status) -> None:
        raise _Aborted(status)

    def is_active(self) -> bool:
        return not self.gone and not self._context.done()


def to_loop(
    handler: grpc.RpcMethodHandler, workers: futures.Executor, inline: InlineWhen | None
) -> grpc.RpcMethodHandler:
    """The aio handler running ``handler``'s behaviour: on the loop while ``inline``
    allows it (unary calls only), else on ``workers``."""
    if handler.request_streaming and handler.response_streaming:
        raise ValueError("no promo.v1 call streams both ways")
    if handler.request_streaming:
        return rewrapped(handler, lambda behavior: _client_stream(behavior, workers))
    if handler.response_streaming:
        return rewrapped(handler, lambda behavior: _server_stream(behavior, workers))
    return rewrapped(handler, lambda behavior: _unary(behavior, workers, inline))


def _unary(behavior: Behavior, workers: futures.Executor, inline: InlineWhen | None
           ) -> Behavior:
    async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
        sync = _Context(context)

        async def serve() -> Any:
            if inline is not None:
                with inline() as free:
                    if free:
                        return behavior(request, sync)
            return await asyncio.get_running_loop().run_in_executor(
                workers, behavior, request, sync
            )

        return await _served(context, sync, serve)

    return handle


def _client_stream(behavior: Behavior, workers: futures.Executor) -> Behavior:
    async def handle(requests: AsyncIterable[Any], context: grpc.aio.ServicerContext) -> Any:
        loop = asyncio.get_running_loop()
        sync = _Context(context)
        read = _read_from_loop(requests, loop)
        return await _served(
            context, sync, lambda: loop.run_in_executor(workers, behavior, read, sync)
        )

    return handle


def _server_stream(behavior: Behavior, workers: futures.Executor) -> Behavior:
    async def handle(request: Any, context: grpc.aio.ServicerContext) -> None:
        loop = asyncio.get_running_loop()
        sync = _Context(context)

        def write_all() -> None:
            responses = behavior(request, sync)
            try:
                for response in responses:
                    asyncio.run_coroutine_threadsafe(context.write(response), loop).result()
            finally:
                # Here, not when collected on some other thread: closing runs the
                # guard's clean-up, which gives back this thread's connection.
                responses.close()

        await _served(context, sync, lambda: loop.run_in_executor(workers, write_all))

    return handle


async def _served(
    context: grpc.aio.ServicerContext, sync: _Context, serve: Callable[[], Awaitable[T]]
) -> T:
    """``serve()``'s answer; the status a handler aborted with; the call marked gone
    if it is cancelled."""
    try:
        return await serve()
    except asyncio.CancelledError:
        sync.gone = True
        raise
    except _Aborted as aborted:
        status = aborted.status
        await context.abort(status.code, status.details, status.trailing_metadata)
        raise  # not reached: abort raises


def _read_from_loop(requests: AsyncIterable[Any], loop: asyncio.AbstractEventLoop
                    ) -> Iterator[Any]:
    """The request stream, read on the loop, for a handler on a worker thread."""
    reading: list[AsyncIterator[Any]] = []  # begun at the first read: a handler may read none

    async def next_request() -> Any:
        if not reading:
            reading.append(aiter(requests))
        try:
            return await anext(reading[0])
        except StopAsyncIteration:
            # A cancelled call's stream ends too, and gRPC reports the cancellation
            # just after (seen: a turn of the loop later). Let it land, marking the
            # call gone, before the handler takes the stream as whole: an import
            # asks just before it publishes.
            await asyncio.sleep(STREAM_END_SETTLE_SECONDS)
            raise

    while True:
        try:
            request = asyncio.run_coroutine_threadsafe(next_request(), loop).result()
        except StopAsyncIteration:
            return
        except BaseException as error:  # cancelled, or the connection broke
            raise _StreamBroken(f"the request stream broke: {error!r}") from error
        yield request
