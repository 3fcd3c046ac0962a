"""The bench's 'SQL alone' rows: pgbench runs a call's statements as the server sends them.

Those rows are the ceiling the PostgreSQL rows are read against, so they must
do what a call does: an activation a transaction, each of a fresh code, every
counter counted once. PostgreSQL only: the rows exist only there.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator

import psycopg2
import pytest

from bench import alone
from bench.load import StartCall
from bench.scenarios import Target, activate_code, validate_code
from promo_server.app import create_server
from tests.conftest import Running, bearer, close_pool

# The prepared pool holds CODES_PER_SECOND codes per second of this: enough for
# the short pgbench run below.
PREPARED_SECONDS = 1.0
CLIENTS = 4


@pytest.fixture
def pg_running(postgres) -> Iterator[Running]:  # type: ignore[no-untyped-def]
    if shutil.which(alone.PGBENCH) is None:
        message = "pgbench NOT FOUND: the bench's SQL-alone rows are not tested"
        if os.environ.get("CI"):
            pytest.fail(message + " -- CI must test them")
        pytest.skip(message)
    name = postgres.create(template=postgres.template)
    url = postgres.url(name)
    server, port = create_server("127.0.0.1:0", url)
    server.start()
    yield Running(f"127.0.0.1:{port}", url, server)
    server.stop(None).wait()
    close_pool()
    postgres.drop(name)


def _prepare(running: Running, scenario: Callable[[Target], StartCall]) -> None:
    """What the bench's scenario stores before its calls, and a few of its calls."""
    admin = running.new_project().admin_key
    with running.channel() as channel:
        start = scenario(Target((channel,), bearer(admin), 10.0, PREPARED_SECONDS))
        for _ in range(3):
            start().result()


def _one(db_url: str, query: str) -> int:
    conn = psycopg2.connect(db_url)
    try:
        with conn.cursor() as cur:
            cur.execute(query)
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def test_the_activation_alone_redeems_a_fresh_code_per_transaction(pg_running: Running) -> None:
    _prepare(pg_running, activate_code)
    result = alone.measure("ActivateCode", pg_running.db_url, CLIENTS, warmup=0.0, seconds=1.0)

    transactions = len(result.latencies_ms)
    assert transactions > CLIENTS
    assert result.errors == 0
    # Each transaction recorded one redemption and counted its code and the promotion once.
    assert _one(pg_running.db_url, "SELECT count(*) FROM redemption") == transactions + 3
    assert _one(pg_running.db_url, "SELECT count(*) FROM code WHERE redemption_count = 1") == (
        transactions + 3
    )
    assert _one(pg_running.db_url, "SELECT max(redemption_count) FROM code") == 1
    assert _one(pg_running.db_url, "SELECT redemption_count FROM promotion") == 0
    assert _one(pg_running.db_url,
                "SELECT sum(redemption_count) FROM redemption_share") == transactions + 3
    assert _one(pg_running.db_url,
                "SELECT sum(redemption_count) FROM promotion_usage") == transactions + 3


def test_the_validation_alone_reads_and_changes_nothing(pg_running: Running) -> None:
    _prepare(pg_running, validate_code)
    result = alone.measure("ValidateCode", pg_running.db_url, CLIENTS, warmup=0.0, seconds=1.0)

    assert len(result.latencies_ms) > CLIENTS
    assert result.errors == 0
    assert _one(pg_running.db_url, "SELECT count(*) FROM redemption") == 0


def test_a_statement_and_its_values_must_agree() -> None:
    with pytest.raises(ValueError, match="2 parameters, 1 values"):
        alone._script(("SELECT ? + ?", ["1"]))
    assert alone._script(("SELECT ? + ?", ["1", ":n"])) == "SELECT 1 + :n;\n"


def test_pgbench_that_fails_is_a_skipped_row_not_a_figure(pg_running: Running) -> None:
    # Nothing prepared: no promotion to redeem against.
    with pytest.raises(alone.Skipped, match="no promotion"):
        alone.measure("ActivateCode", pg_running.db_url, CLIENTS, warmup=0.0, seconds=1.0)
