"""Fixtures: every behaviour test runs on SQLite and on PostgreSQL, through a real server.

SQLite gets a fresh file under tmp_path. PostgreSQL gets a fresh database per
test, copied from a template migrated once per run, all dropped at the end.
``PROMO_TEST_DATABASE_URL`` names the PostgreSQL server to use (any database
on it that the user can connect to; default the local ``test`` database).
"""

from __future__ import annotations

import os
import sqlite3
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import psycopg2
import pytest
from psycopg2 import sql

from promo_server.app import create_server
from promo_server.store import projects
from promo_server.store.db import database, open_database
from promo_server.store.migrate import migrate

PG_ADMIN_URL = os.environ.get(
    "PROMO_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
BACKENDS = ("sqlite", "postgresql")


class PostgresDatabases:
    """Creates throw-away databases on the test PostgreSQL server."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.prefix = f"promo_test_{uuid.uuid4().hex[:8]}"
        self.template = f"{self.prefix}_template"
        self.created: list[str] = []
        self.count = 0

    def _execute(self, query: sql.Composable) -> None:
        conn = psycopg2.connect(self.admin_url, connect_timeout=5)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(query)
        finally:
            conn.close()

    def url(self, name: str) -> str:
        base, _, _ = self.admin_url.rpartition("/")
        return f"{base}/{name}"

    def create(self, template: str | None = None) -> str:
        self.count += 1
        name = self.template if template is None else f"{self.prefix}_{self.count}"
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        self._execute(query)
        self.created.append(name)
        return name

    def drop(self, name: str) -> None:
        self._execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        self.created.remove(name)

    def drop_all(self) -> None:
        for name in list(reversed(self.created)):
            self.drop(name)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresDatabases]:
    databases = PostgresDatabases(PG_ADMIN_URL)
    try:
        databases._execute(sql.SQL("SELECT 1"))
    except psycopg2.OperationalError as error:
        message = f"PostgreSQL NOT TESTED: no server at {PG_ADMIN_URL} ({error})".strip()
        if os.environ.get("CI"):
            pytest.fail(message + " -- CI must run every test on PostgreSQL")
        warnings.warn(message, stacklevel=1)
        pytest.skip(message)
    template = databases.create()
    migrate(open_database(databases.url(template)))
    close_pool()
    yield databases
    databases.drop_all()


def close_pool() -> None:
    """Closes every pooled connection, so that the database can be dropped."""
    if database.obj is not None:
        database.close()
        database.obj.close_all()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/promo.db"
        close_pool()
        return
    databases: PostgresDatabases = request.getfixturevalue("postgres")
    name = databases.create(template=databases.template)
    yield databases.url(name)
    close_pool()
    databases.drop(name)


@dataclass
class Project:
    """A project with one key of each role."""

    id: int
    admin_key: str
    redeem_key: str
    read_key: str


@dataclass
class Running:
    target: str
    db_url: str
    server: object

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.target)

    def new_project(self, name: str | None = None) -> Project:
        """Creates a project the way `promo-server create-project` does, with a key per role."""
        database.connect(reuse_if_open=True)
        try:
            project, admin = projects.create_project(name or f"p-{uuid.uuid4().hex[:8]}")
            redeem = projects.create_key(str(project.id), "redeem")
            read = projects.create_key(str(project.id), "read")
        finally:
            database.close()
        return Project(project.id, admin, redeem, read)


@pytest.fixture
def running(db_url: str) -> Iterator[Running]:
    """A real server on a free loopback port, on the backend under test."""
    server, port = create_server("127.0.0.1:0", db_url)
    server.start()
    yield Running(f"127.0.0.1:{port}", db_url, server)
    server.stop(None).wait()


@pytest.fixture
def project(running: Running) -> Project:
    return running.new_project()


def lock_for_writes(db_url: str, table: str) -> sqlite3.Connection | psycopg2.extensions.connection:
    """Another client holding a lock that makes writes of ``table`` wait (reads go on):
    the whole database on SQLite. Roll it back (or close it) to let them through."""
    if db_url.startswith("sqlite"):
        sqlite = sqlite3.connect(db_url.removeprefix("sqlite:///"))
        sqlite.execute("BEGIN IMMEDIATE")
        return sqlite
    postgres = psycopg2.connect(db_url)
    postgres.cursor().execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")
    return postgres


def bearer(key: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {key}"),)
