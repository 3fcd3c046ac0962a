"""``python -m bench``: flags, then the run, then the table on stdout."""

from __future__ import annotations

import argparse
import logging
import statistics
import sys

from bench import pools, profiler, report, runner
from bench.databases import BACKENDS
from bench.report import PoolRow, Row
from bench.scenarios import ECHO, SCENARIOS, Scenario

DEFAULT_SECONDS = 5.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure the promo server against a bare gRPC echo server "
        f"({runner.IN_FLIGHT} calls in flight, servers in their own processes on 127.0.0.1), "
        "then its code pools (bulk import, generate, export) against the database alone.",
    )
    parser.add_argument("--seconds", type=_positive, default=DEFAULT_SECONDS,
                        help="measured time per row (default %(default)s)")
    parser.add_argument("--only", default="", metavar="SUBSTRING",
                        help="only the scenarios whose name contains this (any case), "
                        f"'{pools.NAME}' for the code pools; the echo baseline runs "
                        "whenever a call scenario does")
    parser.add_argument("--backends", type=_backends, default=BACKENDS,
                        help=f"comma-separated, of {','.join(BACKENDS)} (default: all)")
    parser.add_argument("--codes", type=_count, default=pools.DEFAULT_CODES, metavar="N",
                        help="codes per code-pool figure (default %(default)s)")
    parser.add_argument("--big", action=argparse.BooleanOptionalAction, default=True,
                        help=f"also import {pools.BIG_FACTOR} x --codes, to see whether the "
                        "server's memory grows with the file (default: on)")
    parser.add_argument("--profile", choices=sorted(profiler.PROFILED), metavar="CALL",
                        help="instead of the tables: profile one call on the server side "
                        f"({', '.join(sorted(profiler.PROFILED))}), in this process, on each "
                        "backend, and print the functions it spends its time in")
    parser.add_argument("--calls", type=_count, default=profiler.DEFAULT_CALLS, metavar="N",
                        help="calls profiled by --profile (default %(default)s)")
    return parser


def _count(text: str) -> int:
    value = int(text.replace("_", "").replace(",", ""))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


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
    if args.profile:
        return _profile(args.profile, args.backends, args.calls)
    scenarios = _selected(args.only)
    with_pools = args.only.lower() in pools.NAME
    rows: list[Row] = []
    pool_rows: list[PoolRow] = []
    notes: list[str] = []
    status = 0
    if not scenarios and not with_pools:
        notes.append("no scenario matches --only")
    try:
        if scenarios:
            runner.run(scenarios, args.backends, args.seconds, rows, notes)
        if with_pools:
            work = pools.workload(args.codes, args.big)
            pools.run(args.backends, work, pool_rows, notes)
    except KeyboardInterrupt:
        notes.append("interrupted: only the rows measured so far are shown")
        status = 130
    _print(rows, pool_rows, notes)
    return status


def _profile(name: str, backends: tuple[str, ...], calls: int) -> int:
    notes: list[str] = []
    try:
        reports = profiler.run(name, backends, calls, notes)
    except KeyboardInterrupt:
        return 130
    print("\n\n".join([*reports, *notes]))
    return 0


def _print(rows: list[Row], pool_rows: list[PoolRow], notes: list[str]) -> None:
    echo_rates = [row.result.calls_per_second for row in rows if row.scenario == ECHO.name]
    echo_rate = statistics.fmean(echo_rates) if echo_rates else None  # first and last run
    tables = []
    if rows:
        tables.append(report.table(rows, echo_rate))
    if pool_rows:
        tables.append(report.pools_table(pool_rows))
    if tables:
        print("\n\n".join(tables))
    for note in notes:
        print(note)
