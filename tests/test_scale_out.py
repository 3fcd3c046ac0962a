"""Scaling out: `serve --workers N` processes sharing a port, and PostgreSQL connections
lost under traffic. Real server processes, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import psycopg2
import pytest

from promo import errors
from promo.client import PromoClient
from promo.v1 import code_pb2 as pb
from promo.v1 import code_pb2_grpc, promotion_pb2_grpc
from promo_server.app import create_server
from promo_server.config import Settings
from promo_server.store import db
from tests.conftest import PostgresDatabases, Running, close_pool
from tests.processes import create_project, free_port, free_ports, promo_server, serving
from tests.test_lifecycle import Api, in_parallel
from tests.test_metrics import scrape

# Channels whose connections are their own (not shared by gRPC between channels), so
# that the kernel may send each to a different worker.
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]
CHANNELS = 8
CALLS_OF_LIST = ("promo_rpc_calls_total", (("code", "OK"), ("method", "ListPromotions")))
CART = {"currency": "USD", "items": [{"sku": "a", "quantity": 1, "unit_price": "10"}]}


def apis(target: str, key: str, count: int) -> Iterator[Api]:
    for _ in range(count):
        channel = grpc.insecure_channel(target, options=OWN_CONNECTION)
        yield Api(code_pb2_grpc.CodeServiceStub(channel),
                  promotion_pb2_grpc.PromotionServiceStub(channel), key)


def worker_pids(server: subprocess.Popen[str]) -> set[int]:
    children = subprocess.run(["pgrep", "-P", str(server.pid)], capture_output=True, text=True)
    return {int(pid) for pid in children.stdout.split()}


def pids_that_activated(log: str) -> set[int]:
    entries = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    return {e["pid"] for e in entries if e["message"].startswith("code activated")}


def test_workers_share_the_port_spread_calls_and_stop_together(
    db_url: str, tmp_path: Path
) -> None:
    key = create_project(db_url)
    log = (tmp_path / "server.log").open("w+")
    with serving(db_url, None, "--workers", "2", log=log) as (server, target), \
            PromoClient(target, key, channels=CHANNELS) as client:
        client.create_promotion({"external_id": "spread", "name": {"en-US": "S"},
                                 "discount": {"percent": "10"}})
        client.import_csv(io.BytesIO("".join(f"W-{i}\n" for i in range(32)).encode()), "spread")
        workers = worker_pids(server)

        results = in_parallel([
            (lambda i=i: client.activate_code(f"W-{i}", f"u{i}", CART)) for i in range(32)
        ])

        assert all(isinstance(r, pb.Redemption) for r in results), results
        assert len(workers) == 2
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
    log.close()
    assert pids_that_activated((tmp_path / "server.log").read_text()) == workers
    for pid in workers:
        assert not os.path.exists(f"/proc/{pid}") or _is_zombie(pid)


def test_a_client_needs_at_least_one_channel() -> None:
    with pytest.raises(ValueError, match="channels must be at least 1, not 0"):
        PromoClient("127.0.0.1:1", "key", channels=0)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_worker_that_dies_is_replaced(db_url: str) -> None:
    key = create_project(db_url)
    with serving(db_url, None, "--workers", "2") as (server, target):
        first = worker_pids(server)
        os.kill(min(first), signal.SIGKILL)
        deadline = time.monotonic() + 20
        while (now := worker_pids(server)) == first or len(now) < 2:
            assert time.monotonic() < deadline, f"no replacement worker: {now}"
            time.sleep(0.1)

        clients = list(apis(target, key, CHANNELS))
        promo = clients[0].promotion("after")
        clients[0].pool(promo, *[f"A-{i}" for i in range(CHANNELS)])
        redeemed = [clients[i].activate(f"A-{i}", "ann") for i in range(CHANNELS)]

        assert len({r.id for r in redeemed}) == CHANNELS
        assert min(first) not in now and len(now) == 2


def test_workers_stop_when_their_supervisor_is_killed(db_url: str) -> None:
    with serving(db_url, None, "--workers", "2") as (server, _):
        workers = worker_pids(server)
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
        deadline = time.monotonic() + 20
        while alive := {pid for pid in workers if not _is_zombie(pid)}:
            assert time.monotonic() < deadline, f"orphaned workers still serve: {alive}"
            time.sleep(0.1)
    assert len(workers) == 2


def test_a_second_server_on_a_taken_port_fails_instead_of_sharing_it(db_url: str) -> None:
    port = free_port()
    with serving(db_url, port):
        env = {**os.environ, "PROMO_DATABASE_URL": db_url}
        second = subprocess.run(
            promo_server("serve", "--listen", f"127.0.0.1:{port}"),
            env=env, capture_output=True, text=True, timeout=30,
        )
    assert second.returncode != 0
    assert f"127.0.0.1:{port}" in second.stderr


def test_a_worker_that_cannot_serve_its_metrics_says_so_in_one_line(tmp_path: Path) -> None:
    base = free_ports(2)
    with socket.socket() as taken:  # worker 1's metrics port (the given one plus 1)
        taken.bind(("127.0.0.1", base + 1))
        taken.listen()
        done = subprocess.run(
            promo_server("serve", "--db", f"sqlite:///{tmp_path}/promo.db", "--listen",
                         f"127.0.0.1:{free_port()}", "--metrics-listen", f"127.0.0.1:{base}",
                         "--workers", "2"),
            capture_output=True, text=True, timeout=60,
        )

    assert done.returncode == 1
    assert f"error: cannot serve metrics on 127.0.0.1:{base + 1}:" in done.stderr
    assert "Traceback" not in done.stderr


def test_workers_must_be_at_least_one() -> None:
    refused = subprocess.run(promo_server("serve", "--workers", "0"),
                             capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2
    assert "--workers: must be a whole number of at least 1, not '0'" in refused.stderr


# --- PostgreSQL connections lost under traffic --------------------------------------


@pytest.fixture
def pg_running(postgres: PostgresDatabases) -> Iterator[tuple[Running, str]]:
    """An in-process server on a PostgreSQL database of its own, and that database's name."""
    name = postgres.create(template=postgres.template)
    url = postgres.url(name)
    server, port = create_server("127.0.0.1:0", url)
    server.start()
    try:
        yield Running(f"127.0.0.1:{port}", url, server), name
    finally:
        server.stop(None).wait()
        close_pool()
        postgres.drop(name)


