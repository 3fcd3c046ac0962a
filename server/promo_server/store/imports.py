"""Bulk writes of codes: a scratch table filled while the stream arrives, published at once.

Lines land in a TEMP table of the connection the import holds: nothing
outside the call sees them, SQLite takes no write lock for them, and a call
that fails, is cancelled or whose process dies leaves nothing behind. The
pool changes only in ``publish``, one transaction of set-based statements.
Rows travel in batches, as one JSON array on SQLite and by COPY on
PostgreSQL, so the per-row work happens inside the database rather than in
Python.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from peewee import IntegrityError

from promo_server.domain.csvimport import BadLine, Rows
from promo_server.domain.errors import Aborted
from promo_server.store.codes import Pool
from promo_server.store.db import database, execute, is_sqlite

IMPORT_TABLE = "import_line"
GENERATED_TABLE = "generated_code"
# Pages SQLite keeps in memory for the import's connection (KiB, negative by
# SQLite's convention): the new codes' index pages stay cached while they are
# written. The pooled connection gets the default back afterwards.
IMPORT_CACHE_KIB = 16384
SQLITE_DEFAULT_CACHE_KIB = 2000
# Serialises publishing into one project's pools across server processes on
# PostgreSQL (SQLite writers are serialised by BEGIN IMMEDIATE).
_PG_POOL_LOCK = 0x706F6F6C
REPORTED_CONFLICTS = 100
NULL_TEXT = "\\N"  # NULL in COPY's text format
# PostgreSQL's memory for sorting one import's codes (its default is 4MB).
PG_SORT_MEMORY = "64MB"
# New codes in one call from which the planner's statistics are refreshed.
ANALYZE_AFTER = 10_000


@dataclass(frozen=True)
class Published:
    imported: int  # new codes, and retired codes of the pool brought back
    conflicts: int  # lines whose code lives in another pool of the project
    retired: int
    first_conflicts: list[BadLine]


@contextlib.contextmanager
def import_stage() -> Iterator[ImportStage]:
    stage = ImportStage()
    try:
        yield stage
    finally:
        _drop(IMPORT_TABLE)
        _restore_cache()


@contextlib.contextmanager
def generated_stage() -> Iterator[GeneratedStage]:
    stage = GeneratedStage()
    try:
        yield stage
    finally:
        _drop(GENERATED_TABLE)
        _restore_cache()


class ImportStage:
    """The lines of one import, in file order, duplicates included."""

    def __init__(self) -> None:
        _drop(IMPORT_TABLE)
        _grow_cache()
        if is_sqlite():
            execute(
                f"CREATE TEMP TABLE {IMPORT_TABLE} "
                "(line INTEGER NOT NULL, code TEXT NOT NULL, code_key TEXT NOT NULL, "
                "expire_time TEXT)"
            )
        else:
            execute(
                f"CREATE TEMP TABLE {IMPORT_TABLE} "
                "(line bigint NOT NULL, code text NOT NULL, code_key text NOT NULL, "
                "expire_time timestamp)"
            )
        self.lines = 0

    def add(self, rows: Rows) -> None:
        if not rows.codes:
            return
        consecutive = rows.lines[-1] - rows.lines[0] == len(rows.lines) - 1
        if consecutive and not rows.dated:
            # The common case, as one flat array: three times faster to unpack.
            self._add_codes(rows.lines[0], rows.codes)
        else:
            expiries = [None if m is None else m.isoformat(" ") for m in rows.expire_times]
            self._add_rows(list(zip(rows.lines, rows.codes, expiries, strict=True)))
        self.lines += len(rows.codes)

    def _add_codes(self, first_line: int, codes: list[str]) -> None:
        if not is_sqlite():
            text = "".join(
                f"{line}\t{code}\t{code.lower()}\n" for line, code in enumerate(codes, first_line)
            )
            _copy(IMPORT_TABLE, "line, code, code_key", text)
            return
        execute(
            f"INSERT INTO {IMPORT_TABLE} (line, code, code_key) "
            "SELECT ? + key, value, lower(value) FROM json_each(?)",
            (first_line, json.dumps(codes)),
        )

    def _add_rows(self, rows: list[tuple[int, str, str | None]]) -> None:
        if not is_sqlite():
            text = "".join(
                f"{line}\t{code}\t{code.lower()}\t{expiry or NULL_TEXT}\n"
                for line, code, expiry in rows
            )
            _copy(IMPORT_TABLE, "line, code, code_key, expire_time", text)
            return
        execute(
            f"INSERT INTO {IMPORT_TABLE} (line, code, code_key, expire_time) "
            "SELECT value->>0, value->>1, lower(value->>1), value->>2 FROM json_each(?)",
            (json.dumps(rows),),
        )

    def publish(
        self,
        target: Pool,
        *,
        replace: bool,
        default_expire_time: datetime | None,
        now: datetime,
        keep_conflicts: bool,
    ) -> Published:
        """Adds the lines' codes to the pool; call inside a write transaction.

        The first line of a code decides its expiry. A line whose code is in
        another pool is a conflict: without ``keep_conflicts`` the pool is left
        alone and the conflicts are returned, with it the other lines go in.
        REPLACE retires the pool's codes that are not in the file and were
        never handed out.
        """
        _lock_pools(target.project_id)
        _sort_in_memory()
        conflicts, first = self._conflicts(target)
        if conflicts and not keep_conflicts:
            return Published(0, conflicts, 0, first)
        revived = retired = 0
        if _pool_has_codes(target):
            execute(f"CREATE INDEX {IMPORT_TABLE}_key ON {IMPORT_TABLE} (code_key, line)")
            revived = _count(
                execute(
                    "UPDATE code SET retire_time = NULL, expire_time = "
                    f"(SELECT coalesce(s.expire_time, ?) FROM {IMPORT_TABLE} s "
                    " WHERE s.code_key = code.code_key ORDER BY s.line LIMIT 1) "
                    f"WHERE {_in_pool(target)} AND retire_time IS NOT NULL "
                    "AND hand_out_time IS NULL "
                    f"AND code_key IN (SELECT code_key FROM {IMPORT_TABLE})",
                    (default_expire_time, *_pool_params(target)),
                )
            )
            if replace:
                retired = _count(
                    execute(
                        f"UPDATE code SET retire_time = ? WHERE {_in_pool(target)} "
                        "AND retire_time IS NULL AND hand_out_time IS NULL AND NOT EXISTS "
                        f"(SELECT 1 FROM {IMPORT_TABLE} s WHERE s.code_key = code.code_key)",
                        (now, *_pool_params(target)),
                    )
                )
        # In code order: the unique index then grows at its end instead of at
        # random places, which is most of the work for a large file.
        insert = (
            "INSERT {ignore}INTO code (project_id, promotion_id, code, code_key, active, "
            "expire_time, attachment_count, redemption_count, create_time) "
            "SELECT {distinct}?, ?, code, code_key, TRUE, coalesce(expire_time, ?), 0, 0, ? "
            f"FROM {IMPORT_TABLE} s {{new}}ORDER BY code_key, line"
        )
        if is_sqlite():
            insert = insert.format(ignore="OR IGNORE ", distinct="", new="")
            params: tuple[Any, ...] = ()
        else:
            # Only new codes, once each: PostgreSQL's ON CONFLICT would cost a
            # third more. The pools lock keeps other imports out meanwhile.
            insert = insert.format(
                ignore="",
                distinct="DISTINCT ON (code_key) ",
                new="WHERE NOT EXISTS (SELECT 1 FROM code c "
                "WHERE c.project_id = ? AND c.code_key = s.code_key) ",
            )
            params = (target.project_id,)
        try:
            inserted = _count(
                execute(
                    insert,
                    (target.project_id, target.promotion_id, default_expire_time, now, *params),
                )
            )
        except IntegrityError:
            raise Aborted(
                "a code of the file was added by another call during the import; "
                "nothing was imported: retry"
            ) from None
        return Published(inserted + revived, conflicts, retired, first)

    def _conflicts(self, target: Pool) -> tuple[int, list[BadLine]]:
        """How many lines name a code of another pool, and the first of them."""
        if not _project_has_codes(target.project_id):
            return 0, []
        joined = (
            f"FROM {IMPORT_TABLE} s JOIN code c "
            "ON c.project_id = ? AND c.code_key = s.code_key "
            "LEFT JOIN promotion p ON p.id = c.promotion_id "
            f"WHERE {_outside_pool(target, 'c')}"
        )
        params = (target.project_id, *_outside_params(target))
        count = execute(f"SELECT count(*) {joined}", params).fetchone()[0]
        if not count:
            return 0, []
        rows = execute(
            f"SELECT s.line, s.code, p.external_id, p.delete_time {joined} "
            f"ORDER BY s.line LIMIT {REPORTED_CONFLICTS}",
            params,
        ).fetchall()
        return count, [BadLine(line, code, _owner(owner, gone)) for line, code, owner, gone in rows]


class GeneratedStage:
    """Codes drawn at random, in the order they were drawn. Some may repeat each other
    or a code the project has: ``publish`` skips those."""

    def __init__(self) -> None:
        _drop(GENERATED_TABLE)
        _grow_cache()
        seq = "INTEGER PRIMARY KEY" if is_sqlite() else "bigserial PRIMARY KEY"
        execute(f"CREATE TEMP TABLE {GENERATED_TABLE} (seq {seq}, code text NOT NULL)")
        self.size = 0

    def add(self, codes: Sequence[str]) -> None:
        if is_sqlite():
            execute(
                f"INSERT INTO {GENERATED_TABLE} (code) SELECT value FROM json_each(?) ORDER BY key",
                (json.dumps(list(codes)),),
            )
        else:
            _copy(GENERATED_TABLE, "code", "\n".join(codes) + "\n")
        self.size += len(codes)

    def publish(
        self, target: Pool, count: int, *, expire_time: datetime | None, now: datetime
    ) -> int:
        """Adds the first ``count`` drawn codes the project does not have to the pool, and
        returns how many were added: fewer when draws repeated each other or ran out.
        Call inside a write transaction, after ``lock``."""
        # Draws that repeat each other: SQLite ignores the repeats, PostgreSQL
        # leaves them out before inserting (cheaper than its ON CONFLICT).
        ignore, distinct = ("OR IGNORE ", "") if is_sqlite() else ("", "DISTINCT ON (code_key) ")
        _sort_in_memory()
        return _count(
            execute(
                f"INSERT {ignore}INTO code (project_id, promotion_id, code, code_key, active, "
                "expire_time, attachment_count, redemption_count, create_time) "
                f"SELECT {distinct}?, ?, code, code_key, TRUE, ?, 0, 0, ? FROM "
                f"(SELECT code, lower(code) AS code_key FROM {GENERATED_TABLE} g "
                " WHERE NOT EXISTS (SELECT 1 FROM code c "
                "  WHERE c.project_id = ? AND c.code_key = lower(g.code))"
                " ORDER BY seq LIMIT ?) AS drawn "
                "ORDER BY code_key",
                (target.project_id, target.promotion_id, expire_time, now,
                 target.project_id, count),
            )
        )

    def clear(self) -> None:
        execute(f"DELETE FROM {GENERATED_TABLE}")
        self.size = 0


def refresh_statistics(added: int) -> None:
    """Lets PostgreSQL's planner see a large batch of new codes at once.

    Until autovacuum samples the table, the planner believes the pool holds
    what it held before and may pick a plan that reads the whole table for
    every page of an export.
    """
    if added >= ANALYZE_AFTER and not is_sqlite():
        execute("ANALYZE code")


def lock(target: Pool) -> None:
    """Serialises writers of the project's pools until the transaction ends."""
    _lock_pools(target.project_id)


