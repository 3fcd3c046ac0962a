"""Who is calling: the Bearer key, its project and the role that decides what it may call."""

from __future__ import annotations

import contextvars
from collections.abc import Sequence
from dataclasses import dataclass

from promo_server.domain import keys
from promo_server.domain.errors import PermissionDenied, Unauthenticated
from promo_server.store import projects
from promo_server.store.db import utcnow

# RPCs a `redeem` key may call, besides nothing else; `read` keys get every Get/List/Export.
_REDEEM_METHODS = frozenset({
    "ValidateCode", "ActivateCode", "RollbackRedemption", "AttachCode", "DetachCode",
    "GetCode", "ListCodes", "UpsertProfile", "GetProfile", "ListRedemptions",
})
_READ_PREFIXES = ("Get", "List", "Export")


@dataclass(frozen=True)
class Principal:
    project_id: int
    role: str


_CURRENT: contextvars.ContextVar[Principal] = contextvars.ContextVar("principal")


def current() -> Principal:
    """The caller of the RPC being served (set by the guard around every handler)."""
    return _CURRENT.get()


def set_current(principal: Principal) -> contextvars.Token[Principal]:
    return _CURRENT.set(principal)


def reset_current(token: contextvars.Token[Principal]) -> None:
    _CURRENT.reset(token)


def allowed(role: str, method: str) -> bool:
    if role == "admin":
        return True
    if role == "redeem":
        return method in _REDEEM_METHODS
    return role == "read" and method.startswith(_READ_PREFIXES)


def authenticate(metadata: Sequence[tuple[str, str | bytes]], method: str) -> Principal:
    """The principal behind the call's ``authorization: Bearer`` key, allowed ``method``."""
    token = _bearer(metadata)
    parsed = keys.parse_token(token) if token else None
    record = projects.find_key(parsed[0]) if parsed else None
    if parsed is None or record is None or not keys.secret_matches(
        record.salt, parsed[1], record.secret_hash
    ):
        raise Unauthenticated(
            "missing or unknown API key: send metadata 'authorization: Bearer <key>'"
        )
    if record.revoked or (record.expire_time is not None and record.expire_time <= utcnow()):
        raise Unauthenticated("this API key has been revoked or has expired")
    if not allowed(record.role, method):
        raise PermissionDenied(f"a {record.role!r} key may not call {method}")
    return Principal(record.project_id, record.role)


def _bearer(metadata: Sequence[tuple[str, str | bytes]]) -> str:
    for key, value in metadata:
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return ""