def terminate_backends(postgres: PostgresDatabases, name: str) -> int:
    with psycopg2.connect(postgres.admin_url) as admin, admin.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
        row = cursor.fetchone()
    admin.close()
    return int(row[0]) if row else 0


def test_lost_postgresql_connections_lose_nothing_and_the_server_recovers(
    pg_running: tuple[Running, str], postgres: PostgresDatabases,
) -> None:
    running, name = pg_running
    key = running.new_project().admin_key
    with PromoClient(running.target, key) as client:
        client.create_promotion({"external_id": "p", "name": {"en-US": "P"},
                                 "discount": {"percent": "10"}})
        client.import_csv(io.BytesIO("".join(f"L-{i}\n" for i in range(60)).encode()), "p")

        def activate(i: int) -> str:
            return client.activate_code(f"L-{i}", f"u{i}", CART, request_id=f"lost-{i}").id

        before = in_parallel([lambda i=i: activate(i) for i in range(20)])
        assert terminate_backends(postgres, name) > 0  # the server's pooled connections
        during = in_parallel([lambda i=i: activate(i) for i in range(20, 60)])

        ids = [*before, *during]
        assert all(isinstance(i, str) for i in ids), [i for i in ids if not isinstance(i, str)]
        assert len(set(ids)) == 60
        assert sum(client.get_code(f"L-{i}").redemption_count for i in range(60)) == 60
        assert len(list(client.iter_redemptions(promotion="p"))) == 60


def backend_query(postgres: PostgresDatabases, pid: int) -> str:
    """The last statement the backend ``pid`` was sent, as PostgreSQL reports it."""
    with psycopg2.connect(postgres.admin_url) as admin, admin.cursor() as cursor:
        cursor.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", (pid,))
        row = cursor.fetchone()
    admin.close()
    return str(row[0]) if row else ""


