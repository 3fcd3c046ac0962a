"""The CPU time that other processes (the servers) use while a block of the bench runs.

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


def _seconds(pids: Sequence[int]) -> float:
    ticks = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as file:
            stat = file.read()
        # The name, in parentheses, may hold spaces: count the fields after it.
        fields = stat[stat.rindex(")") + 2:].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / _TICKS_PER_SECOND
