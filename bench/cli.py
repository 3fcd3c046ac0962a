"""``python -m bench``: flags, then the run, then the table on stdout."""

from __future__ import annotations

import argparse
import logging
import sys

from bench import report, runner
from bench.databases import BACKENDS
from bench.report import Row
from bench.scenarios import ECHO, SCENARIOS, Scenario

DEFAULT_SECONDS = 5.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure the promo server against a bare gRPC echo server "
        f"({runner.IN_FLIGHT} calls in flight, servers in their own processes on 127.0.0.1).",
    )
    parser.add_argument("--seconds", type=_positive, default=DEFAULT_SECONDS,
                        help="measured time per row (default %(default)s)")
    parser.add_argument("--only", default="", metavar="SUBSTRING",
                        help="only the scenarios whose name contains this (any case); "
                        "the echo baseline always runs")
    parser.add_argument("--backends", type=_backends, default=BACKENDS,
                        help=f"comma-separated, of {','.join(BACKENDS)} (default: all)")
    return parser


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def _backends(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if unknown := [name for name in names if name not in BACKENDS]:
        raise argparse.ArgumentTypeError(
            f"unknown backend {', '.join(unknown)}; choose from {','.join(BACKENDS)}"
        )
    return names


def _selected(only: str) -> list[Scenario]:
    return [scenario for scenario in SCENARIOS if only.lower() in scenario.name.lower()]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    rows: list[Row] = []
    notes: list[str] = []
    status = 0
    try:
        runner.run(_selected(args.only), args.backends, args.seconds, rows, notes)
    except KeyboardInterrupt:
        notes.append("interrupted: only the rows measured so far are shown")
        status = 130
    _print(rows, notes)
    return status


def _print(rows: list[Row], notes: list[str]) -> None:
    echo_rate = next(
        (row.result.calls_per_second for row in rows if row.scenario == ECHO.name), None
    )
    print(report.table(rows, echo_rate))
    for note in notes:
        print(note)
