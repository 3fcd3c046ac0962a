"""Projects and their API keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from peewee import IntegrityError

from promo_server.domain import keys
from promo_server.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from promo_server.domain.promotions import low_stock_threshold_problem
from promo_server.domain.values import text_problem
from promo_server.store import audit
from promo_server.store.db import Statement, execute, utcnow, write_transaction
from promo_server.store.models import ApiKey, Project


@dataclass(frozen=True)
class KeyRecord:
    """What authentication needs of a stored key."""

    project_id: int
    role: str
    salt: str
    secret_hash: str
    expire_time: datetime | None
    revoked: bool


@dataclass(frozen=True)
class KeyInfo:
    """What an operator may see of a key: never its secret, salt or hash."""

    key_id: str
    role: str
    create_time: datetime
    last_used_time: datetime | None
    expire_time: datetime | None
    revoke_time: datetime | None

    @classmethod
    def of(cls, row: ApiKey) -> KeyInfo:
        return cls(row.key_id, row.role, row.create_time, row.last_used_time,
                   row.expire_time, row.revoke_time)


def create_project(name: str) -> tuple[Project, str]:
    """Creates a project and its first admin key; returns the key's token."""
    if problem := text_problem(name):
        raise InvalidArgument.field("name", problem)
    with write_transaction():
        try:
            project = Project.create(name=name)
        except IntegrityError:
            raise AlreadyExists(f"a project named {name!r} already exists") from None
        admin = _insert_key(project.id, "admin")
        audit.record(project.id, "create-project", f"project/{name}", admin_key=admin.key_id)
    return project, admin.token


def find_project(name_or_id: str) -> Project:
    """A project by its name, else by its numeric id: a project named "12" is the one
    "12" finds, whatever project has the id 12."""
    project = Project.get_or_none(Project.name == name_or_id)
    if project is None and name_or_id.isdigit():
        project = Project.get_or_none(Project.id == int(name_or_id))
    if project is None:
        raise NotFound(f"no project named {name_or_id!r}")
    return project


def set_low_stock_threshold(name_or_id: str, threshold: int | None) -> Project:
    """Sets the threshold of the project's global pool (None: no low-stock warning)."""
    if threshold is not None and (problem := low_stock_threshold_problem(threshold)):
        raise InvalidArgument.field("low_stock_threshold", problem)
    with write_transaction():
        project = find_project(name_or_id)
        Project.update(low_stock_threshold=threshold).where(Project.id == project.id).execute()
        audit.record(project.id, "set-low-stock-threshold", audit.pool(""), threshold=threshold)
    project.low_stock_threshold = threshold
    return project


def create_key(
    project_name_or_id: str, role: str, expire_time: datetime | None = None
) -> str:
    """Creates a key of ``role``, working until ``expire_time`` (naive UTC) or for ever."""
    if role not in keys.ROLES:
        raise InvalidArgument.field("role", f"must be one of {', '.join(keys.ROLES)}")
    with write_transaction():
        project_id = find_project(project_name_or_id).id
        new = _insert_key(project_id, role, expire_time)
        audit.record(project_id, "create-key", f"key/{new.key_id}", role=role,
                     expire_time=expire_time)
    return new.token


def _insert_key(
    project_id: int, role: str, expire_time: datetime | None = None
) -> keys.NewKey:
    new = keys.make_key()
    ApiKey.create(
        key_id=new.key_id,
        project=project_id,
        role=role,
        salt=new.salt,
        secret_hash=new.secret_hash,
        create_time=utcnow(),
        expire_time=expire_time,
    )
    return new


def list_keys(project_name_or_id: str) -> list[KeyInfo]:
    """A project's keys, oldest first, revoked and expired ones too."""
    project = find_project(project_name_or_id)
    rows = ApiKey.select().where(ApiKey.project == project.id).order_by(
        ApiKey.create_time, ApiKey.id
    )
    return [KeyInfo.of(row) for row in rows]


def revoke_key(key_id: str) -> KeyInfo:
    """Revokes a key from now on; every server refuses it at its next call."""
    if problem := keys.key_id_problem(key_id):
        raise InvalidArgument.field("key_id", problem)
    with write_transaction():
        revoked = ApiKey.update(revoke_time=utcnow()).where(
            (ApiKey.key_id == key_id) & ApiKey.revoke_time.is_null()
        ).execute()
        row = ApiKey.get_or_none(ApiKey.key_id == key_id)
        if row is not None and revoked:
            audit.record(row.__data__["project"], "revoke-key", f"key/{key_id}", role=row.role)
    if row is None:
        raise NotFound(f"no key with id {key_id!r}")
    if not revoked:
        raise FailedPrecondition(
            f"key {key_id} is already revoked (since {row.revoke_time:%Y-%m-%dT%H:%M:%SZ})"
        )
    return KeyInfo.of(row)


def record_key_use(key_id: str, used: datetime) -> None:
    """Sets the key's last use to ``used``, unless a later one is recorded already."""
    with write_transaction():
        ApiKey.update(last_used_time=used).where(
            (ApiKey.key_id == key_id)
            & (ApiKey.last_used_time.is_null() | (ApiKey.last_used_time < used))
        ).execute()


# Runs on every call: written by hand, as Peewee's builder and row reader cost
# more than the query.
_FIND_KEY = Statement(
    "SELECT project_id, role, salt, secret_hash, expire_time, revoke_time IS NOT NULL"
    " FROM api_key WHERE key_id = ?"
)


def find_key(key_id: str) -> KeyRecord | None:
    row = execute(_FIND_KEY, (key_id,)).fetchone()
    if row is None:
        return None
    project_id, role, salt, secret_hash, expire_time, revoked = row
    return KeyRecord(
        project_id, role, salt, secret_hash,
        None if expire_time is None else ApiKey.expire_time.python_value(expire_time),
        bool(revoked),
    )
