"""What loading codes costs the database alone: no gRPC, no server, in the bench's process.

SQLite: stdlib ``sqlite3``, a fresh file, WAL and ``synchronous=NORMAL`` as the
server sets them, one ``executemany`` in one transaction; once with SQLite's
default page cache (2 MB) and once with 64 MiB, no less than the server's import
connection sets (``IMPORT_CACHE_KIB`` in promo_server/store/imports.py): the
random order of the codes makes the unique index the cost, and a big cache hides it.
PostgreSQL: psycopg2 ``COPY FROM STDIN`` into a fresh table of a throw-away
database, in one transaction. Both tables hold the unique index before the load,
as the server's table does.
"""

from __future__ import annotations

import io
import sqlite3
import time
from collections.abc import Sequence

import psycopg2

from bench.databases import CONNECT_TIMEOUT_SECONDS

# PRAGMA cache_size=-65536 (KiB): 64 MiB.
IMPORT_CACHE_KIB = 65536
_SQLITE_PREFIX = "sqlite:///"


def sqlite_executemany(db_url: str, codes: Sequence[str], cache_kib: int | None) -> float:
    """Seconds to insert ``codes`` in one transaction; ``cache_kib`` None: SQLite's default."""
    if not db_url.startswith(_SQLITE_PREFIX):
        raise ValueError(f"not a SQLite file URL: {db_url}")
    conn = sqlite3.connect(db_url.removeprefix(_SQLITE_PREFIX), isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        if cache_kib is not None:
            conn.execute(f"PRAGMA cache_size=-{int(cache_kib)}")
        conn.execute("CREATE TABLE code (id INTEGER PRIMARY KEY, code TEXT NOT NULL)")
        conn.execute("CREATE UNIQUE INDEX code_code ON code (code)")
        rows = [(code,) for code in codes]
        began = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO code (code) VALUES (?)", rows)
        conn.execute("COMMIT")
        return time.perf_counter() - began
    finally:
        conn.close()


def postgres_copy(db_url: str, csv: bytes) -> float:
    """Seconds to COPY ``csv`` (one code a line) into a fresh table and commit."""
    conn = psycopg2.connect(db_url, connect_timeout=CONNECT_TIMEOUT_SECONDS)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE code (id bigserial PRIMARY KEY, code text NOT NULL UNIQUE)")
        conn.commit()
        data = io.BytesIO(csv)
        began = time.perf_counter()
        with conn.cursor() as cur:
            cur.copy_expert("COPY code (code) FROM STDIN", data)
        conn.commit()
        return time.perf_counter() - began
    finally:
        conn.close()
