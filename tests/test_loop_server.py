"""Where calls run: on SQLite the hot calls run on the event loop only when they cannot
wait, so a writer elsewhere never holds up the reads; on both backends an activation
that finds the database busy waits its turn and then goes through."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import peewee
import pytest
from prometheus_client import REGISTRY

from promo.v1 import code_pb2 as pb
from promo.v1 import code_pb2_grpc, promotion_pb2_grpc
from promo_server.app import create_server
from promo_server.config import Settings, SettingsError
from promo_server.store import db
from promo_server.store.db import (
    WriteGroup,
    database,
    open_database,
    when_committed,
    write_transaction,
)
from tests.conftest import Project, Running, lock_for_writes
from tests.test_lifecycle import Api

# How long the other writer holds on: long enough for a read to be answered meanwhile.
HOLD_SECONDS = 0.5


@contextlib.contextmanager
def other_process_writing(db_url: str) -> Iterator[None]:
    """Another server process in the middle of a write: on SQLite it holds the lock file
    the servers line up on (an flock of another open file, as another process would);
    on PostgreSQL, a lock that makes writes of promotions wait."""
    if db_url.startswith("sqlite"):
        path = db_url.removeprefix("sqlite:///")
        held = os.open(f"{path}-writer", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(held, fcntl.LOCK_EX)
            yield
        finally:
            os.close(held)  # releases the flock
        return
    blocker = lock_for_writes(db_url, "promotion")
    try:
        yield
    finally:
        blocker.rollback()
        blocker.close()


def test_reads_are_answered_while_an_activation_waits_for_another_writer(
    running: Running, project: Project, db_url: str
) -> None:
    channel = running.channel()
    api = Api(code_pb2_grpc.CodeServiceStub(channel),
              promotion_pb2_grpc.PromotionServiceStub(channel), project.admin_key)
    promo = api.promotion("busy")
    api.pool(promo, "BUSY-1", "BUSY-2")

    with ThreadPoolExecutor(max_workers=1) as caller:
        with other_process_writing(db_url):
            activating = caller.submit(api.activate, "BUSY-1", "ann")
            time.sleep(HOLD_SECONDS / 2)
            checked = api.validate("BUSY-2", "bob")
            waited = not activating.done()
            time.sleep(HOLD_SECONDS / 2)
        redeemed = activating.result(timeout=10)

    assert checked.valid
    assert waited, "the activation went through while another process was writing"
    assert redeemed.state == pb.Redemption.REDEEMED
    assert api.code("BUSY-1").redemption_count == 1
    channel.close()


@pytest.fixture
def opened(db_url: str) -> Iterator[str]:
    open_database(db_url, pool_size=2)
    database.connect(reuse_if_open=True)
    yield db_url
    database.close()


def test_a_write_group_opens_only_when_the_lock_is_free_and_never_waits(opened: str) -> None:
    group = WriteGroup()
    if not opened.startswith("sqlite"):
        assert not group.join(), "PostgreSQL row locks can't be known ahead: nothing runs inline"
        return
    assert group.join()
    with group.member(), write_transaction():  # the transaction takes the lock it holds
        database.execute_sql("SELECT 1")
    group.commit()
    with other_process_writing(opened):
        began = time.monotonic()
        assert not group.join()
        assert time.monotonic() - began < HOLD_SECONDS, "joining waited for the lock"
    assert group.join(), "the lock is free again once the other writer is done"
    group.commit()


def _values(table: str) -> list[int]:
    return [row[0] for row in database.execute_sql(f"SELECT x FROM {table} ORDER BY x")]


@pytest.fixture
def sqlite_opened(tmp_path: Path) -> Iterator[Path]:
    """Write groups are SQLite's: on PostgreSQL every call runs on its own (above)."""
    path = tmp_path / "grouped.db"
    open_database(f"sqlite:///{path}", pool_size=2)
    database.connect(reuse_if_open=True)
    yield path
    database.close()


