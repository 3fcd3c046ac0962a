"""Who is calling: the Bearer key, its project and the role that decides what it may call."""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Sequence
from concurrent import futures
from dataclasses import dataclass
from datetime import datetime

from promo_server.domain import keys
from promo_server.domain.errors import PermissionDenied, Unauthenticated
from promo_server.store import projects
from promo_server.store.db import database, utcnow

_LOGGER = logging.getLogger(__name__)
# A key's last use is written at most this often per process: a write on every
# call would cost the hot path (ValidateCode, ActivateCode) a transaction each.
RECORD_USE_SECONDS = 60.0

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
    key_id: str  # public: it names the key in the audit log and the guessing defence


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
    # The row is read on every call, so that a revoked key stops at once everywhere.
    record = projects.find_key(parsed[0]) if parsed else None
    if parsed is None or record is None or not _SECRETS.match(token, parsed[1], record):
        raise Unauthenticated(
            "missing or unknown API key: send metadata 'authorization: Bearer <key>'"
        )
    if record.revoked:
        raise Unauthenticated("this API key has been revoked", reason="API_KEY_REVOKED")
    if record.expire_time is not None and record.expire_time <= utcnow():
        raise Unauthenticated(
            f"this API key expired at {record.expire_time:%Y-%m-%dT%H:%M:%SZ}",
            reason="API_KEY_EXPIRED",
        )
    _USES.record(parsed[0])
    if not allowed(record.role, method):
        raise PermissionDenied(f"a {record.role!r} key may not call {method}")
    return Principal(record.project_id, record.role, parsed[0])


class _CheckedSecrets:
    """Remembers which stored hash each recently seen key matched, so that the same key
    costs no HMAC on the next call; a stored hash that changed is checked afresh."""

    LIMIT = 1024  # keys remembered; beyond, the memory starts over

    def __init__(self) -> None:
        self._matched: dict[str, str] = {}

    def match(self, token: str, secret: str, record: projects.KeyRecord) -> bool:
        if self._matched.get(token) == record.secret_hash:
            return True
        if not keys.secret_matches(record.salt, secret, record.secret_hash):
            return False
        if len(self._matched) >= self.LIMIT:
            self._matched = {}
        self._matched[token] = record.secret_hash
        return True


_SECRETS = _CheckedSecrets()


def _bearer(metadata: Sequence[tuple[str, str | bytes]]) -> str:
    for key, value in metadata:
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return ""


class _KeyUses:
    """Records when keys are used, without a database write on every call.

    A key's use is written at most once every RECORD_USE_SECONDS per process,
    as a task on the server's worker threads: the call never waits for it, a
    stop waits for it as for any call, and one that fails is only logged.
    """

    def __init__(self) -> None:
        self._throttle = keys.UseThrottle(RECORD_USE_SECONDS)
        self._workers: futures.Executor | None = None

    def write_on(self, workers: futures.Executor) -> None:
        self._workers = workers

    def record(self, key_id: str) -> None:
        if not self._throttle.due(key_id, time.monotonic()) or self._workers is None:
            return
        try:
            self._workers.submit(_write_use, key_id, utcnow())
        except RuntimeError as error:  # the workers are shut down: the server has stopped
            _LOGGER.warning("key use not recorded key_id=%s error=%s", key_id, error)


def _write_use(key_id: str, used: datetime) -> None:
    try:
        database.connect(reuse_if_open=True)
        try:
            projects.record_key_use(key_id, used)
        finally:
            database.close()
    except Exception as error:  # a lost use is not worth more than a log line
        _LOGGER.warning("key use not recorded key_id=%s error=%s", key_id, error)


_USES = _KeyUses()


def record_uses_on(workers: futures.Executor) -> None:
    """Writes keys' last uses as tasks of ``workers``, the serving threads."""
    _USES.write_on(workers)
