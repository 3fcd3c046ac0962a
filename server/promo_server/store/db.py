"""The one database handle, opened from a URL: SQLite by default, PostgreSQL to scale."""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import os
import select
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from peewee import (
    Database,
    DatabaseProxy,
    Model,
    OperationalError,
    PostgresqlDatabase,
    ProgrammingError,
    SqliteDatabase,
)
from playhouse.db_url import connect, register_database
from playhouse.pool import PooledPostgresqlDatabase
from psycopg2.extensions import TRANSACTION_STATUS_IDLE

from promo_server.config import SettingsError, redact_url

_LOGGER = logging.getLogger(__name__)

database = DatabaseProxy()
M = TypeVar("M", bound=Model)

# How long a writer waits for SQLite's write lock before giving up.
SQLITE_BUSY_TIMEOUT_SECONDS = 10.0
# A pooled connection older than this is replaced; a call waits this long for one.
POOL_STALE_SECONDS = 300
POOL_WAIT_SECONDS = 10
# PostgreSQL cancels a statement (or a lock wait) running longer than this.
STATEMENT_TIMEOUT_SECONDS = 30.0
SQLITE_PRAGMAS = (
    ("journal_mode", "wal"),
    ("foreign_keys", 1),
    ("synchronous", "normal"),
    ("busy_timeout", int(SQLITE_BUSY_TIMEOUT_SECONDS * 1000)),
    # KiB per connection, and the pool holds --threads + 1 of them: a bound on memory.
    ("cache_size", -8 * 1024),
    # Writers never checkpoint: SQLite's automatic checkpoint made every
    # thousandth commit copy the log into the database while its writer still
    # held the write lock. A thread of its own does it (Checkpointer).
    ("wal_autocheckpoint", 0),
    ("journal_size_limit", 64 * 1024 * 1024),
)
# How often the checkpointer copies the write-ahead log into the database.
CHECKPOINT_SECONDS = 0.2


class _PooledPostgresql(PooledPostgresqlDatabase):  # type: ignore[misc]
    """Hands out an idle pooled connection without a round trip to the server.

    Peewee's pool sends ``SELECT 1`` on every checkout to find the connections
    the server has closed: one more round trip on every call, as costly to the
    server as the call's own statements. An idle connection hears nothing from
    its server unless that is going away (a terminated backend, a server
    shutting down: each says why and closes), so the pool asks only when the
    socket has something to read. A connection lost without a word (a cut
    network) fails its first statement instead: the guard answers UNAVAILABLE
    and drops the idle connections.
    """

    def _is_closed(self, conn: Any) -> bool:
        if conn.closed:
            return True
        if conn.get_transaction_status() == TRANSACTION_STATUS_IDLE and not _readable(conn):
            return False
        return bool(super()._is_closed(conn))


def _readable(conn: Any) -> bool:
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    return bool(poller.poll(0))


register_database(_PooledPostgresql, "postgresql+pool", "postgres+pool")


# The URL schemes open_database takes (each also with "+pool", which it adds anyway).
DATABASE_SCHEMES = frozenset({"sqlite", "postgresql", "postgres"})


def open_database(
    url: str, pool_size: int = 8, statement_timeout: float = STATEMENT_TIMEOUT_SECONDS,
    prepare: bool = True, existing: bool = False,
) -> Database:
    """Opens the database a URL names, through a connection pool, and binds the models.

    Each call takes a connection from the pool and gives it back when it ends,
    so a server holds at most ``pool_size`` connections whatever its threads do.
    On PostgreSQL no statement runs longer than ``statement_timeout`` seconds
    (0: no limit) but a bulk publish of codes, and each connection prepares the
    hot paths' ``Statement``s, unless ``prepare`` is False. With ``existing``, a SQLite
    file that is not there is an error, not a new database.
    """
    _PREPARING.on = prepare
    scheme, sep, rest = url.partition("://")
    base = scheme.removesuffix("+pool")
    if not sep or base not in DATABASE_SCHEMES:
        raise SettingsError(
            f"{redact_url(url)!r} is not a database URL this server knows: "
            "sqlite:///PATH or postgresql://USER@HOST:PORT/NAME"
        )
    options: dict[str, Any] = {
        "max_connections": pool_size,
        "stale_timeout": POOL_STALE_SECONDS,
        "timeout": POOL_WAIT_SECONDS,
    }
    if base == "sqlite":
        # sqlite:///promo.db is relative, sqlite:////var/promo.db absolute.
        path = rest.partition("?")[0].removeprefix("/")
        folder = os.path.dirname(path)
        if folder and not os.path.isdir(folder):
            raise SettingsError(f"{url!r}: there is no folder {folder!r} for the database")
        if existing and not os.path.isfile(path):
            raise SettingsError(f"{url!r}: there is no database file {path!r}")
        # Pooled connections move between worker threads, one thread at a time.
        options |= {"pragmas": SQLITE_PRAGMAS, "check_same_thread": False}
    elif statement_timeout:
        options["options"] = f"-c statement_timeout={int(statement_timeout * 1000)}"
    db = connect(f"{base}+pool://{rest}", **options)
    database.initialize(db)
    if isinstance(db, SqliteDatabase):
        Checkpointer.start_for(db.database)
    _LOGGER.info("database opened backend=%s", backend_name(db))
    return db


