"""Serving SQLite from an event loop: the hot calls run on the loop itself, every other
call on the worker threads, as on the threaded server.

The threaded gRPC server moves each call from its polling thread to a worker
thread, and each sqlite3 call hands the GIL to whichever thread wants it next:
measured with ``perf``, about half of such a server's CPU went to those
hand-offs (futex waits and the scheduler), not to the calls. ``grpc.aio``
serves every call from one event loop instead, and a handler that runs on the
loop costs no hand-off at all.

Only a handler that never blocks may run there, for while it runs no other
call moves. On SQLite in WAL mode a read never waits for a writer, so
ValidateCode runs on the loop. ActivateCode writes: it runs on the loop once
this process holds the write lock, in the write group (``db.WriteGroup``):
the activations of the next few milliseconds share one transaction and one
commit, which cost more than their statements, and are answered after it.
While another process has the lock, activations wait for it on the loop,
asking again every FILE_LOCK_POLL_SECONDS, never blocking it; the processes
take turns. While a thread of this process has it (an import, say), they line
up behind it on the worker threads, as every other writer does. PostgreSQL
answers every statement over the network, so on PostgreSQL the threaded server
serves (see app.py).

The handlers are the threaded server's own, inside the same interceptors:
``LoopServer`` adapts each to ``grpc.aio`` (a context they can call from any
thread, request streams read and response streams written through the loop)
and drives the aio server from other threads as ``grpc.Server`` is driven.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import threading
import time
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
from typing import Any, TypeVar

import grpc
import peewee
from grpc_health.v1 import health

from promo_server.api import guard
from promo_server.api.handlers import Behavior, rewrapped
from promo_server.store import db
from promo_server.store.db import WriteGroup

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")


class OnLoop(enum.Enum):
    """Which calls run on the loop (app.py's ``_ON_LOOP``), each as soon as it arrives."""

    READS = "reads"  # always: on SQLite in WAL mode a read waits for no writer
    WRITES = "writes"  # in the open write group, or one they open with the lock free


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

    def __init__(self, options: Sequence[tuple[str, Any]], group_commit_seconds: float) -> None:
        async def create() -> grpc.aio.Server:
            return grpc.aio.server(options=options)

        self._server = _on_loop(create())
        COMMITTER.quiet = group_commit_seconds

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
        """As ``grpc.Server.stop``: the event is set once the server has stopped, and
        the writes of the calls it answered are committed."""
        stopped = threading.Event()

        async def stop() -> None:
            await self._server.stop(grace)
            COMMITTER.commit()  # a cancelled call's writes may wait in the group

        future = asyncio.run_coroutine_threadsafe(stop(), event_loop())
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
    handler: grpc.RpcMethodHandler, workers: futures.Executor, on_loop: OnLoop | None,
    method: str = "",
) -> grpc.RpcMethodHandler:
    """The aio handler running ``handler``'s behaviour: on the loop as ``on_loop`` allows
    (unary calls only), else on ``workers``. ``method`` names the call in the metrics
    and the log when it never reaches ``handler`` (the write lock not had in time)."""
    if handler.request_streaming and handler.response_streaming:
        raise ValueError("no promo.v1 call streams both ways")
    if handler.request_streaming:
        return rewrapped(handler, lambda behavior: _client_stream(behavior, workers))
    if handler.response_streaming:
        return rewrapped(handler, lambda behavior: _server_stream(behavior, workers))
    return rewrapped(handler, lambda behavior: _unary(behavior, workers, on_loop, method))


def _unary(
    behavior: Behavior, workers: futures.Executor, on_loop: OnLoop | None, method: str
) -> Behavior:
    async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
        sync = _Context(context)
        started = time.perf_counter()

        async def serve() -> Any:
            if on_loop is OnLoop.WRITES:
                try:
                    return await COMMITTER.run_writing(behavior, request, sync, workers)
                except _Busy:
                    guard.told(method, grpc.StatusCode.UNAVAILABLE.name, started, None)
                    raise
            if on_loop is OnLoop.READS:
                if not COMMITTER.group.open:
                    return behavior(request, sync)
                return await COMMITTER.run(behavior, request, sync)
            return await asyncio.get_running_loop().run_in_executor(
                workers, behavior, request, sync
            )

        return await _served(context, sync, serve)

    return handle


# Group commit (see db.WriteGroup): an open group commits once no call has joined it
# for its quiet time (the --group-commit-ms setting), or GROUP_QUIET_TIMES that long
# after it opened, or when GROUP_MOST calls joined.
GROUP_QUIET_TIMES = 5
GROUP_MOST = 64
# How often calls that write, waiting on the loop for the write lock, ask for it again.
FILE_LOCK_POLL_SECONDS = 0.0005


class _Unavailable(Exception):
    """The call did not happen, and may be retried: its write group could not commit,
    or the write lock could not be had in time."""


class _Busy(_Unavailable):
    """The call never ran: the write lock could not be had in time, or not asked for.
    (A call whose group could not commit ran, and the guard told of it.)"""


