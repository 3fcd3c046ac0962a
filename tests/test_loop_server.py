"""Where calls run: on SQLite the hot calls run on the event loop only when they cannot
wait, so a writer elsewhere never holds up the reads; on both backends an activation
that finds the database busy waits its turn and then goes through."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from promo.v1 import code_pb2 as pb
from promo.v1 import code_pb2_grpc, promotion_pb2_grpc
from promo_server.store.db import database, open_database, write_transaction, writer_if_free
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


def test_the_write_lock_is_taken_only_when_free_and_never_waited_for(opened: str) -> None:
    if not opened.startswith("sqlite"):
        with writer_if_free() as held:
            assert not held, "PostgreSQL row locks can't be known ahead: nothing runs inline"
        return
    with writer_if_free() as held:
        assert held
        with write_transaction():  # the transaction takes the lock it already holds
            database.execute_sql("SELECT 1")
    with other_process_writing(opened):
        began = time.monotonic()
        with writer_if_free() as held:
            assert not held
        assert time.monotonic() - began < HOLD_SECONDS, "writer_if_free waited for the lock"
    with writer_if_free() as held:
        assert held, "the lock is free again once the other writer is done"
