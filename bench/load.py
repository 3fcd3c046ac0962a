"""A closed-loop load driver: keeps N calls in flight for a fixed time, times each call."""

from __future__ import annotations

import functools
import logging
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

_LOGGER = logging.getLogger(__name__)

# Starts one call and returns its future; called from the driving thread only.
StartCall = Callable[[], grpc.Future]

# Beyond the per-call deadline, how long the drain waits for the last calls.
DRAIN_MARGIN_SECONDS = 5.0


@dataclass
class Result:
    """What one measurement saw: calls that succeeded, calls that failed, and how long."""

    seconds: float
    latencies_ms: list[float]
    errors: int
    first_error: str | None

    @property
    def calls_per_second(self) -> float:
        """Calls that succeeded, per second; failed calls are counted in ``errors`` only."""
        return len(self.latencies_ms) / self.seconds if self.seconds > 0 else 0.0

    def percentile_ms(self, percent: int) -> float | None:
        if len(self.latencies_ms) < 2:
            return self.latencies_ms[0] if self.latencies_ms else None
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[percent - 1]


@dataclass
class _Tally:
    """Collects finished calls; the callbacks run on gRPC's threads, hence the lock."""

    slots: threading.Semaphore
    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None

    def finished(self, started: float, future: grpc.Future) -> None:
        elapsed_ms = (time.perf_counter() - started) * 1000
        error = future.exception()
        with self.lock:
            if error is None:
                self.latencies_ms.append(elapsed_ms)
            else:
                self.errors += 1
                self.first_error = self.first_error or _describe(error)
        self.slots.release()


def drive(start_call: StartCall, seconds: float, in_flight: int, call_timeout: float) -> Result:
    """Starts calls while fewer than ``in_flight`` are pending, until ``seconds`` have passed.

    The calls still pending then are waited for and counted, and the rate is
    taken over the whole time, so the tail of the run is not lost.
    """
    tally = _Tally(threading.Semaphore(in_flight))
    began = time.perf_counter()
    deadline = began + seconds
    while (left := deadline - time.perf_counter()) > 0:
        if not tally.slots.acquire(timeout=left):
            break
        started = time.perf_counter()
        start_call().add_done_callback(functools.partial(tally.finished, started))
    _drain(tally.slots, in_flight, call_timeout + DRAIN_MARGIN_SECONDS)
    with tally.lock:
        return Result(
            time.perf_counter() - began, list(tally.latencies_ms), tally.errors, tally.first_error
        )


def _drain(slots: threading.Semaphore, in_flight: int, timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    for _ in range(in_flight):
        if not slots.acquire(timeout=max(0.0, deadline - time.perf_counter())):
            _LOGGER.warning("drain gave up timeout_seconds=%.1f", timeout)
            return


def _describe(error: BaseException) -> str:
    if isinstance(error, grpc.Call):
        return f"{error.code().name}: {error.details()}"
    return repr(error)
