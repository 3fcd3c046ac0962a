"""The tables. Schema changes go through ``migrations/``, never through these classes.

Timestamps are naive UTC. Code strings are unique per project by ``code_key``,
their case-folded form; ``code`` keeps them as first written.
"""

from __future__ import annotations

from datetime import datetime

from peewee import (
    AutoField,
    BigAutoField,
    BigIntegerField,
    BooleanField,
    CharField,
    ColumnBase,
    CompositeKey,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)

from promo_server.store.db import database, utcnow


class BaseModel(Model):
    class Meta:
        database = database
        legacy_table_names = False


class Project(BaseModel):
    id = AutoField()
    name = CharField(max_length=255, unique=True)
    create_time = DateTimeField(default=utcnow)
    # The global pool's: under this many available codes, the server warns.
    low_stock_threshold = BigIntegerField(null=True)


class ApiKey(BaseModel):
    """An API key: only its public id and a salted hash of its secret are stored."""

    id = AutoField()
    key_id = CharField(max_length=32, unique=True)
    project = ForeignKeyField(Project, backref="keys", on_delete="CASCADE")
    role = CharField(max_length=16)
    salt = CharField(max_length=64)
    secret_hash = CharField(max_length=64)
    create_time = DateTimeField(default=utcnow)
    last_used_time = DateTimeField(null=True)
    expire_time = DateTimeField(null=True)
    revoke_time = DateTimeField(null=True)


class Promotion(BaseModel):
    """A promotion. ``rules`` holds the discount, bonus, conditions and exclusions as JSON.

    A deleted promotion keeps its row (``delete_time``) so that its redemptions
    still name it; its external_id is free for a new promotion. Its live
    redemptions are ``redemption_count`` plus its RedemptionShares' counts.
    """

    id = AutoField()
    project = ForeignKeyField(Project, on_delete="CASCADE")
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
    create_time = DateTimeField(default=utcnow)
    update_time = DateTimeField(default=utcnow)
    delete_time = DateTimeField(null=True)
    low_stock_threshold = BigIntegerField(null=True)


class Profile(BaseModel):
    id = BigAutoField()
    project = ForeignKeyField(Project, on_delete="CASCADE")
    profile_id = CharField(max_length=255)
    email = CharField(max_length=255, null=True)
    phone = CharField(max_length=64, null=True)
    attributes = TextField(default="{}")
    create_time = DateTimeField(default=utcnow)
    update_time = DateTimeField(default=utcnow)


class ProfileField(BaseModel):
    """A custom field of a profile, one row each so that matching by it is indexed."""

    id = BigAutoField()
    project = ForeignKeyField(Project, on_delete="CASCADE")
    profile = ForeignKeyField(Profile, backref="fields", on_delete="CASCADE")
    field = CharField(max_length=255)
    value = CharField(max_length=1024)


class Code(BaseModel):
    """A code in a pool: a promotion's (``promotion``) or the project's global one (NULL).

    ``hand_out_time`` is set when the code is first attached or redeemed: from
    then on it is no longer available, and a REPLACE import never retires it.
    """

    id = BigAutoField()
    project = ForeignKeyField(Project, on_delete="CASCADE")
    promotion = ForeignKeyField(Promotion, null=True, on_delete="CASCADE")
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
    create_time = DateTimeField(default=utcnow)
    # The foreign keys' raw ids, which Peewee adds as ``<field>_id``.
    project_id: int
    promotion_id: int | None
    holder_id: int | None
    issued_for_id: int | None


def available(now: datetime) -> ColumnBase:
    """The codes a pool can still hand out: never handed out, not retired, active, unexpired.

    The one definition for AttachCode's hand-out, the AVAILABLE filter and the
    pools' available counts. Its first two conditions are those of the partial
    index code_available_by_pool.
    """
    return (
        Code.hand_out_time.is_null()
        & Code.retire_time.is_null()
        & Code.active
        & (Code.expire_time.is_null() | (Code.expire_time > now))
    )


class Attachment(BaseModel):
    id = BigAutoField()
    project = ForeignKeyField(Project, on_delete="CASCADE")
    code = ForeignKeyField(Code, backref="attachments", on_delete="CASCADE")
    profile = ForeignKeyField(Profile, backref="attachments", on_delete="CASCADE")
    promotion = ForeignKeyField(Promotion, null=True, on_delete="SET NULL")
    attach_time = DateTimeField(default=utcnow)
    code_id: int
    profile_id: int
    promotion_id: int | None


class Redemption(BaseModel):
    """One redemption; ``request_id`` makes ActivateCode retries return the first one."""

    id = BigAutoField()
    public_id = CharField(max_length=36, unique=True)
    project = ForeignKeyField(Project, on_delete="CASCADE")
    code = ForeignKeyField(Code, backref="redemptions", on_delete="CASCADE")
    promotion = ForeignKeyField(Promotion, null=True, on_delete="SET NULL")
    profile = ForeignKeyField(Profile, backref="redemptions", on_delete="CASCADE")
    request_id = CharField(max_length=255, null=True)
    state = CharField(max_length=16)
    reward = TextField()
    create_time = DateTimeField(default=utcnow)
    rollback_time = DateTimeField(null=True)
    rollback_reason = TextField(default="")
    code_id: int
    promotion_id: int | None
    profile_id: int


class PromotionUsage(BaseModel):
    """How many live redemptions a profile has of a promotion (the per-user limit)."""

    id = BigAutoField()
    promotion = ForeignKeyField(Promotion, on_delete="CASCADE")
    profile = ForeignKeyField(Profile, on_delete="CASCADE")
    redemption_count = BigIntegerField(default=0)


class RedemptionShare(BaseModel):
    """Part of a promotion's redemption count, kept apart from its row (PostgreSQL only).

    On PostgreSQL, an activation of a promotion without a total limit counts in
    one of SHARES rows of the promotion, picked at random, instead of in the
    promotion's row, which every activation of the promotion would otherwise
    update in turn (see ``store.lifecycle``). A promotion with a total limit has
    none: setting the limit moves their counts into its row.
    """

    promotion = ForeignKeyField(Promotion, on_delete="CASCADE", index=False)
    share = IntegerField()
    redemption_count = BigIntegerField(default=0)

    class Meta:
        primary_key = CompositeKey("promotion", "share")


class AuditEntry(BaseModel):
    """An admin change: who made it (a key id, or "operator"), what, to what, and when.

    Written in the change's own transaction: neither exists without the other.
    """

    id = BigAutoField()
    project = ForeignKeyField(Project, on_delete="CASCADE")
    actor = CharField(max_length=32)
    action = CharField(max_length=64)
    resource = TextField()
    details = TextField(default="{}")  # JSON: counts, fields, mode...
    create_time = DateTimeField(default=utcnow)

    class Meta:
        table_name = "audit_log"


ALL_MODELS = (
    Project,
    ApiKey,
    Promotion,
    Profile,
    ProfileField,
    Code,
    Attachment,
    Redemption,
    PromotionUsage,
    AuditEntry,
)