def discard_idle_connections() -> None:
    """Closes the pool's idle PostgreSQL connections: after one was found lost (the
    server restarted, say), the others are likely lost too, and each would fail a call."""
    if database.obj is not None and not is_sqlite():
        database.obj.close_idle()


def close_database() -> None:
    """Closes every pooled connection and stops the checkpointer (before a fork, say)."""
    if database.obj is None:
        return
    database.close()
    database.obj.close_all()
    Checkpointer.start_for("")


class Checkpointer(threading.Thread):
    """Copies SQLite's write-ahead log into the database every CHECKPOINT_SECONDS.

    PASSIVE checkpoints run beside readers and writers, taking no write lock;
    once the log is all copied, the next writer starts it over. One per process.
    """

    _running: Checkpointer | None = None
    _lock = threading.Lock()

    def __init__(self, path: str) -> None:
        super().__init__(name="sqlite-checkpoint", daemon=True)
        self.path = path
        self.stopping = threading.Event()

    @classmethod
    def start_for(cls, path: str) -> None:
        """Checkpoints ``path`` from now on, instead of the database opened before."""
        with cls._lock:
            if cls._running is not None:
                cls._running.stopping.set()
                cls._running.join()
                cls._running = None
            if path and path != ":memory:" and not path.startswith("file::memory:"):
                cls._running = cls(path)
                cls._running.start()

    def run(self) -> None:
        connection = sqlite3.connect(self.path, check_same_thread=False)
        try:
            while not self.stopping.wait(CHECKPOINT_SECONDS):
                try:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as error:  # say, the file is gone: try again later
                    _LOGGER.warning("sqlite checkpoint failed path=%s error=%s", self.path, error)
        finally:
            connection.close()


def backend_name(db: Database | None = None) -> str:
    db = db or database.obj
    if isinstance(db, SqliteDatabase):
        return "sqlite"
    if isinstance(db, PostgresqlDatabase):
        return "postgresql"
    return type(db).__name__


def is_sqlite() -> bool:
    return isinstance(database.obj, SqliteDatabase)


def write_transaction() -> contextlib.AbstractContextManager[None]:
    """A transaction that writes: on SQLite it takes the write lock at BEGIN.

    A deferred SQLite transaction that reads and then writes can fail with
    "database is locked" half-way through; BEGIN IMMEDIATE waits for the lock
    (up to the busy timeout) before reading anything. In this thread's open
    write group, it is a savepoint of the group's transaction.
    """
    group = _GROUPS.get(threading.get_ident()) if _GROUPS else None
    return group.savepoint() if group is not None else _transaction()


@contextlib.contextmanager
def _transaction() -> Iterator[None]:
    if is_sqlite():
        with _WRITERS.held(database.obj.database), database.atomic("IMMEDIATE"):
            yield
    else:
        with database.atomic():
            yield


