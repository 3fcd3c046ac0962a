"""Low-stock thresholds: a promotion's pool's, and the project's global pool's.

Both are nullable (no threshold), so existing rows need no value.
"""

from peewee import BigIntegerField, Database
from playhouse.migrate import SchemaMigrator


def up(migrator: SchemaMigrator, db: Database) -> None:
    migrator.migrate(
        migrator.add_column("promotion", "low_stock_threshold", BigIntegerField(null=True)),
        migrator.add_column("project", "low_stock_threshold", BigIntegerField(null=True)),
    )