def _lock_pools(project_id: int) -> None:
    if not is_sqlite():
        execute("SELECT pg_advisory_xact_lock(?, ?)", (_PG_POOL_LOCK, project_id))


def _copy(table: str, columns: str, text: str) -> None:
    """PostgreSQL's COPY of tab-separated lines: codes and times hold no tab or backslash."""
    cursor = database.cursor()
    try:
        cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN", io.StringIO(text))
    finally:
        cursor.close()


def _sort_in_memory() -> None:
    """Lets PostgreSQL sort a batch of codes in memory, not on disk, until the transaction ends.

    A bulk publish also runs without the statement timeout: millions of codes
    take longer than any call should.
    """
    if not is_sqlite():
        execute(f"SET LOCAL work_mem = '{PG_SORT_MEMORY}'")
        execute("SET LOCAL statement_timeout = 0")


def _in_pool(target: Pool) -> str:
    if target.promotion_id is None:
        return "project_id = ? AND promotion_id IS NULL"
    return "project_id = ? AND promotion_id = ?"


def _outside_pool(target: Pool, alias: str) -> str:
    if target.promotion_id is None:
        return f"{alias}.promotion_id IS NOT NULL"
    return f"({alias}.promotion_id IS NULL OR {alias}.promotion_id <> ?)"


