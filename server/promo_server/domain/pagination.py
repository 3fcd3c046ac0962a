"""Page sizes and opaque keyset page tokens (AIP-158)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass

from promo_server.domain.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument.field("page_size", "must not be negative")
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: after the row with this key."""

    after: int


def _fingerprint(query: object) -> str:
    return hashlib.sha256(repr(query).encode()).hexdigest()[:16]


def encode(after: int, query: object) -> str:
    """A token for the page after ``after``, bound to the query that made it."""
    raw = json.dumps({"a": after, "q": _fingerprint(query)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(token: str, query: object) -> Cursor | None:
    """The cursor of a token from ``encode`` with the same query; None for no token."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        after, fingerprint = data["a"], data["q"]
    except (binascii.Error, ValueError, KeyError, TypeError, RecursionError):
        raise InvalidArgument.field("page_token", "is not a token this service issued") from None
    if type(after) is not int or fingerprint != _fingerprint(query):
        raise InvalidArgument.field(
            "page_token", "belongs to a different query: repeat the other fields unchanged"
        )
    return Cursor(after)
