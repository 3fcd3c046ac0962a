"""The initial schema: projects, keys, promotions, profiles, codes, attachments, redemptions.

A frozen copy of the tables as they were at this version, independent of
``promo_server.store.models``, so that later migrations stack on top of it.
"""

from peewee import (
    AutoField,
    BigAutoField,
    BigIntegerField,
    BooleanField,
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
        name = CharField(max_length=255, unique=True)
        create_time = DateTimeField()

    class ApiKey(Base):
        id = AutoField()
        key_id = CharField(max_length=32, unique=True)
        project = ForeignKeyField(Project, on_delete="CASCADE")
        role = CharField(max_length=16)
        salt = CharField(max_length=64)
        secret_hash = CharField(max_length=64)
        create_time = DateTimeField()
        last_used_time = DateTimeField(null=True)
        expire_time = DateTimeField(null=True)
        revoke_time = DateTimeField(null=True)

    class Promotion(Base):
        id = AutoField()
        project = ForeignKeyField(Project, on_delete="CASCADE", index=False)
        external_id = CharField(max_length=255)
        name = TextField()
        state = CharField(max_length=16)
        start_time = DateTimeField(null=True)
        end_time = DateTimeField(null=True)
        redeem_total_limit = BigIntegerField(null=True)
        redeem_user_limit = BigIntegerField(null=True)
        redeem_code_limit = BigIntegerField(null=True)
        rules = TextField()
        redemption_count = BigIntegerField(default=0)
        create_time = DateTimeField()
        update_time = DateTimeField()
        delete_time = DateTimeField(null=True)

    class Profile(Base):
        id = BigAutoField()
        project = ForeignKeyField(Project, on_delete="CASCADE", index=False)
        profile_id = CharField(max_length=255)
        email = CharField(max_length=255, null=True)
        phone = CharField(max_length=64, null=True)
        attributes = TextField(default="{}")
        create_time = DateTimeField()
        update_time = DateTimeField()

    class ProfileField(Base):
        id = BigAutoField()
        project = ForeignKeyField(Project, on_delete="CASCADE", index=False)
        profile = ForeignKeyField(Profile, on_delete="CASCADE", index=False)
        field = CharField(max_length=255)
        value = CharField(max_length=1024)

    class Code(Base):
        id = BigAutoField()
        project = ForeignKeyField(Project, on_delete="CASCADE", index=False)
        promotion = ForeignKeyField(Promotion, null=True, on_delete="CASCADE", index=False)
        code = CharField(max_length=64)
        code_key = CharField(max_length=64)
        active = BooleanField(default=True)
        expire_time = DateTimeField(null=True)
        retire_time = DateTimeField(null=True)
        hand_out_time = DateTimeField(null=True)
        holder = ForeignKeyField(Profile, null=True, on_delete="SET NULL")
        issued_for = ForeignKeyField(
            Promotion, null=True, backref="issued_codes", on_delete="SET NULL"
        )
        attachment_count = BigIntegerField(default=0)
        redemption_count = BigIntegerField(default=0)
        create_time = DateTimeField()

    class Attachment(Base):
        id = BigAutoField()
        project = ForeignKeyField(Project, on_delete="CASCADE", index=False)
        code = ForeignKeyField(Code, on_delete="CASCADE", index=False)
        profile = ForeignKeyField(Profile, on_delete="CASCADE", index=False)
        promotion = ForeignKeyField(Promotion, null=True, on_delete="SET NULL")
        attach_time = DateTimeField()

    class Redemption(Base):
        id = BigAutoField()
        public_id = CharField(max_length=36, unique=True)
        project = ForeignKeyField(Project, on_delete="CASCADE", index=False)
        code = ForeignKeyField(Code, on_delete="CASCADE", index=False)
        promotion = ForeignKeyField(Promotion, null=True, on_delete="SET NULL", index=False)
        profile = ForeignKeyField(Profile, on_delete="CASCADE", index=False)
        request_id = CharField(max_length=255, null=True)
        state = CharField(max_length=16)
        reward = TextField()
        create_time = DateTimeField()
        rollback_time = DateTimeField(null=True)
        rollback_reason = TextField(default="")

    class PromotionUsage(Base):
        id = BigAutoField()
        promotion = ForeignKeyField(Promotion, on_delete="CASCADE", index=False)
        profile = ForeignKeyField(Profile, on_delete="CASCADE")
        redemption_count = BigIntegerField(default=0)

    available = Code.hand_out_time.is_null() & Code.retire_time.is_null()
    indexes = [
        # external_id is unique among the project's live promotions only.
        Promotion.index(
            Promotion.project, Promotion.external_id, unique=True,
            where=Promotion.delete_time.is_null(),
        ),
        Promotion.index(Promotion.project, Promotion.id),
        Profile.index(Profile.project, Profile.profile_id, unique=True),
        Profile.index(Profile.project, Profile.email),
        Profile.index(Profile.project, Profile.phone),
        ProfileField.index(ProfileField.profile, ProfileField.field, unique=True),
        ProfileField.index(ProfileField.project, ProfileField.field, ProfileField.value),
        # Codes are unique per project, case-insensitively.
        Code.index(Code.project, Code.code_key, unique=True),
        Code.index(Code.project, Code.promotion, Code.id),
        # The oldest available code of a pool, found without scanning handed-out ones.
        Code.index(Code.project, Code.promotion, Code.id, where=available,
                   name="code_available_by_pool"),
        Attachment.index(Attachment.code, Attachment.profile, unique=True),
        Attachment.index(Attachment.profile, Attachment.id),
        Redemption.index(Redemption.project, Redemption.request_id, unique=True),
        Redemption.index(Redemption.project, Redemption.promotion, Redemption.id),
        Redemption.index(Redemption.code, Redemption.id),
        Redemption.index(Redemption.profile, Redemption.id),
        PromotionUsage.index(PromotionUsage.promotion, PromotionUsage.profile, unique=True),
    ]
    models = [Project, ApiKey, Promotion, Profile, ProfileField, Code, Attachment,
              Redemption, PromotionUsage]
    db.create_tables(models)
    for index in indexes:
        db.execute(index)