class _SqliteWriters:
    """Lines SQLite's writers up: this process's threads, then the processes.

    Writers waiting in SQLite's busy handler sleep ever longer (up to 100 ms a
    time), so a busy writer waited far longer than the lock was held. Here the
    threads of a process queue on a lock (re-entrant: transactions nest), and
    the one at the front takes an flock on a file beside the database, trying
    again every FILE_LOCK_POLL_SECONDS, for up to the busy timeout. SQLite's
    own lock still keeps the data safe from any writer that skips this.

    The processes take turns: one that finds the file locked first takes a
    second lock, the turnstile, and holds it until it has the first. The
    process that has just written must pass the turnstile to write again, so
    the one waiting goes first. (Without it, the process that had just
    written took the lock again at once, every time, and the other starved.)
    """

    FILE_LOCK_POLL_SECONDS = 0.0005

    def __init__(self) -> None:
        self._file: int | None = None
        self._turnstile: int | None = None
        self._start()

    def _start(self) -> None:
        self._threads = threading.RLock()
        self._depth = 0
        self._path = ""
        self._in_line = False  # this process holds the turnstile
        self.busy_here = False
        self._counting = threading.Lock()
        self._threads_waiting = 0

    def forget_parent(self) -> None:
        """In a forked child: the lock files the parent opened are shared with it (an
        flock belongs to the open file, so the two would never exclude each other),
        and its holders are not the child's. Start over."""
        for inherited in (self._file, self._turnstile):
            if inherited is not None:
                os.close(inherited)
        self._file = self._turnstile = None
        self._start()

    @contextlib.contextmanager
    def held(self, path: str) -> Iterator[None]:
        with self._counting:
            self._threads_waiting += 1
        try:
            self._threads.acquire()
        finally:
            with self._counting:
                self._threads_waiting -= 1
        try:
            if self._depth == 0:
                self._lock_file(path)
            with self._counted():
                yield
        finally:
            self._threads.release()

    def others_waiting(self) -> bool:
        """Whether another thread of this process, or another process, waits for the
        lock (which this thread holds)."""
        if self._threads_waiting:
            return True
        if self._turnstile is None:
            return False
        if not _locked_now(self._turnstile):
            return True  # another process is in line
        fcntl.flock(self._turnstile, fcntl.LOCK_UN)
        return False

    def try_acquire(self, path: str) -> bool:
        """Takes the write lock, as ``held`` does, if it can this instant; never waits.
        Each True needs a ``release`` from the same thread. A False may leave this
        process in line for the lock, which it then keeps the others from: try
        again until it succeeds, or ``leave_line``. After a False, ``busy_here``
        tells whether another thread of this process has it or waits for it."""
        self.busy_here = not self._threads.acquire(blocking=False)
        if self.busy_here:
            return False
        if self._depth == 0 and not self._try_lock_file(path):
            self._threads.release()
            return False
        self._depth += 1
        return True

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0 and self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
        self._threads.release()

    def leave_line(self) -> None:
        """Stops waiting for the lock, letting the other processes go first; never waits.
        (A thread of this process that holds the lock or waits for it keeps the place.)"""
        if not self._threads.acquire(blocking=False):
            return
        try:
            if self._in_line and self._turnstile is not None:
                fcntl.flock(self._turnstile, fcntl.LOCK_UN)
            self._in_line = False
        finally:
            self._threads.release()

    @contextlib.contextmanager
    def _counted(self) -> Iterator[None]:
        """One more holder (transactions nest); the last one out unlocks the file."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0 and self._file is not None:
                fcntl.flock(self._file, fcntl.LOCK_UN)

    def _lock_file(self, path: str) -> None:
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_SECONDS
        while not self._try_lock_file(path):
            if time.monotonic() > deadline:
                self.leave_line()
                raise OperationalError("database is locked")
            time.sleep(self.FILE_LOCK_POLL_SECONDS)

    def _try_lock_file(self, path: str) -> bool:
        self._open(path)
        if self._file is None or self._turnstile is None:
            return True
        if not self._in_line:
            if not _locked_now(self._turnstile):
                return False  # another process is in line: it goes first
            self._in_line = True
        if not _locked_now(self._file):
            return False  # in line, and next
        fcntl.flock(self._turnstile, fcntl.LOCK_UN)
        self._in_line = False
        return True

    def _open(self, path: str) -> None:
        if path != self._path:
            for held in (self._file, self._turnstile):
                if held is not None:
                    os.close(held)
            self._file = self._turnstile = None
            self._in_line = False
            self._path = path
            if path and path != ":memory:" and not path.startswith("file:"):
                self._file = os.open(f"{path}-writer", os.O_RDWR | os.O_CREAT, 0o644)
                self._turnstile = os.open(f"{path}-writer-next", os.O_RDWR | os.O_CREAT, 0o644)


def _locked_now(file: int) -> bool:
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


_WRITERS = _SqliteWriters()
# `serve --workers N` forks after migrating, which opened the lock files.
os.register_at_fork(after_in_child=_WRITERS.forget_parent)


class WriteGroup:
    """Group commit on SQLite: the writes of several calls, one transaction, one commit.

    A SQLite commit costs more than the statements of a redemption (about 11
    pages to the log). The event loop's calls join a group while it is open:
    their write transactions become savepoints of the group's one transaction,
    which holds the write lock from when it opens until ``commit``, and the
    loop answers them only after that commit (api/loopserver.py). Should the
    commit fail, none of them happened, and each is told to retry.

    Used from one thread at a time, the event loop's. ``when_committed`` defers
    what reports a write (metrics, logs) until the group commits.
    """

    def __init__(self) -> None:
        self._transaction: Any = None
        self._opened_connection = False
        self._thread: int | None = None
        self._on_commit: list[Callable[[bool], None]] = []
        self.savepoints = 0  # open now

    @property
    def open(self) -> bool:
        return self._transaction is not None

    def join(self) -> bool:
        """Whether the group is open, opening it if the write lock can be taken this
        instant; never waits. A False may leave this process in line for the lock:
        join again until it opens, or ``leave_line``. Always False on PostgreSQL,
        whose row locks can't be known ahead."""
        if self._transaction is not None:
            return True
        if not is_sqlite() or not _WRITERS.try_acquire(database.obj.database):
            return False
        try:
            self._opened_connection = database.connect(reuse_if_open=True)
            transaction = database.transaction("IMMEDIATE")
            transaction.__enter__()
        except BaseException:
            self._close()
            raise
        self._transaction = transaction
        self._thread = threading.get_ident()
        _GROUPS[self._thread] = self
        return True

    def leave_line(self) -> None:
        _WRITERS.leave_line()

    def others_waiting(self) -> bool:
        """Whether another thread or process waits for the open group's write lock."""
        return self._transaction is not None and _WRITERS.others_waiting()

    @property
    def busy_here(self) -> bool:
        """After a False ``join``: whether a thread of this process has the write lock
        or waits for it (rather than another process)."""
        return _WRITERS.busy_here

    def member(self) -> _Savepoint:
        """One call's part of the open group: undone alone if the call fails."""
        return self.savepoint()

    def savepoint(self) -> _Savepoint:
        """A savepoint of the group's transaction: what a write transaction is in it."""
        return _Savepoint(self)

    def commit(self) -> None:
        """Commits the group's writes (raises if that fails, all of them undone), gives
        back the write lock, and runs what waited for the outcome."""
        transaction, self._transaction = self._transaction, None
        on_commit, self._on_commit = self._on_commit, []
        committed = False
        try:
            transaction.__exit__(None, None, None)  # commits, or rolls back and raises
            committed = True
        finally:
            self._close()
            for callback in on_commit:
                callback(committed)

    def _close(self) -> None:
        _GROUPS.pop(self._thread or 0, None)
        self._thread = None
        self.savepoints = 0
        if self._opened_connection:
            database.close()
            self._opened_connection = False
        _WRITERS.release()


