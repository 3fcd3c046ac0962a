"""The results tables: plain aligned text, one row per scenario and backend, then the code pools."""

from __future__ import annotations

from dataclasses import dataclass

from bench.load import Result
from bench.memory import Memory

HEADER = (
    "scenario", "backend", "servers", "calls/s", "ratio to echo", "p50 ms", "p99 ms",
    "server CPU ms/call", "database CPU ms/call", "errors", "target",
)
_NUMBERS = frozenset({3, 4, 5, 6, 7, 8, 9})  # right-aligned columns
NO_BACKEND = "-"


@dataclass(frozen=True)
class Goal:
    """The speed target of a call row: its rate over the echo rate, its 99th percentile."""

    min_ratio: float | None = None
    max_p99_ms: float | None = None


@dataclass(frozen=True)
class Row:
    scenario: str
    backend: str
    result: Result
    processes: int = 1  # server processes the calls were spread over; 0: pgbench, no server
    goal: Goal | None = None
    server_cpu_seconds: float | None = None  # all its server processes', while measured
    # PostgreSQL's processes', while measured; None on SQLite, which runs in the servers.
    database_cpu_seconds: float | None = None


def table(rows: list[Row], echo_rate: float | None) -> str:
    """The rows, with each rate divided by the echo rate of the same run."""
    return _aligned([HEADER, *(_cells(row, echo_rate) for row in rows)], _NUMBERS)


def _cells(row: Row, echo_rate: float | None) -> tuple[str, ...]:
    result = row.result
    rate = result.calls_per_second
    ratio = f"{rate / echo_rate:.2f}" if echo_rate else "-"
    return (
        row.scenario,
        row.backend,
        _servers(row.processes),
        f"{rate:.0f}",
        ratio,
        _ms(result.percentile_ms(50)),
        _ms(result.percentile_ms(99)),
        _per_call(row.server_cpu_seconds, row),
        _per_call(row.database_cpu_seconds, row),
        str(result.errors),
        _goal(row, echo_rate),
    )


def _servers(processes: int) -> str:
    if processes == 0:
        return "none: pgbench"
    return f"{processes} process" + ("" if processes == 1 else "es")


def _goal(row: Row, echo_rate: float | None) -> str:
    """Each target of the row with its verdict (">= 0.60x echo ok; p99 < 30 ms MISSED")."""
    goal = row.goal
    if goal is None:
        return "-"
    checks = []
    if goal.min_ratio is not None and echo_rate:
        ratio = row.result.calls_per_second / echo_rate
        checks.append(Check(f">= {goal.min_ratio:.2f}x echo", ratio >= goal.min_ratio))
    if goal.max_p99_ms is not None:
        p99 = row.result.percentile_ms(99)
        checks.append(Check(f"p99 < {goal.max_p99_ms:.0f} ms",
                            p99 is not None and p99 < goal.max_p99_ms))
    return "; ".join(_check(check) for check in checks) or "-"


def _per_call(cpu_seconds: float | None, row: Row) -> str:
    """CPU time over the calls that succeeded, in ms."""
    calls = len(row.result.latencies_ms)
    if cpu_seconds is None or not calls:
        return "-"
    return f"{cpu_seconds * 1000 / calls:.3f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _aligned(lines: list[tuple[str, ...]], numbers: frozenset[int]) -> str:
    """Numbers right-aligned, the other columns left-aligned, no trailing blanks."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join(
        "  ".join(
            cell.rjust(width) if i in numbers else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in lines
    )


# The code-pool figures: one row per measurement, each target marked ok or MISSED.

POOL_HEADER = (
    "backend", "what", "codes", "seconds", "codes/s", "ratio / target", "server peak RSS"
)
_POOL_NUMBERS = frozenset({2, 3, 4})  # right-aligned columns
MB = 1_000_000
# The text of the check that raw baselines carry: printed without a verdict.
BASELINE = "baseline"


@dataclass(frozen=True)
class Check:
    """A figure against its target, as printed ("1.43x raw (<= 1.00)"), and the verdict."""

    text: str
    ok: bool


@dataclass(frozen=True)
class PoolRow:
    backend: str
    what: str
    codes: int
    seconds: float | None = None  # None: the measurement failed
    checks: tuple[Check, ...] = ()
    memory: Memory | None = None
    memory_ok: bool | None = None
    error: str | None = None


def pools_table(rows: list[PoolRow]) -> str:
    return _aligned([POOL_HEADER, *(_pool_cells(row) for row in rows)], _POOL_NUMBERS)


def _pool_cells(row: PoolRow) -> tuple[str, ...]:
    seconds = row.seconds
    rate = f"{row.codes / seconds:,.0f}" if seconds else "-"
    verdicts = "; ".join(_check(check) for check in row.checks)
    if row.error:
        verdicts = f"FAILED: {row.error}" + (f"; {verdicts}" if verdicts else "")
    return (
        row.backend,
        row.what,
        f"{row.codes:,}",
        "-" if seconds is None else f"{seconds:.2f}",
        rate,
        verdicts or "-",
        _memory(row.memory, row.memory_ok),
    )


def _memory(memory: Memory | None, ok: bool | None) -> str:
    if memory is None:
        return "-"
    text = f"{memory.peak_bytes / MB:.0f} MB (from {memory.start_bytes / MB:.0f})"
    if not memory.exact:
        text += " sampled"
    return text if ok is None else f"{text} {_verdict(ok)}"


def _check(check: Check) -> str:
    return check.text if check.text == BASELINE else f"{check.text} {_verdict(check.ok)}"


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"
