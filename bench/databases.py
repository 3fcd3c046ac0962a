"""Throw-away databases for the promo server: SQLite files in a temp dir, or PostgreSQL.

PostgreSQL databases are created on ``PROMO_TEST_DATABASE_URL`` (the server
the tests use) and dropped when the backend closes, also on error or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator

import psycopg2
from psycopg2 import sql

from promo_server.config import redact_url

_LOGGER = logging.getLogger(__name__)

PG_ADMIN_URL = os.environ.get(
    "PROMO_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
CONNECT_TIMEOUT_SECONDS = 5

# Returns the URL of a new, empty database.
NewDatabase = Callable[[], str]


class Unavailable(Exception):
    """The backend cannot be measured here."""


@contextlib.contextmanager
def _sqlite() -> Iterator[NewDatabase]:
    with tempfile.TemporaryDirectory(prefix="promo-bench-") as folder:
        numbers = itertools.count(1)
        yield lambda: f"sqlite:///{folder}/promo-{next(numbers)}.db"


@contextlib.contextmanager
def _postgresql() -> Iterator[NewDatabase]:
    databases = PostgresDatabases(PG_ADMIN_URL)
    try:
        databases.execute(sql.SQL("SELECT 1"))
    except psycopg2.OperationalError as error:
        reason = " ".join(str(error).split())
        raise Unavailable(
            f"PostgreSQL was NOT measured: no server at {redact_url(PG_ADMIN_URL)} ({reason})"
        ) from None
    try:
        yield databases.create
    finally:
        databases.drop_all()


class PostgresDatabases:
    """Creates databases on one PostgreSQL server and drops them all at the end."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.prefix = f"promo_bench_{uuid.uuid4().hex[:8]}"
        self.created: list[str] = []

    def execute(self, query: sql.Composable) -> None:
        conn = psycopg2.connect(self.admin_url, connect_timeout=CONNECT_TIMEOUT_SECONDS)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(query)
        finally:
            conn.close()

    def create(self) -> str:
        name = f"{self.prefix}_{len(self.created) + 1}"
        self.created.append(name)  # first, so that an interrupted CREATE is dropped too
        self.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        base, _, _ = self.admin_url.rpartition("/")
        return f"{base}/{name}"

    def drop_all(self) -> None:
        """Drops every database created; one that fails is logged, the others still go."""
        while self.created:
            name = self.created.pop()
            try:
                self.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
            except psycopg2.Error as error:
                _LOGGER.warning("database not dropped name=%s error=%s", name, error)


def analyze(db_url: str) -> None:
    """Brings PostgreSQL's planner statistics up to date, as autovacuum does within a
    minute of a table's first rows: a scenario has just filled the tables, and with
    none the planner took the (project, phone) index to find a profile by id, reading
    every profile of the project."""
    if db_url.startswith("postgresql"):
        conn = psycopg2.connect(db_url, connect_timeout=CONNECT_TIMEOUT_SECONDS)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("ANALYZE")
        finally:
            conn.close()


# Each backend opens as a context manager yielding a database factory; closing it cleans up.
OPENERS: dict[str, Callable[[], contextlib.AbstractContextManager[NewDatabase]]] = {
    "sqlite": _sqlite,
    "postgresql": _postgresql,
}
BACKENDS = tuple(OPENERS)
