"""Codes as callers see them, the state filters, and the rules of changing a code."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from promo_server.domain.csvimport import BadLine
from promo_server.domain.errors import InvalidArgument, Violations
from promo_server.domain.values import CODE

FILTERS = ("AVAILABLE", "ATTACHED", "REDEEMED", "RETIRED", "EXPIRED", "INACTIVE")
MUTABLE = ("expire_time", "active")
OUTPUT_ONLY = (
    "promotion",
    "retired",
    "profile_id",
    "attachment_count",
    "redemption_count",
    "issued_for",
    "create_time",
)
IMPORT_MODES = ("REPLACE", "APPEND")
# The columns of ExportCodes, in order.
EXPORT_COLUMNS = (
    "code",
    "promotion",
    "active",
    "expire_time",
    "retired",
    "profile_id",
    "attachment_count",
    "redemption_count",
    "create_time",
)


@dataclass(frozen=True)
class Code:
    code: str
    promotion: str  # external id; "" for the project's global pool
    active: bool
    expire_time: datetime | None
    retired: bool
    profile_id: str  # the holder of a single-use code
    attachment_count: int
    redemption_count: int
    issued_for: str
    create_time: datetime


@dataclass(frozen=True)
class CodeChange:
    """What UpdateCode may change; only the fields its mask names are applied."""

    active: bool
    expire_time: datetime | None
    fields: tuple[str, ...]


@dataclass(frozen=True)
class ProfileRef:
    """One of the four ways to name a profile: profile_id, email, phone or a custom field."""

    by: str  # "profile_id", "email", "phone" or "custom"
    value: str
    field: str = ""


@dataclass(frozen=True)
class ImportSpec:
    """The first message of ImportCodes: where the codes go and how to read them."""

    promotion: str  # "" for the project's global pool
    mode: str  # REPLACE or APPEND
    has_header: bool = False
    skip_invalid: bool = False
    default_expire_time: datetime | None = None


@dataclass(frozen=True)
class ImportResult:
    imported: int  # codes added to the pool (or brought back from retirement)
    duplicates: int  # lines repeating an earlier line's code, or a code the pool has
    rejected: int  # bad lines, and lines whose code is in another pool
    retired: int  # codes a REPLACE took out of the pool
    errors: list[BadLine]  # the first rejected lines, in file order


def key_of(code: str) -> str:
    """The case-folded form codes are unique by (codes are ASCII, so lower() folds them)."""
    return code.lower()


def code_problem(code: str) -> str | None:
    """Why ``code`` is not a code string, or None."""
    if not code:
        return "is required"
    if not CODE.fullmatch(code):
        return "must be 1..64 characters of A-Z, a-z, 0-9, '_', '.' and '-'"
    return None


def require_code(code: str, field: str) -> str:
    if problem := code_problem(code):
        raise InvalidArgument.field(field, problem)
    return code


def change_of(active: bool, expire_time: datetime | None, mask: Sequence[str]) -> CodeChange:
    """The change an UpdateCode mask asks for; an empty mask is refused, not "everything"."""
    if not mask:
        raise InvalidArgument.field(
            "update_mask", f"name at least one field to change: {', '.join(MUTABLE)}"
        )
    out = Violations()
    fields: list[str] = []
    for i, path in enumerate(mask):
        if path in MUTABLE:
            fields.append(path)
        elif path == "code":
            out.add(f"update_mask.paths[{i}]", "code names the code and cannot be changed")
        elif path not in OUTPUT_ONLY:
            out.add(
                f"update_mask.paths[{i}]",
                f"{path!r} is not a mutable field of Code (one of: {', '.join(MUTABLE)})",
            )
    out.raise_if_any()
    if not fields:
        raise InvalidArgument.field(
            "update_mask", f"names only output-only fields; change one of: {', '.join(MUTABLE)}"
        )
    return CodeChange(active, expire_time, tuple(dict.fromkeys(fields)))
