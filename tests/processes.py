"""Servers in their own processes, for tests that stop or kill them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

import grpc

READY_SECONDS = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def promo_server(*args: str) -> list[str]:
    """The command line of `promo-server ARGS`, run by this interpreter."""
    return [sys.executable, "-m", "promo_server.main", *args]


def check(db_url: str) -> tuple[int, list[str]]:
    """Runs `promo-server check`: its exit status and the lines it printed."""
    done = subprocess.run(promo_server("check", "--db", db_url), capture_output=True, text=True,
                          env={**os.environ, "PROMO_DATABASE_URL": ""}, timeout=60)
    return done.returncode, done.stdout.splitlines()


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive free loopback ports."""
    while True:
        base = free_port()
        try:
            with contextlib.ExitStack() as held:
                for port in range(base, base + count):
                    sock = held.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue


def _await_ready(server: subprocess.Popen[str], target: str, log: IO[str]) -> None:
    """Waits for the server to answer; one that exits first fails with its log."""
    deadline = time.monotonic() + READY_SECONDS
    with grpc.insecure_channel(target) as channel:
        ready = grpc.channel_ready_future(channel)
        while True:
            try:
                ready.result(timeout=0.5)
                return
            except grpc.FutureTimeoutError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                state = "exited" if server.poll() is not None else "is not ready"
                raise RuntimeError(f"promo-server {state} ({server.returncode}): {log.read()}")


def create_project(db_url: str, name: str = "demo") -> str:
    """Creates a project as an operator does; returns its admin key."""
    env = {**os.environ, "PROMO_DATABASE_URL": db_url}
    made = subprocess.run(promo_server("create-project", name), env=env,
                          capture_output=True, text=True, check=True)
    return made.stdout.strip().splitlines()[-1]


@contextmanager
def serving(
    db_url: str, port: int | None = None, *args: str, log: IO[str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`promo-server serve [ARGS]` on a loopback port, ready for calls: (process, target).

    Its log goes to ``log``, else to a temporary file: never to a pipe, which a
    busy server would fill (one line per activation) and then block on.
    """
    port = port or free_port()
    env = {**os.environ, "PROMO_DATABASE_URL": db_url}
    with contextlib.ExitStack() as stack:
        sink = log or stack.enter_context(tempfile.TemporaryFile("w+"))
        server = subprocess.Popen(
            promo_server("serve", "--listen", f"127.0.0.1:{port}", *args),
            env=env, stderr=sink, text=True,
        )
        target = f"127.0.0.1:{port}"
        try:
            _await_ready(server, target, sink)
            yield server, target
        finally:
            if server.poll() is None:
                server.send_signal(signal.SIGKILL)
            server.wait(timeout=20)
