"""API keys: made once, shown once, kept only as a salted hash of their secret.

A key reads ``promo_<key id>_<secret>``. The key id is public and finds the
stored row; the secret is checked against an HMAC-SHA256 under a per-key salt.
The secret carries 256 random bits, so a fast hash is enough: there is nothing
to brute-force that a slow one would protect.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from promo_server.domain.errors import InvalidArgument
from promo_server.domain.values import parse_rfc3339

ROLES = ("admin", "redeem", "read")
_PREFIX = "promo"
_KEY = re.compile(rf"{_PREFIX}_([0-9a-f]{{16}})_([A-Za-z0-9_-]{{43}})")
_KEY_ID = re.compile(r"[0-9a-f]{16}")
# At most 999999 days (2,700 years), so that no expiry overflows the calendar.
_DURATION = re.compile(r"([1-9][0-9]{0,5})([dhm])")
_UNITS = {"d": timedelta(days=1), "h": timedelta(hours=1), "m": timedelta(minutes=1)}


@dataclass(frozen=True)
class NewKey:
    """A freshly made key: ``token`` goes to the caller, the rest to the database."""

    key_id: str
    salt: str
    secret_hash: str
    token: str


def make_key() -> NewKey:
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_hex(16)
    return NewKey(key_id, salt, hash_secret(salt, secret), f"{_PREFIX}_{key_id}_{secret}")


def hash_secret(salt: str, secret: str) -> str:
    return hmac.new(salt.encode(), secret.encode(), hashlib.sha256).hexdigest()


def parse_token(token: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed key, else None."""
    match = _KEY.fullmatch(token)
    return (match.group(1), match.group(2)) if match else None


def secret_matches(salt: str, secret: str, secret_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(salt, secret), secret_hash)


def key_id_problem(key_id: str) -> str | None:
    if not _KEY_ID.fullmatch(key_id):
        return "must be a key id: the 16 hex digits after 'promo_' that list-keys shows"
    return None


def expiry(*, expires_in: str | None, expire_time: str | None, now: datetime) -> datetime | None:
    """When a new key stops working (naive UTC, as stored), or None for never.

    ``expires_in`` is a duration from ``now``: a whole number of days, hours or
    minutes (``30d``, ``12h``, ``90m``); ``expire_time`` an RFC 3339 time.
    """
    if expires_in is not None:
        match = _DURATION.fullmatch(expires_in)
        if match is None:
            raise InvalidArgument.field(
                "--expires-in",
                f"{expires_in!r} is not a duration: give a whole number of days, hours or"
                " minutes, like 30d, 12h or 90m",
            )
        return now + int(match.group(1)) * _UNITS[match.group(2)]
    if expire_time is not None:
        moment = parse_rfc3339(expire_time)
        if moment is None:
            raise InvalidArgument.field(
                "--expire-time",
                f"{expire_time!r} is not an RFC 3339 time with its offset,"
                " like 2027-01-31T00:00:00Z",
            )
        stored = moment.astimezone(UTC).replace(tzinfo=None)
        if stored <= now:
            raise InvalidArgument.field("--expire-time", f"{expire_time} is in the past")
        return stored
    return None


class UseThrottle:
    """Which uses of keys are worth recording: a key's first, then one every ``interval``.

    Checked on every call, so the usual answer (not due) takes no lock; the
    lock only keeps two threads from both recording the same due use.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._recorded: dict[str, float] = {}
        self._lock = threading.Lock()

    def due(self, key_id: str, now: float) -> bool:
        """Whether the use of ``key_id`` at ``now`` (seconds, monotonic) is to be recorded."""
        if not self._elapsed(key_id, now):
            return False
        with self._lock:
            if not self._elapsed(key_id, now):
                return False
            self._recorded[key_id] = now
            return True

    def _elapsed(self, key_id: str, now: float) -> bool:
        last = self._recorded.get(key_id)
        return last is None or now - last >= self.interval
