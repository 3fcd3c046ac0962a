"""Index a code's holder and issuing promotion only where it has one.

Most codes have neither; indexing their NULLs made every bulk import and
generation maintain two more indexes for nothing.
"""

from peewee import Database
from playhouse.migrate import SchemaMigrator


def up(migrator: SchemaMigrator, db: Database) -> None:
    for column in ("holder_id", "issued_for_id"):
        db.execute_sql(f"DROP INDEX code_{column}")
        db.execute_sql(f"CREATE INDEX code_{column} ON code ({column}) WHERE {column} IS NOT NULL")
