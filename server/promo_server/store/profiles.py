"""Profiles in the database: finding one by any of the four matching modes."""

from __future__ import annotations

from promo_server.domain.codes import ProfileRef
from promo_server.domain.errors import FailedPrecondition, NotFound
from promo_server.store.models import Profile, ProfileField


def find(project_id: int, ref: ProfileRef) -> Profile | None:
    """The one profile the reference matches; None for an unknown profile_id.

    email, phone and custom fields must match exactly one profile: none is
    NOT_FOUND, several is FAILED_PRECONDITION.
    """
    if ref.by == "profile_id":
        query = Profile.select().where(
            (Profile.project == project_id) & (Profile.profile_id == ref.value)
        )
        return query.first()
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
            f"several profiles have {described}: name the profile by profile_id instead"
        )
    return found[0]
