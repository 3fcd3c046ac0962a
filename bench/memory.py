"""The resident memory of another process (the server) while a block of the bench runs.

Linux only: reads ``/proc/<pid>/status``. Before the block, the kernel's peak
(``VmHWM``) is reset to the current size by writing 5 to ``/proc/<pid>/clear_refs``,
so that the peak after the block is exactly the block's, even on a server that
has served other calls before. Where the reset is refused, the peak is the
largest ``VmRSS`` seen by a thread sampling every 50 ms instead (it can miss a
spike shorter than that). The sampler always runs; the larger reading wins.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass

_LOGGER = logging.getLogger(__name__)

SAMPLE_SECONDS = 0.05
_RESET_PEAK = "5"


@dataclass
class Memory:
    """Bytes resident when the block began, and at most during it (0 until it ends)."""

    start_bytes: int = 0
    peak_bytes: int = 0
    exact: bool = False  # the peak is the kernel's, not only sampled


@contextlib.contextmanager
def peak_rss(pid: int) -> Iterator[Memory]:
    """Yields a ``Memory`` that is filled in when the block ends, also on error."""
    memory = Memory(exact=_reset_peak(pid))
    memory.start_bytes = memory.peak_bytes = _status_bytes(pid, "VmRSS")
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(SAMPLE_SECONDS):
            with contextlib.suppress(OSError):  # the process ended
                memory.peak_bytes = max(memory.peak_bytes, _status_bytes(pid, "VmRSS"))

    sampler = threading.Thread(target=sample, name=f"rss-{pid}", daemon=True)
    sampler.start()
    try:
        yield memory
    finally:
        stop.set()
        sampler.join()
        with contextlib.suppress(OSError):
            last = _status_bytes(pid, "VmHWM" if memory.exact else "VmRSS")
            memory.peak_bytes = max(memory.peak_bytes, last)


def _reset_peak(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as file:
            file.write(_RESET_PEAK)
    except OSError as error:
        _LOGGER.info("peak RSS not resettable, sampling instead pid=%d error=%s", pid, error)
        return False
    return True


def _status_bytes(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as file:
        for line in file:
            name, _, value = line.partition(":")
            if name == field:
                number, unit = value.split()
                if unit != "kB":
                    raise ValueError(f"unexpected unit in /proc/{pid}/status: {line!r}")
                return int(number) * 1024
    raise ValueError(f"no {field} in /proc/{pid}/status")
