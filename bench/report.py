"""The results tables: plain aligned text, one row per scenario and backend, then the code pools."""

from __future__ import annotations

from dataclasses import dataclass

from bench.load import Result
from bench.memory import Memory

HEADER = ("scenario", "backend", "calls/s", "ratio to echo", "p50 ms", "p99 ms", "errors")
NO_BACKEND = "-"


@dataclass(frozen=True)
class Row:
    scenario: str
    backend: str
    result: Result


def table(rows: list[Row], echo_rate: float | None) -> str:
    """The rows, with each rate divided by the echo rate of the same run."""
    cells = [HEADER, *(_cells(row, echo_rate) for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(HEADER))]
    return "\n".join(_line(line, widths) for line in cells)


def _cells(row: Row, echo_rate: float | None) -> tuple[str, ...]:
    result = row.result
    rate = result.calls_per_second
    ratio = f"{rate / echo_rate:.2f}" if echo_rate else "-"
    return (
        row.scenario,
        row.backend,
        f"{rate:.0f}",
        ratio,
        _ms(result.percentile_ms(50)),
        _ms(result.percentile_ms(99)),
        str(result.errors),
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _line(cells: tuple[str, ...], widths: list[int]) -> str:
    # Names left-aligned, numbers right-aligned.
    names = [cell.ljust(width) for cell, width in zip(cells[:2], widths[:2], strict=True)]
    numbers = [cell.rjust(width) for cell, width in zip(cells[2:], widths[2:], strict=True)]
    return "  ".join(names + numbers)


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
    cells = [POOL_HEADER, *(_pool_cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(POOL_HEADER))]
    return "\n".join(
        "  ".join(
            cell.rjust(width) if i in _POOL_NUMBERS else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in cells
    )


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