def _outside_params(target: Pool) -> tuple[int, ...]:
    return () if target.promotion_id is None else (target.promotion_id,)


def _pool_params(target: Pool) -> tuple[int, ...]:
    if target.promotion_id is None:
        return (target.project_id,)
    return (target.project_id, target.promotion_id)


def _project_has_codes(project_id: int) -> bool:
    found = execute("SELECT 1 FROM code WHERE project_id = ? LIMIT 1", (project_id,))
    return found.fetchone() is not None


def _pool_has_codes(target: Pool) -> bool:
    found = execute(f"SELECT 1 FROM code WHERE {_in_pool(target)} LIMIT 1", _pool_params(target))
    return found.fetchone() is not None


def _owner(external_id: str | None, deleted: Any) -> str:
    if external_id is None:
        return "the code is already in the project's global pool"
    if deleted is not None:
        return f"the code belongs to the deleted promotion {external_id!r}"
    return f"the code is already in the pool of promotion {external_id!r}"


def _count(cursor: Any) -> int:
    return max(cursor.rowcount, 0)


def _drop(table: str) -> None:
    execute(f"DROP TABLE IF EXISTS {'temp.' if is_sqlite() else 'pg_temp.'}{table}")


def _grow_cache() -> None:
    if is_sqlite():
        execute(f"PRAGMA cache_size = -{IMPORT_CACHE_KIB}")


def _restore_cache() -> None:
    if is_sqlite():
        execute(f"PRAGMA cache_size = -{SQLITE_DEFAULT_CACHE_KIB}")
