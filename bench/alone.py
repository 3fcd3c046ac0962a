"""What a call's SQL costs PostgreSQL alone: the ceiling of the PostgreSQL rows.

After the one-process ValidateCode and ActivateCode rows on PostgreSQL, with
their server stopped, pgbench (PostgreSQL's own load tool, written in C) runs
on the row's database the statements the server sends for one such call: the
key check, the redeemable read and, for ActivateCode, the redemption, each
prepared once per connection as the server prepares them. It keeps IN_FLIGHT
clients going, as the bench keeps IN_FLIGHT calls. No gRPC and no Python: its
rate is the most the database gives a server on this machine, printed next to
the echo rate.

The values are the scenario's: its project's key, its promotion, its stored
profiles, and for ActivateCode a code per transaction that no call redeemed
(taken from the top of the pool; the calls took theirs from the bottom).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Any

import psycopg2

from bench.databases import CONNECT_TIMEOUT_SECONDS
from bench.load import Result
from promo_server.domain.codes import key_of
from promo_server.domain.lifecycle import REDEEMED
from promo_server.store import lifecycle, projects

SCENARIOS = frozenset({"ValidateCode", "ActivateCode"})
PGBENCH = "pgbench"
# pgbench's own threads: one a core here, so that the client is not what limits it.
PGBENCH_THREADS = 2


class Skipped(Exception):
    """pgbench could not measure the row: the reason, for the notes under the table."""


@dataclass(frozen=True)
class _Stored:
    """What the scenario stored, as the statements need it."""

    key_id: str
    project_id: int
    promotion_id: int
    promotion_version: Any
    first_profile_id: int
    profiles: int
    first_code_id: int
    codes: int
    reward: str


def measure(scenario: str, db_url: str, in_flight: int, warmup: float, seconds: float) -> Result:
    """pgbench of ``scenario``'s statements on ``db_url``; only transactions that end
    after ``warmup`` count."""
    if shutil.which(PGBENCH) is None:
        raise Skipped(f"{PGBENCH} not found: the PostgreSQL 'SQL alone' rows were not measured")
    stored = _stored(db_url)
    script = _validate(stored) if scenario == "ValidateCode" else _activate(stored)
    with tempfile.TemporaryDirectory(prefix="promo-pgbench-") as folder:
        script_path = os.path.join(folder, "call.sql")
        with open(script_path, "w", encoding="utf-8") as file:
            file.write(script)
        finished = subprocess.run(
            [PGBENCH, "--no-vacuum", "--protocol=prepared", f"--client={in_flight}",
             f"--jobs={PGBENCH_THREADS}", f"--time={round(warmup + seconds)}",
             "--define=i=-1", f"--define=clients={in_flight}", f"--file={script_path}", "--log",
             f"--log-prefix={os.path.join(folder, 'log')}", db_url],
            capture_output=True, text=True, check=False,
        )
        if finished.returncode != 0:
            last = (finished.stderr.strip().splitlines() or ["no output"])[-1]
            raise Skipped(f"{PGBENCH} failed on {scenario} ({finished.returncode}): {last}")
        return _result(glob.glob(os.path.join(folder, "log.*")), finished.stdout, warmup)


def _stored(db_url: str) -> _Stored:
    conn = psycopg2.connect(db_url, connect_timeout=CONNECT_TIMEOUT_SECONDS)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT k.key_id, k.project_id, p.id, p.update_time,"
                " (SELECT min(id) FROM profile), (SELECT count(*) FROM profile),"
                " (SELECT min(id) FROM code WHERE promotion_id = p.id),"
                " (SELECT count(*) FROM code WHERE promotion_id = p.id),"
                " coalesce((SELECT reward FROM redemption LIMIT 1), '{}')"
                " FROM api_key k JOIN promotion p ON p.project_id = k.project_id"
                " ORDER BY p.id LIMIT 1"
            )
            row = cur.fetchone()
    finally:
        conn.close()
    if row is None:
        raise Skipped("the scenario stored no promotion: nothing for pgbench to run")
    return _Stored(*row)


def _validate(stored: _Stored) -> str:
    return _script(
        (projects._FIND_KEY.sql, [_text(stored.key_id)]),
        (lifecycle._REDEEMABLE_WITH_PROFILE.sql,
         ["'bench-user-0'", str(stored.project_id), _text(key_of("BENCH-VALIDATE"))]),
    )


def _activate(stored: _Stored) -> str:
    """The statements of one activation, its parameters in ``lifecycle.redeem``'s order:
    a fresh code a transaction, counted for one of the profiles (the one read and the
    one counted are each one of the bench's, not always the same: the cost is)."""
    code_id = f"({stored.first_code_id} + :n)"
    profile_id = f"({stored.first_profile_id} + :u)"
    now = "LOCALTIMESTAMP"
    promotion = str(stored.promotion_id)
    # The bench's promotion has no total limit: its redemptions count in shares.
    counts = [promotion, _text(str(stored.promotion_version)),
              now, code_id, now, profile_id, promotion, "0", "NULL",
              promotion, profile_id, "NULL", promotion]
    record = ["gen_random_uuid()::text", str(stored.project_id), code_id, promotion, profile_id,
              "'pgbench-' || :client_id || '-' || :i", _text(REDEEMED), _text(stored.reward), now]
    return (
        f"\\set u random(0, {stored.profiles - 1})\n"
        "\\set i :i + 1\n"
        # Codes from the top of the pool down, each client its own.
        f"\\set n {stored.codes - 1} - (:client_id + :clients * :i)\n"
        + _script(
            (projects._FIND_KEY.sql, [_text(stored.key_id)]),
            (lifecycle._REDEEMABLE_WITH_PROFILE.sql,
             ["'bench-user-' || :u", str(stored.project_id),
              "'bench-' || lpad((:n)::text, 8, '0')"]),
            (lifecycle._REDEEM_IN_SHARES_STATEMENT.sql, counts + record),
        )
    )


def _script(*statements: tuple[str, list[str]]) -> str:
    """Each statement on one line (pgbench's rule), its ``?`` replaced in order."""
    lines = []
    for sql, values in statements:
        first, *rest = sql.split("?")
        if len(rest) != len(values):
            raise ValueError(f"{len(rest)} parameters, {len(values)} values: {sql}")
        line = first + "".join(value + piece for value, piece in zip(values, rest, strict=True))
        lines.append(line + ";")
    return "\n".join(lines) + "\n"


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _result(logs: list[str], summary: str, warmup: float) -> Result:
    """The transactions that ended after the warm-up, from pgbench's per-transaction logs:
    ``client transaction latency_us script end_s end_us``."""
    ends: list[float] = []
    latencies: list[float] = []
    for path in logs:
        with open(path, encoding="ascii") as file:
            for line in file:
                fields = line.split()
                ends.append(int(fields[4]) + int(fields[5]) / 1e6)
                latencies.append(int(fields[2]) / 1000)
    if not ends:
        raise Skipped(f"{PGBENCH} logged no transaction")
    counted_from = min(ends) + warmup
    counted = [ms for end, ms in zip(ends, latencies, strict=True) if end >= counted_from]
    failed = re.search(r"number of failed transactions: (\d+)", summary)
    errors = int(failed.group(1)) if failed else 0
    return Result(max(ends) - counted_from, counted, errors, None if not errors else "see pgbench")

