"""Profiles: the caller's customers, matched by id, email, phone or a custom field."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from promo_server.domain.errors import Violations
from promo_server.domain.values import ATTRIBUTE, text_problem

MAX_FIELDS = 100
MAX_VALUE = 1024
MAX_PHONE = 64  # the column's size: PostgreSQL refuses longer, SQLite would keep it


@dataclass
class Profile:
    profile_id: str
    email: str = ""
    phone: str = ""
    custom_fields: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, str] = field(default_factory=dict)
    create_time: datetime | None = None
    update_time: datetime | None = None


def require_valid(profile: Profile, prefix: str = "profile") -> None:
    out = Violations()
    if problem := text_problem(profile.profile_id):
        out.add(f"{prefix}.profile_id", problem)
    if problem := text_problem(profile.email, required=False):
        out.add(f"{prefix}.email", problem)
    if problem := text_problem(profile.phone, limit=MAX_PHONE, required=False):
        out.add(f"{prefix}.phone", problem)
    for name in ("custom_fields", "attributes"):
        check_entries(getattr(profile, name), f"{prefix}.{name}", out)
    out.raise_if_any()


def check_entries(entries: Mapping[str, str], path: str, out: Violations) -> None:
    """Custom fields or attributes (of a profile, or a request's): their bad entries."""
    if len(entries) > MAX_FIELDS:
        out.add(path, f"must have at most {MAX_FIELDS} entries")
    for key, value in entries.items():
        if not ATTRIBUTE.fullmatch(key):
            out.add(f"{path}[{key!r}]", "keys are 1..255 of [-_.A-Za-z0-9]")
        if problem := text_problem(value, limit=MAX_VALUE, required=False):
            out.add(f"{path}[{key!r}]", problem)
