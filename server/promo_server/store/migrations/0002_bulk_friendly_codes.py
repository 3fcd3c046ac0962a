"""Make bulk writes of codes cheaper.

- A code's holder and issuing promotion are indexed only where it has one:
  most codes have neither, and indexing their NULLs made every import and
  generation maintain two indexes for nothing.
- On PostgreSQL, a code no longer has foreign-key constraints. Their per-row
  checks lock the one parent row a million times over and took 40% of a large
  import. Every code is written with the project, promotion and profile the
  call has just found; projects and profiles are never deleted and promotions
  only marked deleted (a future deletion must clear its codes itself).
  SQLite's checks cost little and stay.
"""

from peewee import Database, PostgresqlDatabase
from playhouse.migrate import SchemaMigrator


def up(migrator: SchemaMigrator, db: Database) -> None:
    for column in ("holder_id", "issued_for_id"):
        db.execute_sql(f"DROP INDEX code_{column}")
        db.execute_sql(f"CREATE INDEX code_{column} ON code ({column}) WHERE {column} IS NOT NULL")
    if isinstance(db, PostgresqlDatabase):
        for column in ("project_id", "promotion_id", "holder_id", "issued_for_id"):
            db.execute_sql(f"ALTER TABLE code DROP CONSTRAINT code_{column}_fkey")
