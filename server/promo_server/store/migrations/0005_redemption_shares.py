"""A promotion's redemption count in shares, so that PostgreSQL activations of one
promotion do not all update its row (see RedemptionShare in models.py)."""

from peewee import (
    AutoField,
    BigIntegerField,
    CompositeKey,
    Database,
    ForeignKeyField,
    IntegerField,
    Model,
)
from playhouse.migrate import SchemaMigrator


def up(migrator: SchemaMigrator, db: Database) -> None:
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Promotion(Base):
        id = AutoField()

    class RedemptionShare(Base):
        promotion = ForeignKeyField(Promotion, on_delete="CASCADE", index=False)
        share = IntegerField()
        redemption_count = BigIntegerField(default=0)

        class Meta:
            primary_key = CompositeKey("promotion", "share")

    db.create_tables([RedemptionShare])