class _Savepoint:
    """A savepoint of a write group, named by its depth, run straight on the connection:
    Peewee's own builds a random name and a few objects every time, and the loop runs
    two for each activation."""

    __slots__ = ("_group", "_name")

    def __init__(self, group: WriteGroup) -> None:
        self._group = group
        self._name = ""

    def __enter__(self) -> None:
        self._name = f"group_{self._group.savepoints + 1}"
        _run(f"SAVEPOINT {self._name}")
        self._group.savepoints += 1

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self._group.savepoints -= 1
        if kind is not None:
            _run(f"ROLLBACK TO {self._name}")
        _run(f"RELEASE {self._name}")


def _run(sql: str) -> None:
    try:
        database.connection().execute(sql)
    except sqlite3.Error as error:  # as Peewee would raise it: a call ends UNAVAILABLE
        raise OperationalError(*error.args) from error


# The open group of each thread (the event loop's, if any).
_GROUPS: dict[int, WriteGroup] = {}


def when_committed(callback: Callable[[bool], None]) -> None:
    """Calls ``callback(True)`` once this thread's writes are committed: now, or when
    its open write group commits (``callback(False)`` if that fails)."""
    group = _GROUPS.get(threading.get_ident())
    if group is None:
        callback(True)
    else:
        group._on_commit.append(callback)


