"""The audit log of admin changes: who, what, to which resource, when.

``record`` is called inside the change's own write transaction, so a change
and its entry commit or roll back together. Who made it is the calling API
key's id, which the guard sets around every call (``acting_as``); outside a
call, the change is an operator's (``promo-server create-key`` and the like,
which run against the database directly).
"""

from __future__ import annotations

import contextvars
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from promo_server.store.db import utcnow
from promo_server.store.models import AuditEntry

OPERATOR = "operator"
GLOBAL_POOL = "(global)"

_ACTOR: contextvars.ContextVar[str] = contextvars.ContextVar("audit_actor", default=OPERATOR)


@dataclass(frozen=True)
class Entry:
    create_time: datetime
    actor: str
    action: str
    resource: str
    details: dict[str, Any]


def acting_as(actor: str) -> contextvars.Token[str]:
    """Changes made from now on in this context are ``actor``'s (an API key's id)."""
    return _ACTOR.set(actor)


def stop_acting(token: contextvars.Token[str]) -> None:
    _ACTOR.reset(token)


def record(project_id: int, action: str, resource: str, **details: Any) -> None:
    """An entry for a change of the current write transaction, by the current actor.

    ``resource`` reads ``kind/name``: ``promotion/SUMMER``, ``pool/SUMMER``,
    ``code/ABC-123``, ``key/<key id>``, ``project/<name>``.
    """
    AuditEntry.create(
        project=project_id, actor=_ACTOR.get(), action=action, resource=resource,
        details=json.dumps(details, default=_as_json), create_time=utcnow(),
    )


def _as_json(value: Any) -> str:
    """Times as RFC 3339 in UTC (the stored ones are naive UTC); anything else as text."""
    if isinstance(value, datetime):
        moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return moment.isoformat().replace("+00:00", "Z")
    return str(value)


def pool(promotion: str) -> str:
    """The resource name of a promotion's pool, or of the global pool for ``""``."""
    return f"pool/{promotion or GLOBAL_POOL}"


def entries(project_id: int, *, since: datetime | None, limit: int) -> list[Entry]:
    """The project's entries, newest first, from ``since`` (naive UTC) if given."""
    query = AuditEntry.select().where(AuditEntry.project == project_id)
    if since is not None:
        query = query.where(AuditEntry.create_time >= since)
    rows = query.order_by(AuditEntry.create_time.desc(), AuditEntry.id.desc()).limit(limit)
    return [
        Entry(row.create_time, row.actor, row.action, row.resource, json.loads(row.details))
        for row in rows
    ]
