"""Runs the echo baseline, every selected scenario on every selected backend, and the
baseline again."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

import grpc

from bench import alone, cputime, load, servers
from bench.databases import OPENERS, Unavailable, analyze
from bench.load import Result
from bench.report import NO_BACKEND, Row
from bench.scenarios import ECHO, Scenario, Target

_LOGGER = logging.getLogger(__name__)

IN_FLIGHT = 32
# The name of a database server's processes, for the database CPU column; SQLite has none.
DATABASE_PROCESSES = {"postgresql": "postgres"}
CALL_TIMEOUT_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 10.0
# Untimed calls first: they open the server's pooled connections and warm its caches.
MAX_WARMUP_SECONDS = 1.0


def run(
    scenarios: Sequence[Scenario],
    backends: Sequence[str],
    seconds: float,
    rows: list[Row],
    notes: list[str],
) -> None:
    """Appends each row as it is measured, so an interrupted run keeps what it has.

    The echo baseline runs first and again last: this machine's rate drifts
    within a run, and the ratios use the mean of the two.
    """
    _echo(seconds, rows)
    for backend in backends:
        try:
            _run_backend(backend, scenarios, seconds, rows, notes)
        except Unavailable as error:
            _LOGGER.warning("%s", error)
            notes.append(f"!!! {error}")
    _echo(seconds, rows)


def _echo(seconds: float, rows: list[Row]) -> None:
    with servers.echo_server() as running:
        rows.append(measure(ECHO, NO_BACKEND, [running], seconds))


def _run_backend(
    backend: str, scenarios: Sequence[Scenario], seconds: float, rows: list[Row],
    notes: list[str],
) -> None:
    """Each scenario gets a fresh database and servers, so no row inherits another's data.

    On PostgreSQL, a one-process ValidateCode or ActivateCode row is followed by
    the same calls' SQL alone (see alone.py), on that database, its server stopped.
    """
    with OPENERS[backend]() as new_database:
        for scenario in scenarios:
            db_url = new_database()
            with servers.promo_servers(db_url, scenario.processes) as running:
                rows.append(measure(scenario, backend, running, seconds, db_url))
            if (backend == "postgresql" and scenario.processes == 1
                    and scenario.name in alone.SCENARIOS):
                _sql_alone(scenario, db_url, seconds, rows, notes)


def _sql_alone(
    scenario: Scenario, db_url: str, seconds: float, rows: list[Row], notes: list[str]
) -> None:
    _LOGGER.info("measuring scenario=%s alone=pgbench seconds=%s clients=%d",
                 scenario.name, seconds, IN_FLIGHT)
    try:
        # No CPU columns: pgbench's connections end before it does, taking their CPU
        # time out of /proc with them.
        result = alone.measure(scenario.name, db_url, IN_FLIGHT, _warmup(seconds), seconds)
    except alone.Skipped as skipped:
        _LOGGER.warning("%s", skipped)
        notes.append(f"!!! {skipped}")
        return
    rows.append(Row(f"{scenario.name} SQL alone", "postgresql", result, processes=0))


def measure(
    scenario: Scenario, backend: str, running: Sequence[servers.Running], seconds: float,
    db_url: str = "",
) -> Row:
    """Prepares the scenario on ``db_url``, warms up untimed, then keeps IN_FLIGHT calls
    going for ``seconds``, over every server."""
    _LOGGER.info("measuring scenario=%s backend=%s processes=%d seconds=%s in_flight=%d",
                 scenario.name, backend, len(running), seconds, IN_FLIGHT)
    warmup = _warmup(seconds)
    with contextlib.ExitStack() as stack:
        channels = tuple(
            stack.enter_context(grpc.insecure_channel(server.address)) for server in running
        )
        for channel in channels:
            grpc.channel_ready_future(channel).result(timeout=CONNECT_TIMEOUT_SECONDS)
        start_call = scenario.prepare(
            Target(channels, metadata(running[0]), CALL_TIMEOUT_SECONDS, warmup + seconds)
        )
        if db_url:
            analyze(db_url)
        _drive(start_call, warmup)
        database = cputime.CpuTime()  # SQLite runs in the servers' processes
        with contextlib.ExitStack() as measuring:
            used = measuring.enter_context(cputime.used_by([s.pid for s in running]))
            if backend in DATABASE_PROCESSES:
                database = measuring.enter_context(
                    cputime.used_by_named(DATABASE_PROCESSES[backend])
                )
            result = _drive(start_call, seconds)
    if result.errors:
        _LOGGER.warning(
            "calls failed scenario=%s backend=%s processes=%d errors=%d first=%s",
            scenario.name, backend, len(running), result.errors, result.first_error,
        )
    return Row(scenario.name, backend, result, len(running), scenario.goal, used.seconds,
               database.seconds)


def _warmup(seconds: float) -> float:
    return min(MAX_WARMUP_SECONDS, seconds / 5)


def _drive(start_call: load.StartCall, seconds: float) -> Result:
    return load.drive(start_call, seconds, IN_FLIGHT, CALL_TIMEOUT_SECONDS)


def metadata(running: servers.Running) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {running.api_key}"),) if running.api_key else ()
