"""Profile use cases: upsert and get."""

from __future__ import annotations

import logging

from promo_server.domain import profiles as domain
from promo_server.domain.codes import ProfileRef
from promo_server.domain.errors import InvalidArgument, NotFound
from promo_server.store import profiles as store
from promo_server.store.db import write_transaction

_LOGGER = logging.getLogger(__name__)


def upsert(project_id: int, profile: domain.Profile) -> domain.Profile:
    domain.require_valid(profile)
    with write_transaction():
        saved = store.upsert(project_id, profile)
    _LOGGER.info("profile upserted project=%s", project_id)
    return saved


def get(project_id: int, ref: ProfileRef | None) -> domain.Profile:
    if ref is None:
        raise InvalidArgument.field(
            "profile", "name the profile by profile_id, email, phone or custom"
        )
    row = store.find(project_id, ref)
    if row is None:
        raise NotFound(f"no profile has profile_id {ref.value!r}")
    return store.to_domain(row)
