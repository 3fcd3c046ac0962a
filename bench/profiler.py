"""``python -m bench --profile activate``: where the server's time goes on one call.

The promo server runs in the bench's own process, with one worker thread, on a
fresh database of each selected backend. The scenario prepares as the bench
does; untimed calls warm the server up; then the calls go one at a time, and
cProfile, enabled in the threads that run handlers only (the worker thread;
on SQLite also the event loop's, where ValidateCode and ActivateCode run), sees
each from the handler's start to its answer: the guard (key check, database
connection), the use case, building the response. gRPC's own share (accepting
the call, (de)serializing, sending) is compiled code it cannot see. Profiling
slows small functions most, so the shares matter more than the milliseconds.
"""

from __future__ import annotations

import cProfile
import logging
import os
import pstats
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

import grpc

from bench import servers
from bench.databases import OPENERS, Unavailable
from bench.runner import CALL_TIMEOUT_SECONDS, CONNECT_TIMEOUT_SECONDS, metadata
from bench.scenarios import CODES_PER_SECOND, Scenario, Target, activate_code, validate_code
from promo_server.app import create_server
from promo_server.config import Settings

_LOGGER = logging.getLogger(__name__)

# What --profile takes.
PROFILED = {
    "activate": Scenario("ActivateCode", activate_code),
    "validate": Scenario("ValidateCode", validate_code),
}
DEFAULT_CALLS = 500
WARMUP_CALLS = 50
# The threads that run handlers: promo_server.app names its workers rpc_0, rpc_1, ...;
# api/loopserver.py its event loop's thread grpc-loop.
HANDLER_THREADS = ("rpc_", "grpc-loop")
CUMULATIVE_ROWS = 30
OWN_ROWS = 15
# Lets the worker finish the last warm-up call before the profiler starts.
SETTLE_SECONDS = 0.2
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep

Key = tuple[str, int, str]  # pstats: file, line, function


def run(name: str, backends: Sequence[str], calls: int, notes: list[str]) -> list[str]:
    """One report per backend that could be opened."""
    scenario = PROFILED[name]
    reports = []
    for backend in backends:
        try:
            with OPENERS[backend]() as new_database:
                reports.append(_profile(scenario, backend, new_database(), calls))
        except Unavailable as error:
            _LOGGER.warning("%s", error)
            notes.append(f"!!! {error}")
    return reports


class _HandlerProfiles:
    """A profile hook for new threads: a cProfile of each thread that runs handlers,
    from when ``on`` is set."""

    def __init__(self) -> None:
        self.profilers: list[cProfile.Profile] = []
        self.on = threading.Event()

    def hook(self, frame: FrameType, event: str, arg: Any) -> None:
        if not threading.current_thread().name.startswith(HANDLER_THREADS):
            sys.setprofile(None)
        elif self.on.is_set():
            profiler = cProfile.Profile()
            self.profilers.append(profiler)
            profiler.enable()  # replaces this hook in this thread


def _profile(scenario: Scenario, backend: str, db_url: str, calls: int) -> str:
    logging.getLogger("promo_server").setLevel(logging.WARNING)  # as the bench's servers log
    watch = _HandlerProfiles()
    threading.setprofile(watch.hook)  # the handlers' threads start after this
    server, port = create_server(
        f"{servers.HOST}:0", db_url,
        Settings(database_url=db_url, listen=f"{servers.HOST}:0", threads=1),
    )
    try:
        running = servers.Running(f"{servers.HOST}:{port}", servers.create_project(), os.getpid())
        server.start()
        with grpc.insecure_channel(running.address) as channel:
            grpc.channel_ready_future(channel).result(timeout=CONNECT_TIMEOUT_SECONDS)
            target = Target((channel,), metadata(running), CALL_TIMEOUT_SECONDS,
                            (WARMUP_CALLS + calls) / CODES_PER_SECOND)
            start_call = scenario.prepare(target)
            threading.setprofile(None)
            for _ in range(WARMUP_CALLS):
                start_call().result()
            time.sleep(SETTLE_SECONDS)
            watch.on.set()
            began = time.perf_counter()
            for _ in range(calls):
                start_call().result()
            seconds = time.perf_counter() - began
            time.sleep(SETTLE_SECONDS)
            stats = pstats.Stats(*watch.profilers)
    finally:
        threading.setprofile(None)
        server.stop(None).wait()
    _LOGGER.info("profiled scenario=%s backend=%s calls=%d seconds=%.2f",
                 scenario.name, backend, calls, seconds)
    return _report(scenario.name, backend, calls, seconds, stats)


@dataclass(frozen=True)
class _Entry:
    key: Key
    calls: int
    own: float
    cumulative: float


def _report(name: str, backend: str, calls: int, seconds: float, stats: pstats.Stats) -> str:
    table: dict[Key, tuple[int, int, float, float, dict[Key, Any]]]
    table = stats.stats  # type: ignore[attr-defined]
    entries = {key: _Entry(key, total, own, cumulative)
               for key, (_, total, own, cumulative, _) in table.items()}
    # The work item that runs one call: the longest function run once a call. Only what it
    # calls is shown, not the worker's loop waiting for the next call.
    root = max((entry for entry in entries.values()
                if entry.calls == calls and entry.key[0] != "~"),
               key=lambda entry: entry.cumulative)
    callees: dict[Key, list[Key]] = {}
    for key, (*_, callers) in table.items():
        for caller in callers:
            callees.setdefault(caller, []).append(key)
    inside, todo = {root.key}, [root.key]
    while todo:
        for callee in callees.get(todo.pop(), ()):
            if callee not in inside:
                inside.add(callee)
                todo.append(callee)
    shown = [entries[key] for key in inside]
    per_call = root.cumulative / calls * 1000
    lines = [
        f"{name} on {backend}: {calls} calls one at a time, {calls / seconds:.0f} calls/s "
        f"seen by the client; the server's handler {per_call:.2f} ms a call (profiled)",
        "",
        "by cumulative time",
        *_entries(sorted(shown, key=lambda entry: -entry.cumulative)[:CUMULATIVE_ROWS],
                  calls, root.cumulative),
        "",
        "by own time",
        *_entries(sorted(shown, key=lambda entry: -entry.own)[:OWN_ROWS],
                  calls, root.cumulative),
    ]
    return "\n".join(lines)


def _entries(entries: list[_Entry], calls: int, whole: float) -> list[str]:
    header = ("cum ms/call", "cum %", "own ms/call", "own %", "calls/call", "function")
    cells = [header, *(
        (f"{entry.cumulative / calls * 1000:.3f}", f"{entry.cumulative / whole:.0%}",
         f"{entry.own / calls * 1000:.3f}", f"{entry.own / whole:.0%}",
         f"{entry.calls / calls:.1f}", _where(entry.key))
        for entry in entries
    )]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header) - 1)]
    return ["  ".join([*(cell.rjust(width) for cell, width in zip(line, widths, strict=False)),
                       line[-1]])
            for line in cells]


def _where(key: Key) -> str:
    """``server/promo_server/store/db.py:98 first``, ``peewee.py:3200 execute``, ``{built-in}``."""
    path, line, function = key
    if path == "~":
        return function
    for marker in ("site-packages" + os.sep, "lib" + os.sep + "python"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker.startswith("lib"):
                path = path.split(os.sep, 1)[-1]  # the stdlib, without python3.11/
            break
    else:
        path = path.removeprefix(_REPO)
    return f"{path}:{line} {function}"
