"""The audit log: one row per admin change, written in the change's transaction."""

from peewee import (
    AutoField,
    BigAutoField,
    CharField,
    Database,
    DateTimeField,
    ForeignKeyField,
    Model,
    TextField,
)
from playhouse.migrate import SchemaMigrator


def up(migrator: SchemaMigrator, db: Database) -> None:
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Project(Base):
        id = AutoField()

    class AuditEntry(Base):
        id = BigAutoField()
        project = ForeignKeyField(Project, on_delete="CASCADE", index=False)
        actor = CharField(max_length=32)
        action = CharField(max_length=64)
        resource = TextField()
        details = TextField(default="{}")
        create_time = DateTimeField()

        class Meta:
            table_name = "audit_log"

    db.create_tables([AuditEntry])
    # A project's entries, newest first, from a given time.
    db.execute(AuditEntry.index(AuditEntry.project, AuditEntry.create_time, AuditEntry.id))
