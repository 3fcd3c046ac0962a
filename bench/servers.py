"""Servers under test, each in its own process so that client and server don't share a GIL.

A child binds port 0 on 127.0.0.1 and sends ``(port, api_key)`` back through a
pipe. It serves until SIGTERM, or until the pipe closes because the parent
died; it ignores SIGINT so that Ctrl-C reaches the parent, which stops it.
Several promo servers can share one database: the first migrates it and
creates the project, the others start after it and serve the same project.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import signal
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from typing import Any

import grpc

from promo_server.app import create_server
from promo_server.logs import configure as configure_logs
from promo_server.store import projects
from promo_server.store.db import database

_LOGGER = logging.getLogger(__name__)

HOST = "127.0.0.1"
ECHO_METHOD = "/bench.Echo/Echo"
ECHO_WORKERS = 32
# Spawn, not fork: gRPC's threads and the parent's channels must not be forked.
_CONTEXT = multiprocessing.get_context("spawn")
STARTUP_TIMEOUT_SECONDS = 60.0
EXIT_TIMEOUT_SECONDS = 10.0
# How long a stopping server lets the calls in flight finish.
GRACE_SECONDS = 1.0


@dataclass(frozen=True)
class Running:
    """A server ready for calls, the admin key of its project (empty for echo), its process."""

    address: str
    api_key: str
    pid: int


@contextlib.contextmanager
def echo_server() -> Iterator[Running]:
    with _child(_serve_echo, "echo-server") as running:
        yield running


@contextlib.contextmanager
def promo_server(db_url: str) -> Iterator[Running]:
    with _child(_serve_promo, "promo-server", db_url, True) as running:
        yield running


@contextlib.contextmanager
def promo_servers(db_url: str, count: int) -> Iterator[list[Running]]:
    """``count`` servers on one database, each in its own process on its own port.

    They start one after the other, so that only the first migrates; each
    ``Running`` carries the first one's key, which every server accepts.
    """
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(promo_server(db_url))
        others = [
            replace(stack.enter_context(
                _child(_serve_promo, f"promo-server-{number}", db_url, False)
            ), api_key=first.api_key)
            for number in range(2, count + 1)
        ]
        yield [first, *others]


@contextlib.contextmanager
def _child(target: Callable[..., None], name: str, *args: Any) -> Iterator[Running]:
    parent_end, child_end = _CONTEXT.Pipe()
    process = _CONTEXT.Process(target=target, args=(child_end, *args), name=name, daemon=True)
    process.start()
    child_end.close()
    try:
        yield _await_ready(parent_end, process)
    finally:
        _stop(process)
        parent_end.close()


def _await_ready(conn: Connection, process: multiprocessing.process.BaseProcess) -> Running:
    if not conn.poll(STARTUP_TIMEOUT_SECONDS):
        raise TimeoutError(f"{process.name} did not start in {STARTUP_TIMEOUT_SECONDS:.0f} s")
    try:
        port, api_key = conn.recv()
    except EOFError:
        process.join(EXIT_TIMEOUT_SECONDS)
        raise RuntimeError(f"{process.name} exited ({process.exitcode}) before serving") from None
    assert process.pid is not None  # started
    return Running(f"{HOST}:{port}", api_key, process.pid)


def _stop(process: multiprocessing.process.BaseProcess) -> None:
    process.terminate()
    process.join(EXIT_TIMEOUT_SECONDS)
    if process.is_alive():
        _LOGGER.warning("killing name=%s pid=%s", process.name, process.pid)
        process.kill()
        process.join()


# What follows runs in the child processes.


def _serve_echo(conn: Connection) -> None:
    stopping = _stop_on_sigterm()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=ECHO_WORKERS))
    service, method = ECHO_METHOD.strip("/").split("/")
    handler = grpc.unary_unary_rpc_method_handler(_echo)  # no (de)serializers: raw bytes
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service, {method: handler}),)
    )
    port = server.add_insecure_port(f"{HOST}:0")
    server.start()
    conn.send((port, ""))
    _wait(conn, stopping)
    server.stop(GRACE_SECONDS).wait()


def _echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    return request


def _serve_promo(conn: Connection, db_url: str, with_project: bool) -> None:
    stopping = _stop_on_sigterm()
    configure_logs("WARNING", "text")
    server, port = create_server(f"{HOST}:0", db_url)
    api_key = create_project() if with_project else ""
    server.start()
    conn.send((port, api_key))
    _wait(conn, stopping)
    server.stop(GRACE_SECONDS).wait()


def create_project() -> str:
    """A new project on the opened database; returns its admin key."""
    database.connect(reuse_if_open=True)
    try:
        _, admin_key = projects.create_project(f"bench-{uuid.uuid4().hex[:8]}")
    finally:
        database.close()
    return admin_key


def _stop_on_sigterm() -> threading.Event:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())
    return stopping


def _wait(conn: Connection, stopping: threading.Event) -> None:
    # poll() also returns when the parent's end closes: a dead parent stops us.
    while not stopping.is_set() and not conn.poll(0.2):
        pass
