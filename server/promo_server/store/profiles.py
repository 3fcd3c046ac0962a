"""Profiles in the database: finding one by any of the four matching modes, and upserts."""

from __future__ import annotations

import json

from peewee import IntegrityError

from promo_server.domain import profiles as domain
from promo_server.domain.codes import ProfileRef
from promo_server.domain.errors import FailedPrecondition, NotFound
from promo_server.domain.lifecycle import PROFILE_AMBIGUOUS
from promo_server.store.db import Compiled, database, utcnow
from promo_server.store.models import Profile, ProfileField

_BY_PROFILE_ID = Compiled(
    lambda p, v: Profile.select().where((Profile.project == p) & (Profile.profile_id == v))
)


def find(project_id: int, ref: ProfileRef) -> Profile | None:
    """The one profile the reference matches; None for an unknown profile_id.

    email, phone and custom fields must match exactly one profile: none is
    NOT_FOUND, several is FAILED_PRECONDITION.
    """
    if ref.by == "profile_id":
        return _BY_PROFILE_ID.first(Profile, project_id, ref.value)
    if ref.by == "custom":
        query = (
            Profile.select()
            .join(ProfileField)
            .where(
                (ProfileField.project == project_id)
                & (ProfileField.field == ref.field)
                & (ProfileField.value == ref.value)
            )
        )
        described = f"custom field {ref.field!r} = {ref.value!r}"
    else:
        column = Profile.email if ref.by == "email" else Profile.phone
        query = Profile.select().where((Profile.project == project_id) & (column == ref.value))
        described = f"{ref.by} {ref.value!r}"
    found = list(query.limit(2))
    if not found:
        raise NotFound(f"no profile has {described}")
    if len(found) > 1:
        raise FailedPrecondition(
            f"several profiles have {described}: name the profile by profile_id instead",
            reason=PROFILE_AMBIGUOUS,
        )
    return found[0]


def find_or_create(project_id: int, ref: ProfileRef) -> Profile:
    """The profile the reference matches; an unknown profile_id becomes a new profile."""
    found = find(project_id, ref)
    if found is not None:
        return found
    now = utcnow()
    try:
        with database.atomic():  # a savepoint inside the caller's transaction
            return Profile.create(  # type: ignore[no-any-return]
                project=project_id, profile_id=ref.value, create_time=now, update_time=now
            )
    except IntegrityError:  # created meanwhile by another call
        created = find(project_id, ref)
        assert created is not None
        return created


def upsert(project_id: int, profile: domain.Profile) -> domain.Profile:
    """Creates the profile or replaces what it holds; call inside a write transaction."""
    row = find_or_create(project_id, ProfileRef("profile_id", profile.profile_id))
    Profile.update(
        {
            Profile.email: profile.email or None,
            Profile.phone: profile.phone or None,
            Profile.attributes: json.dumps(profile.attributes, sort_keys=True),
            Profile.update_time: utcnow(),
        }
    ).where(Profile.id == row.id).execute()
    ProfileField.delete().where(ProfileField.profile == row.id).execute()
    if profile.custom_fields:
        ProfileField.insert_many(
            [
                {"project": project_id, "profile": row.id, "field": key, "value": value}
                for key, value in sorted(profile.custom_fields.items())
            ]
        ).execute()
    return to_domain(Profile.get_by_id(row.id))


def to_domain(row: Profile) -> domain.Profile:
    fields = (
        ProfileField.select().where(ProfileField.profile == row.id).order_by(ProfileField.field)
    )
    return domain.Profile(
        profile_id=row.profile_id,
        email=row.email or "",
        phone=row.phone or "",
        custom_fields={f.field: f.value for f in fields},
        attributes=json.loads(row.attributes),
        create_time=row.create_time,
        update_time=row.update_time,
    )
