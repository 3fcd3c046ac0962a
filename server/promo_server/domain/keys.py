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
from dataclasses import dataclass

ROLES = ("admin", "redeem", "read")
_PREFIX = "promo"
_KEY = re.compile(rf"{_PREFIX}_([0-9a-f]{{16}})_([A-Za-z0-9_-]{{43}})")


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