class Compiled:
    """A Peewee query whose SQL is built once per backend, then run with new parameters.

    Building SQL with the query builder costs more than running a small indexed
    query; hot paths (the key check on every call) build it once. ``build``
    must use each parameter once, in order.
    """

    def __init__(self, build: Callable[..., Any]) -> None:
        self._build = build
        self._sql: dict[str, str] = {}
        # Per backend: each result column's field name and converter, read once.
        self._readers: dict[str, list[tuple[str, Callable[[Any], Any] | None]]] = {}

    def first(self, model: type[M], *params: Any) -> M | None:
        """The first row as a model instance (fields converted as Peewee does), or None.

        The instance is built from the row directly: Peewee's own row reader
        resolves the columns again for every query, which cost more than the
        query itself.
        """
        cursor = database.execute_sql(self._sql_for(params), params)
        row = cursor.fetchone()
        if row is None:
            return None
        reader = self._reader(model, cursor.description)
        return model(
            __no_default__=1,
            **{
                name: value if convert is None or value is None else convert(value)
                for (name, convert), value in zip(reader, row, strict=True)
            },
        )

    def _reader(
        self, model: type[Model], description: Sequence[Sequence[Any]]
    ) -> list[tuple[str, Callable[[Any], Any] | None]]:
        backend = backend_name()
        reader = self._readers.get(backend)
        if reader is None:
            columns = model._meta.columns  # type: ignore[attr-defined]
            reader = []
            for column in description:
                field = columns.get(column[0])
                reader.append((field.name, field.python_value) if field else (column[0], None))
            self._readers[backend] = reader
        return reader

    def _sql_for(self, params: tuple[Any, ...]) -> str:
        backend = backend_name()
        sql = self._sql.get(backend)
        if sql is None:
            sql, built = self._build(*params).sql()
            if len(built) != len(params):
                raise ValueError(f"{self._build} must use each parameter once: {sql}")
            self._sql[backend] = sql
        return sql


def utcnow() -> datetime:
    """Now in UTC, naive: the database stores UTC without an offset."""
    return datetime.now(UTC).replace(tzinfo=None)


class Statement:
    """Hand-written SQL (``?`` placeholders) that a hot path runs on every call.

    On PostgreSQL each connection prepares it the first time it runs it
    (PREPARE), then runs it by name (EXECUTE): the server plans it once per
    connection, not on every call. Planning cost more than running these: 0.15
    ms against 0.01 ms for the key check, measured here. Elsewhere, or with
    preparing off, ``execute`` runs its SQL as it is.
    """

    _numbers = itertools.count(1)

    def __init__(self, sql: str) -> None:
        self.sql = sql
        self.name = f"promo_{next(self._numbers)}"
        first, *rest = sql.split("?")
        numbered = first + "".join(f"${n}{part}" for n, part in enumerate(rest, start=1))
        self.prepare = f"PREPARE {self.name} AS {numbered}"
        self.call = f"EXECUTE {self.name}" + (f" ({', '.join(['%s'] * len(rest))})" if rest else "")


class _Preparing:
    """Whether Statements are prepared, and which each PostgreSQL connection has."""

    def __init__(self) -> None:
        self.on = True
        self.done: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()

    def turn_off(self, error: Exception) -> None:
        """For good, in this process: its connections do not keep what they prepared."""
        if self.on:
            _LOGGER.warning(
                "prepared statements turned off: a connection lost what it had prepared, or "
                "had it before it was prepared (a pooler in transaction mode between this "
                "server and PostgreSQL?); set PROMO_PG_PREPARE=0 to start without them "
                "error=%s", error,
            )
        self.on = False
        self.done = weakref.WeakKeyDictionary()


_PREPARING = _Preparing()


def execute(sql: str | Statement, params: Sequence[Any] = ()) -> Any:
    """Runs hand-written SQL with ``?`` placeholders on either backend; returns the cursor.

    For statements over many rows at once, where the query builder would cost
    more than the work, and for the hot paths' ``Statement``s. No literal in
    such SQL may contain a ``?``.
    """
    if isinstance(sql, Statement):
        if _PREPARING.on and not is_sqlite():
            return _run_prepared(sql, params)
        sql = sql.sql
    if not is_sqlite():
        sql = sql.replace("?", "%s")
    return database.execute_sql(sql, params)


def _run_prepared(statement: Statement, params: Sequence[Any]) -> Any:
    connection = database.connection()
    prepared = _PREPARING.done.setdefault(connection, set())
    try:
        if statement.name not in prepared:
            database.execute_sql(statement.prepare)
            prepared.add(statement.name)
        return database.execute_sql(statement.call, params)
    except (OperationalError, ProgrammingError) as error:
        code = getattr(error.__context__, "pgcode", None)
        if code not in (_NO_SUCH_STATEMENT, _STATEMENT_EXISTS):
            raise
        _PREPARING.turn_off(error)
        if connection.get_transaction_status() != TRANSACTION_STATUS_IDLE:
            # The failure ended the caller's transaction: the call may only be retried.
            raise OperationalError(f"a prepared statement was lost: {error}") from error
        return execute(statement.sql, params)


# SQLSTATEs: EXECUTE of a name the connection has not prepared; PREPARE of one it has.
_NO_SUCH_STATEMENT = "26000"
_STATEMENT_EXISTS = "42P05"