def test_a_pooled_postgresql_connection_is_reused_without_a_ping_and_dropped_once_lost(
    postgres: PostgresDatabases,
) -> None:
    """Taking an idle connection from the pool sends nothing to the server (the pool
    used to send SELECT 1 first, on every call); one whose backend was terminated is
    still found out, and replaced, at the next checkout."""
    name = postgres.create(template=postgres.template)
    try:
        db.open_database(postgres.url(name), pool_size=2)

        def backend_pid() -> int:
            db.database.connect(reuse_if_open=True)
            try:
                return int(db.database.execute_sql("SELECT pg_backend_pid()").fetchone()[0])
            finally:
                db.database.close()

        first = backend_pid()
        db.database.connect()
        try:
            assert backend_query(postgres, first) == "SELECT pg_backend_pid()"
        finally:
            db.database.close()
        assert backend_pid() == first

        assert terminate_backends(postgres, name) == 1
        time.sleep(0.1)  # the terminated backend's farewell reaches the socket
        replaced = backend_pid()
        assert replaced != first
        assert backend_pid() == replaced
    finally:
        close_pool()
        postgres.drop(name)


# --- lock waits that run out -------------------------------------------------------


def test_a_lock_wait_that_runs_out_is_unavailable_and_changes_nothing(
    db_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another writer holds the code's row (PostgreSQL) or the database (SQLite) past the
    statement or busy timeout: the activation is UNAVAILABLE, never INTERNAL, and once the
    other writer is done the same call goes through."""
    sqlite = db_url.startswith("sqlite")
    if sqlite:
        monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_SECONDS", 1.0)
        monkeypatch.setattr(db, "SQLITE_PRAGMAS", tuple(
            (name, 1000 if name == "busy_timeout" else value) for name, value in db.SQLITE_PRAGMAS
        ))
    settings = Settings(database_url=db_url, listen="127.0.0.1:0", statement_timeout_seconds=1)
    server, port = create_server("127.0.0.1:0", db_url, settings)
    server.start()
    try:
        running = Running(f"127.0.0.1:{port}", db_url, server)
        key = running.new_project().admin_key
        with PromoClient(running.target, key) as client:
            client.create_promotion({"external_id": "p", "name": {"en-US": "P"},
                                     "discount": {"percent": "10"}})
            client.import_csv(io.BytesIO(b"LOCKED-1\n"), "p")
            with _other_writer(db_url):
                with pytest.raises(errors.PromoError) as refused:
                    client.activate_code("LOCKED-1", "ann", CART, request_id="held")
                assert refused.value.code == grpc.StatusCode.UNAVAILABLE
                assert client.get_code("LOCKED-1").redemption_count == 0
            redeemed = client.activate_code("LOCKED-1", "ann", CART, request_id="held")
            assert client.get_code("LOCKED-1").redemption_count == 1
            assert redeemed.code == "LOCKED-1"
    finally:
        server.stop(None).wait()


@contextlib.contextmanager
def _other_writer(db_url: str) -> Iterator[None]:
    if db_url.startswith("sqlite"):
        other = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            other.execute("ROLLBACK")
            other.close()
        return
    other = psycopg2.connect(db_url)
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT id FROM code WHERE code = 'LOCKED-1' FOR UPDATE")
        yield
    finally:
        other.rollback()
        other.close()


def _lists_counted(port: int) -> float:
    """ListPromotions calls a worker's metrics count; 0 while its endpoint is not up yet."""
    try:
        return scrape(port).get(CALLS_OF_LIST, 0)
    except OSError:
        return 0


def counted_pools(port: int) -> bool:
    """Whether the worker whose metrics are on ``port`` has counted the pools."""
    return ("promo_pool_stock_check_time_seconds", ()) in scrape(port)


def test_each_worker_serves_its_metrics_on_the_next_port(db_url: str) -> None:
    """...and only worker 0 counts the pools (each count reads every available code)."""
    key = create_project(db_url)
    base = free_ports(2)
    made = 0
    with serving(db_url, None, "--workers", "2", "--metrics-listen", f"127.0.0.1:{base}") \
            as (_, target):
        # The kernel picks a worker per connection: a second worker still starting,
        # or a run of bad luck, sends every channel to one. New clients until both served.
        deadline = time.monotonic() + 20
        while True:
            with PromoClient(target, key, channels=CHANNELS) as client:
                for _ in range(CHANNELS * 2):
                    client.list_promotions()
            made += CHANNELS * 2
            counted = [_lists_counted(port) for port in (base, base + 1)]
            if all(counted) or time.monotonic() > deadline:
                break
        while not counted_pools(base):  # worker 0 counts as it starts, on a thread
            assert time.monotonic() < deadline + 10, "worker 0 never counted the pools"
            time.sleep(0.05)
        assert not counted_pools(base + 1)

    assert all(count >= 1 for count in counted)  # both workers served some
    assert sum(counted) == made
