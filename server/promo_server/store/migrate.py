"""Versioned schema migrations, applied on start so an existing database upgrades in place."""

from __future__ import annotations

import logging
from pathlib import Path

from peewee import Database
from playhouse.migrations import Runner

from promo_server.store.db import is_sqlite, write_transaction

_LOGGER = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
# Serialises servers that start together on one PostgreSQL database.
_PG_MIGRATION_LOCK = 0x70726F6D6F


def migrate(db: Database) -> list[str]:
    """Applies every pending migration in one transaction; returns their names."""
    with write_transaction():
        if not is_sqlite():
            db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_PG_MIGRATION_LOCK,))
        applied: list[str] = Runner(db, str(MIGRATIONS)).up()
    for name in applied:
        _LOGGER.info("schema migration applied name=%s", name)
    return applied
