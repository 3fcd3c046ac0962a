"""Checks of the contract's scalar formats, shared by every resource."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

import pycountry

# ASCII only: \\d would also match other scripts' digits.
EXTERNAL_ID = re.compile(r"[-_.A-Za-z0-9]{1,255}")
ATTRIBUTE = EXTERNAL_ID
CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
LOCALE = re.compile(r"[a-z]{2}-[A-Z]{2}")
AMOUNT = re.compile(r"[0-9]+(\.[0-9]{1,4})?")
PERCENT = re.compile(r"[0-9]+(\.[0-9]{1,2})?")
CURRENCY = re.compile(r"[A-Z]{3}")
DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")
# The C0 controls and DEL.
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)

MAX_TEXT = 255


def external_id_problem(value: str) -> str | None:
    if not value:
        return "is required"
    if not EXTERNAL_ID.fullmatch(value):
        return "must be 1..255 characters of [-_.A-Za-z0-9]"
    return None


def amount_problem(value: str) -> str | None:
    if not AMOUNT.fullmatch(value):
        return r"must be a decimal amount matching ^\d+(\.\d{1,4})?$ (for example 10.50)"
    return None


def percent_problem(value: str) -> str | None:
    if not PERCENT.fullmatch(value) or not 0 < Decimal(value) <= 100:
        return "must be a decimal with at most 2 places, greater than 0 and at most 100"
    return None


# ISO 4217's current codes, as the installed pycountry knows them.
CURRENCIES = frozenset(currency.alpha_3 for currency in pycountry.currencies)


def currency_problem(value: str) -> str | None:
    if not CURRENCY.fullmatch(value):
        return "must be an ISO 4217 currency code of three capital letters (for example USD)"
    if value not in CURRENCIES:
        return f"{value!r} is not an ISO 4217 currency code"
    return None


def text_problem(value: str, *, limit: int = MAX_TEXT, required: bool = True) -> str | None:
    if required and not value:
        return "is required"
    if len(value) > limit:
        return f"must be at most {limit} characters"
    if CONTROL.search(value):
        return "must not contain control characters"
    return None


def decimal_problem(value: str) -> str | None:
    if not DECIMAL.fullmatch(value):
        return "must be a decimal number such as -12.5"
    return None


def parse_rfc3339(value: str) -> datetime | None:
    """An RFC 3339 date-time with its offset, or None: a bare date is not one, nor a
    moment whose UTC time falls outside the years 1..9999."""
    match = RFC3339.fullmatch(value)
    if match is None:
        return None
    fraction, offset = match.group(1), match.group(2)
    # Python reads at most microseconds; RFC 3339 allows any precision.
    micros = (fraction[1:] if fraction else "").ljust(6, "0")[:6]
    offset = "+00:00" if offset in ("Z", "z") else offset
    try:
        moment = datetime.fromisoformat(f"{value[:10]}T{value[11:19]}.{micros}{offset}")
        moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    return moment
