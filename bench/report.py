"""The results table: plain aligned text, one row per scenario and backend."""

from __future__ import annotations

from dataclasses import dataclass

from bench.load import Result

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
