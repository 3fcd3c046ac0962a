"""The hot calls' statements (``db.Statement``): on PostgreSQL each connection prepares them
once and then runs them by name; a connection found to have lost them (a pooler in
transaction mode hands out another backend) turns preparing off. On SQLite they run as
they are."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import peewee
import pytest

from promo_server.config import Settings, SettingsError
from promo_server.domain import keys
from promo_server.store import db, projects
from promo_server.store.migrate import migrate
from tests.conftest import PostgresDatabases, close_pool

FIND_KEY = projects._FIND_KEY


@pytest.fixture(autouse=True)
def preparing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with preparing on, and leaves the next one the same."""
    monkeypatch.setattr(db, "_PREPARING", db._Preparing())


def opened(url: str, prepare: bool = True) -> str:
    """Opens ``url``, takes this thread's connection, and returns a new project's key id."""
    migrate(db.open_database(url, pool_size=2, prepare=prepare))
    db.database.connect(reuse_if_open=True)
    _, token = projects.create_project(f"prepared-{uuid.uuid4().hex[:8]}")
    parsed = keys.parse_token(token)
    assert parsed is not None
    return parsed[0]


@pytest.fixture
def pg_url(postgres: PostgresDatabases) -> Iterator[str]:
    name = postgres.create(template=postgres.template)
    yield postgres.url(name)
    close_pool()
    postgres.drop(name)


def prepared_here() -> list[str]:
    """The statements this thread's PostgreSQL connection has prepared."""
    rows = db.database.execute_sql("SELECT statement FROM pg_prepared_statements").fetchall()
    return [row[0] for row in rows]


def test_a_hot_statement_is_prepared_once_per_connection_and_finds_the_same_rows(
    db_url: str, caplog: pytest.LogCaptureFixture,
) -> None:
    key_id = opened(db_url)
    with caplog.at_level(logging.WARNING, logger="promo_server.store.db"):
        found = [projects.find_key(key_id) for _ in range(3)]
    assert caplog.messages == []
    assert found[0] is not None and found[0].role == "admin"
    assert found == [found[0]] * 3
    assert projects.find_key("no-such-key") is None
    if db_url.startswith("postgresql"):
        assert prepared_here() == [FIND_KEY.prepare]


def test_with_preparing_off_nothing_is_prepared(pg_url: str) -> None:
    key_id = opened(pg_url, prepare=False)
    assert projects.find_key(key_id) is not None
    assert prepared_here() == []


def test_a_connection_that_lost_its_statements_turns_preparing_off_and_answers(
    pg_url: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """As behind a pooler in transaction mode: the backend under the connection no longer
    has what the connection prepared. The call still gets its row; the process stops
    preparing, and says why."""
    key_id = opened(pg_url)
    assert projects.find_key(key_id) is not None
    db.database.execute_sql("DEALLOCATE ALL")
    with caplog.at_level(logging.WARNING, logger="promo_server.store.db"):
        found = projects.find_key(key_id)
    assert found is not None and found.role == "admin"
    assert any("prepared statements turned off" in m for m in caplog.messages), caplog.messages
    assert projects.find_key(key_id) is not None
    assert prepared_here() == []


def test_a_statement_lost_inside_a_transaction_fails_it_as_retryable(pg_url: str) -> None:
    """The failed EXECUTE ended the transaction: the call fails as the guard's
    UNAVAILABLE (an OperationalError), and a retry goes through unprepared."""
    key_id = opened(pg_url)
    assert projects.find_key(key_id) is not None
    db.database.execute_sql("DEALLOCATE ALL")
    with (
        pytest.raises(peewee.OperationalError, match="prepared statement was lost"),
        db.database.atomic(),
    ):
        projects.find_key(key_id)
    with db.database.atomic():
        assert projects.find_key(key_id) is not None
    assert prepared_here() == []


def test_the_prepare_setting_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().pg_prepare
    for text, value in (("0", False), ("off", False), ("True", True), (" on ", True)):
        monkeypatch.setenv("PROMO_PG_PREPARE", text)
        assert Settings().pg_prepare is value
    monkeypatch.setenv("PROMO_PG_PREPARE", "maybe")
    with pytest.raises(SettingsError, match="PROMO_PG_PREPARE must be 1 or 0"):
        Settings()
