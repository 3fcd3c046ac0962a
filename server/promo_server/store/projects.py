"""Projects and their API keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from peewee import IntegrityError

from promo_server.domain import keys
from promo_server.domain.errors import AlreadyExists, InvalidArgument, NotFound
from promo_server.domain.values import text_problem
from promo_server.store.db import Compiled, utcnow, write_transaction
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


def create_project(name: str) -> tuple[Project, str]:
    """Creates a project and its first admin key; returns the key's token."""
    if problem := text_problem(name):
        raise InvalidArgument.field("name", problem)
    with write_transaction():
        try:
            project = Project.create(name=name)
        except IntegrityError:
            raise AlreadyExists(f"a project named {name!r} already exists") from None
        token = _insert_key(project.id, "admin")
    return project, token


def find_project(name_or_id: str) -> Project:
    """A project by its name, or by its numeric id."""
    query = Project.name == name_or_id
    if name_or_id.isdigit():
        query |= Project.id == int(name_or_id)
    project = Project.get_or_none(query)
    if project is None:
        raise NotFound(f"no project named {name_or_id!r}")
    return project


def create_key(project_name_or_id: str, role: str) -> str:
    if role not in keys.ROLES:
        raise InvalidArgument.field("role", f"must be one of {', '.join(keys.ROLES)}")
    with write_transaction():
        return _insert_key(find_project(project_name_or_id).id, role)


def _insert_key(project_id: int, role: str) -> str:
    new = keys.make_key()
    ApiKey.create(
        key_id=new.key_id,
        project=project_id,
        role=role,
        salt=new.salt,
        secret_hash=new.secret_hash,
        create_time=utcnow(),
    )
    return new.token


_FIND_KEY = Compiled(lambda key_id: ApiKey.select().where(ApiKey.key_id == key_id))


def find_key(key_id: str) -> KeyRecord | None:
    row = _FIND_KEY.first(ApiKey, key_id)
    if row is None:
        return None
    return KeyRecord(
        row.__data__["project"], row.role, row.salt, row.secret_hash, row.expire_time,
        row.revoke_time is not None,
    )