class GroupCommitter:
    """Runs calls on the loop, in the write group while one is open, and commits the
    group once no call has joined it for ``quiet`` seconds (a lone caller waits
    that long), GROUP_QUIET_TIMES that after it opened, or when ``most`` calls joined;
    at once, though, when another thread or process waits for the write lock: the
    calls queued on the loop meanwhile join first.

    A call that ran while the group was open is answered only after the commit,
    its refusals too: what it read may be writes of the group. Should the
    commit fail, each such call ends UNAVAILABLE, and a retry is safe.
    """

    def __init__(self, group: WriteGroup, most: int = GROUP_MOST) -> None:
        self.group = group
        self.quiet = 0.0  # set by the LoopServer
        self._most = most
        self._outcome: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._members = 0
        self._opened = self._joined_last = 0.0
        self._waiting: asyncio.Future[None] | None = None
        self._give_up_at = 0.0

    async def run_writing(self, behavior: Behavior, request: Any, context: _Context,
                          workers: futures.Executor) -> Any:
        """Runs a call that writes in the write group, once this process has the lock;
        or, while a thread of this process has it, on a worker thread, in line behind
        it as the threads are (asking from the loop, it would lose to them every time)."""
        while not self._join():
            if self.group.busy_here:
                return await asyncio.get_running_loop().run_in_executor(
                    workers, behavior, request, context
                )
            await asyncio.shield(self._lock_taken())
        return await self.run(behavior, request, context)

    def _join(self) -> bool:
        try:
            return self.group.join()
        except peewee.DatabaseError as error:
            # A writer that skips the lock file (a sqlite3 shell) held on past the busy
            # timeout, or the file is gone: as the guard says of any call.
            _LOGGER.warning("database unavailable method=ActivateCode error=%s", error)
            raise _Busy("the database is busy or unreachable; retry") from error

    def _lock_taken(self) -> asyncio.Future[None]:
        """Resolves once the write group is open, or a thread of this process has the
        lock: tries every FILE_LOCK_POLL_SECONDS, in line for the lock, up to the busy
        timeout."""
        if self._waiting is None:
            loop = asyncio.get_running_loop()
            self._waiting = loop.create_future()
            self._give_up_at = loop.time() + db.SQLITE_BUSY_TIMEOUT_SECONDS
            loop.call_later(FILE_LOCK_POLL_SECONDS, self._poll)
        return self._waiting

    def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        waiting = self._waiting
        if waiting is None:
            return
        try:
            opened = self._join()
        except _Unavailable as unavailable:
            self.group.leave_line()
            self._waiting = None
            _fail(waiting, str(unavailable), _Busy)
            return
        if opened:
            self._waiting = None
            self._outcome_of_open_group()  # commits even if every waiter was cancelled
            waiting.set_result(None)
        elif self.group.busy_here:  # the waiters go to the worker threads
            self.group.leave_line()
            self._waiting = None
            waiting.set_result(None)
        elif loop.time() > self._give_up_at:
            self.group.leave_line()
            self._waiting = None
            _fail(waiting, "the database is busy; retry", _Busy)
        else:
            loop.call_later(FILE_LOCK_POLL_SECONDS, self._poll)

    async def run(self, behavior: Behavior, request: Any, context: _Context) -> Any:
        """Runs a call on the loop: in the write group if one is open."""
        if not self.group.open:
            return behavior(request, context)
        committed = self._joined()  # first: the group commits whatever the call does
        failure: Exception | None = None
        try:
            with self.group.member():
                answer = behavior(request, context)
        except Exception as error:  # an abort, say: told only once the group has committed
            failure = error
        if self.group.others_waiting():  # holding the lock for more would keep them waiting
            asyncio.get_running_loop().call_soon(self.commit)
        await asyncio.shield(committed)
        if failure is not None:
            raise failure
        return answer

    def _joined(self) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        outcome = self._outcome_of_open_group()
        self._joined_last = loop.time()
        self._members += 1
        if self._members == self._most:
            loop.call_soon(self.commit)
        return outcome

    def _outcome_of_open_group(self) -> asyncio.Future[None]:
        """The open group's commit, timed from the first time it is asked for."""
        if self._outcome is None:
            loop = asyncio.get_running_loop()
            self._outcome = loop.create_future()
            self._opened = self._joined_last = loop.time()
            self._timer = loop.call_at(self._opened + self.quiet, self._due)
            self._members = 0
        return self._outcome

    def _due(self) -> None:
        """The group's timer: commits, unless calls still join and there is time left."""
        loop = asyncio.get_running_loop()
        until = min(self._joined_last + self.quiet, self._opened + self.quiet * GROUP_QUIET_TIMES)
        if loop.time() < until and not self.group.others_waiting():
            self._timer = loop.call_at(until, self._due)
        else:
            self.commit()

    def commit(self) -> None:
        """Commits the open group, if any, and answers its calls."""
        outcome, self._outcome = self._outcome, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            if self.group.open:
                self.group.commit()
        except Exception as error:
            _LOGGER.error("group commit failed calls=%d error=%s", self._members, error)
            if outcome is not None:
                _fail(outcome, "the database could not commit; nothing changed, retry")
            return
        if outcome is not None:
            outcome.set_result(None)


def _fail(
    future: asyncio.Future[None], message: str, kind: type[_Unavailable] = _Unavailable
) -> None:
    """Ends ``future`` with kind(message), which no one may be left to see."""
    future.set_exception(kind(message))
    future.exception()  # seen: asyncio would log it as never retrieved


# The loop's: one loop, and on it one thread's connection, serve every LoopServer.
COMMITTER = GroupCommitter(WriteGroup())


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
    except _Unavailable as unavailable:
        await context.abort(grpc.StatusCode.UNAVAILABLE, str(unavailable))
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
