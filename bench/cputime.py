"""The CPU time that other processes (the servers, the database) use while a block of
the bench runs.

Linux only: reads ``utime`` and ``stime`` from ``/proc/<pid>/stat``, in clock
ticks. On a shared machine whose speed drifts, a server's CPU time per call is
steadier than its calls/s: it tells whether a change made a call cheaper when
two runs' rates disagree.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


@dataclass
class CpuTime:
    """Seconds of CPU the processes used during the block (None until it ends, or if
    one of them ended meanwhile)."""

    seconds: float | None = None


@contextlib.contextmanager
def used_by(pids: Sequence[int]) -> Iterator[CpuTime]:
    """Yields a ``CpuTime`` that is filled in when the block ends."""
    used = CpuTime()
    before = _seconds(pids)
    try:
        yield used
    finally:
        with contextlib.suppress(OSError):  # a process ended
            used.seconds = _seconds(pids) - before


@contextlib.contextmanager
def used_by_named(name: str) -> Iterator[CpuTime]:
    """As ``used_by``, for every process named ``name`` (``postgres``: the server's
    backends and its own workers, which write what the calls changed). Those that
    start during the block count from their start; those that end lose their share."""
    used = CpuTime()
    before = _ticks_of_named(name)
    try:
        yield used
    finally:
        after = _ticks_of_named(name)
        ticks = sum(count - before.get(pid, 0) for pid, count in after.items())
        used.seconds = ticks / _TICKS_PER_SECOND


def _seconds(pids: Sequence[int]) -> float:
    return sum(_ticks(pid)[1] for pid in pids) / _TICKS_PER_SECOND


def _ticks_of_named(name: str) -> dict[int, int]:
    ticks = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):  # it ended meanwhile
            found, count = _ticks(int(entry))
            if found == name:
                ticks[int(entry)] = count
    return ticks


def _ticks(pid: int) -> tuple[str, int]:
    """The process's name, and the clock ticks it has used."""
    with open(f"/proc/{pid}/stat") as file:
        stat = file.read()
    # The name, in parentheses, may hold spaces: count the fields after it.
    fields = stat[stat.rindex(")") + 2:].split()
    return stat[stat.index("(") + 1:stat.rindex(")")], int(fields[11]) + int(fields[12])