def _until(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + 5
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_write_group_and_the_threads_of_its_process_take_turns(sqlite_opened: Path) -> None:
    """A group does not open while a thread writes (its calls line up behind the thread),
    and an open group sees a thread that waits for it (and commits at once)."""
    database.execute_sql("CREATE TABLE grouped (x INTEGER)")
    group = WriteGroup()
    holding, release = threading.Event(), threading.Event()

    def write(wait: bool) -> None:
        with write_transaction():
            database.execute_sql("INSERT INTO grouped VALUES (2)")
            holding.set()
            if wait:
                release.wait(5)

    with ThreadPoolExecutor(max_workers=1) as worker:
        writing = worker.submit(write, True)
        assert holding.wait(5)
        assert not group.join()
        assert group.busy_here, "the lock was taken for another process's"
        release.set()
        writing.result(timeout=5)

        assert group.join()
        assert not group.others_waiting()
        writing = worker.submit(write, False)
        assert _until(group.others_waiting), "the waiting thread went unseen"
        assert not writing.done()
        group.commit()
        writing.result(timeout=5)
    assert _values("grouped") == [2, 2]


def test_the_process_in_line_for_the_lock_goes_before_the_one_that_just_wrote(
    sqlite_opened: Path,
) -> None:
    """Another process is played by files of its own: flocks of two open files conflict."""
    group = WriteGroup()
    other = os.open(f"{sqlite_opened}-writer", os.O_RDWR | os.O_CREAT)
    other_line = os.open(f"{sqlite_opened}-writer-next", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(other, fcntl.LOCK_EX)  # the other process writes
        assert not group.join() and not group.busy_here
        fcntl.flock(other, fcntl.LOCK_UN)  # and is done; to write again it must queue
        with pytest.raises(BlockingIOError):
            fcntl.flock(other_line, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert group.join(), "the process in line was next"
        fcntl.flock(other_line, fcntl.LOCK_EX | fcntl.LOCK_NB)  # now it may queue
        assert group.others_waiting(), "the group sees the other process in line"
        fcntl.flock(other_line, fcntl.LOCK_UN)
        group.commit()
    finally:
        os.close(other)
        os.close(other_line)


def test_a_write_group_commits_its_members_together_and_undoes_a_failed_one_alone(
    sqlite_opened: Path,
) -> None:
    database.execute_sql("CREATE TABLE grouped (x INTEGER)")
    group = WriteGroup()
    told: list[bool] = []
    assert group.join()
    with group.member(), write_transaction():
        database.execute_sql("INSERT INTO grouped VALUES (1)")
        when_committed(told.append)
    with pytest.raises(ValueError), group.member(), write_transaction():
        database.execute_sql("INSERT INTO grouped VALUES (2)")
        raise ValueError("this call fails")
    with group.member():
        database.execute_sql("INSERT INTO grouped VALUES (3)")
    assert told == [], "told before the commit"
    group.commit()
    assert told == [True]
    assert _values("grouped") == [1, 3]
    when_committed(told.append)  # no group open: at once
    assert told == [True, True]


def test_a_write_transaction_in_a_group_member_is_undone_alone_and_may_try_again(
    sqlite_opened: Path,
) -> None:
    """As an activation that finds its rows changed: its write transaction rolls back,
    and it tries again in a new one, inside the same member of the group."""
    database.execute_sql("CREATE TABLE grouped (x INTEGER)")
    group = WriteGroup()
    assert group.join()
    with group.member():
        database.execute_sql("INSERT INTO grouped VALUES (1)")
        with pytest.raises(LookupError), write_transaction():
            database.execute_sql("INSERT INTO grouped VALUES (2)")
            with database.atomic():  # Peewee's own savepoints nest inside
                database.execute_sql("INSERT INTO grouped VALUES (3)")
            raise LookupError("stale: try again")
        with write_transaction():
            database.execute_sql("INSERT INTO grouped VALUES (4)")
    group.commit()
    assert _values("grouped") == [1, 4]


def test_a_write_group_whose_commit_fails_keeps_none_of_its_writes(sqlite_opened: Path) -> None:
    # A deferred foreign key is checked at COMMIT: one way to make SQLite refuse it.
    database.execute_sql("CREATE TABLE parent (x INTEGER PRIMARY KEY)")
    database.execute_sql(
        "CREATE TABLE child (x INTEGER REFERENCES parent (x) DEFERRABLE INITIALLY DEFERRED)"
    )
    group = WriteGroup()
    told: list[bool] = []
    assert group.join()
    with group.member():
        database.execute_sql("INSERT INTO parent VALUES (1)")
        when_committed(told.append)
    with group.member():
        database.execute_sql("INSERT INTO child VALUES (2)")  # no parent 2
    with pytest.raises(Exception, match="FOREIGN KEY"):
        group.commit()
    assert told == [False]
    assert _values("parent") == []
    assert group.join(), "the failed group gave the lock back"
    group.commit()


def test_an_activation_that_waits_past_the_busy_timeout_is_unavailable_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite an activation waits for the lock file on the event loop (PostgreSQL's
    lock waits: tests/test_scale_out.py); when the wait runs out it is UNAVAILABLE, and
    once the other writer is done the same call goes through."""
    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_SECONDS", HOLD_SECONDS)
    db_url = f"sqlite:///{tmp_path / 'busy.db'}"
    labels = {"method": "ActivateCode", "code": "UNAVAILABLE"}
    counted_before = REGISTRY.get_sample_value("promo_rpc_calls_total", labels) or 0
    with _served_sqlite(db_url) as api:
        api.pool(api.promotion("busy"), "BUSY-1")
        with other_process_writing(db_url):
            began = time.monotonic()
            with pytest.raises(grpc.RpcError) as refused:
                api.activate("BUSY-1", "ann", request_id="waited")
            waited = time.monotonic() - began
            checked = api.validate("BUSY-1", "ann")
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert waited >= HOLD_SECONDS
        # Counted as every answer is, though the call never reached its handler.
        assert REGISTRY.get_sample_value("promo_rpc_calls_total", labels) == counted_before + 1
        assert checked.valid, "the code is as it was"
        assert api.code("BUSY-1").redemption_count == 0
        assert api.activate("BUSY-1", "ann", request_id="waited").state == pb.Redemption.REDEEMED


@contextlib.contextmanager
def _served_sqlite(db_url: str) -> Iterator[Api]:
    """A server in this process (whose settings a test may patch), and an admin's Api."""
    server, port = create_server("127.0.0.1:0", db_url)
    server.start()
    running = Running(f"127.0.0.1:{port}", db_url, server)
    channel = running.channel()
    try:
        yield Api(code_pb2_grpc.CodeServiceStub(channel),
                  promotion_pb2_grpc.PromotionServiceStub(channel),
                  running.new_project().admin_key)
    finally:
        channel.close()
        server.stop(None).wait()


def test_a_group_commit_setting_out_of_range_is_refused(db_url: str) -> None:
    for ms in (-1.0, 101.0, float("nan")):
        settings = Settings(database_url=db_url, listen="127.0.0.1:0", group_commit_ms=ms)
        with pytest.raises(SettingsError, match="PROMO_GROUP_COMMIT_MS"):
            create_server("127.0.0.1:0", db_url, settings)


def test_activations_whose_group_fails_to_commit_are_unavailable_and_change_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite: the activations of a write group are answered after its commit; should it
    fail (a full disk, say), none of them happened, each is UNAVAILABLE, and a retry
    goes through."""
    with _served_sqlite(f"sqlite:///{tmp_path / 'failing.db'}") as api:
        api.pool(api.promotion("failing"), *(f"FAIL-{n}" for n in range(4)))
        commit = database.obj.commit
        failures = [peewee.OperationalError("disk I/O error")]

        def commit_failing_once() -> None:
            if failures:
                raise failures.pop()
            commit()

        monkeypatch.setattr(database.obj, "commit", commit_failing_once)
        with ThreadPoolExecutor(max_workers=4) as callers:
            tried = [callers.submit(api.activate, f"FAIL-{n}", f"p{n}", f"r{n}")
                     for n in range(4)]
            outcomes = [future.exception(timeout=10) for future in tried]
        refused = [error for error in outcomes if error is not None]
        assert refused, "no activation was in the group that failed"
        assert all(isinstance(error, grpc.RpcError)
                   and error.code() == grpc.StatusCode.UNAVAILABLE for error in refused)
        for n, error in enumerate(outcomes):
            counted = api.code(f"FAIL-{n}").redemption_count
            assert counted == (0 if error is not None else 1), f"FAIL-{n}"
            assert api.activate(f"FAIL-{n}", f"p{n}", f"r{n}").state == pb.Redemption.REDEEMED
            assert api.code(f"FAIL-{n}").redemption_count == 1


def test_a_forked_process_lines_up_for_the_write_lock_on_files_of_its_own(
    sqlite_opened: Path,
) -> None:
    """`serve --workers N` forks after migrating, which opened the lock files: an flock
    belongs to the open file, which a fork shares, so a worker that kept its parent's
    would never be kept out by it."""
    group = WriteGroup()
    assert group.join()  # this process holds the write lock
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # the child: may it take the lock its parent holds?
        took = db._WRITERS.try_acquire(str(sqlite_opened))
        os.write(write_end, b"took" if took else b"kept out")
        os._exit(0)
    try:
        os.close(write_end)
        answer = os.read(read_end, 16)
        os.waitpid(child, 0)
    finally:
        os.close(read_end)
        group.commit()
    assert answer == b"kept out"


def test_an_activation_is_timed_to_its_answer_group_commit_wait_included(
    tmp_path: Path,
) -> None:
    db_url = f"sqlite:///{tmp_path / 'timed.db'}"
    settings = Settings(database_url=db_url, listen="127.0.0.1:0", group_commit_ms=60)
    server, port = create_server("127.0.0.1:0", db_url, settings)
    server.start()
    labels = {"method": "ActivateCode"}
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            api = Api(code_pb2_grpc.CodeServiceStub(channel),
                      promotion_pb2_grpc.PromotionServiceStub(channel),
                      Running(f"127.0.0.1:{port}", db_url, server).new_project().admin_key)
            api.pool(api.promotion("timed"), "T-1")
            timed_before = REGISTRY.get_sample_value("promo_rpc_duration_seconds_sum", labels) or 0
            began = time.monotonic()
            api.activate("T-1", "ann")  # alone: its group waits its quiet time before commit
            waited = time.monotonic() - began
    finally:
        server.stop(None).wait()

    timed = REGISTRY.get_sample_value("promo_rpc_duration_seconds_sum", labels) - timed_before
    assert waited >= 0.06
    assert timed >= 0.06  # not only the handler's own fraction of a millisecond
