"""Settings, in one place: flags over ``PROMO_*`` environment variables over defaults."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TypeVar

DEFAULT_DATABASE_URL = "sqlite:///promo.db"
DEFAULT_LISTEN = "127.0.0.1:50051"
# gRPC's own default, and the least the largest message may be: the largest promotion
# allowed (about 2 MB) must fit in a reply, and one stored under a larger limit too.
MIN_MESSAGE_BYTES = 4 * 1024 * 1024
MAX_GRACE_SECONDS = 3600.0
# PostgreSQL's statement_timeout is an int of milliseconds.
MAX_STATEMENT_TIMEOUT_SECONDS = 2_147_483.0


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


_FLAGS = {"1": True, "true": True, "on": True, "0": False, "false": False, "off": False}
T = TypeVar("T")


def _parsed(name: str, default: str, parse: Callable[[str], T], expected: str) -> T:
    """The variable ``name`` (else ``default``) parsed; a SettingsError names it."""
    value = _env(name, default)
    try:
        return parse(value)
    except (ValueError, KeyError):
        raise SettingsError(f"{name} must be {expected}, not {value!r}") from None


def _flag(name: str, default: str) -> bool:
    return _parsed(
        name, default, lambda value: _FLAGS[value.strip().lower()], "1 or 0 (true/false, on/off)"
    )


def _int(name: str, default: str) -> int:
    return _parsed(name, default, int, "a whole number")


def _count(name: str, default: str) -> int:
    return _parsed(name, default, _at_least_one, "a whole number of at least 1")


def _at_least_one(text: str) -> int:
    number = int(text)
    if number < 1:
        raise ValueError(text)
    return number


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("json", "text")


def _one_of(name: str, default: str, choices: tuple[str, ...], *, upper: bool = False) -> str:
    def chosen(text: str) -> str:
        value = text.strip().upper() if upper else text.strip().lower()
        if value not in choices:
            raise ValueError(text)
        return value

    return _parsed(name, default, chosen, f"one of {', '.join(choices)}")


def parse_address(address: str) -> tuple[str, int]:
    """HOST:PORT (an IPv6 host in brackets) as (host, port); ValueError says what is wrong."""
    host, sep, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host:
        raise ValueError(f"{address!r} is not HOST:PORT (like 127.0.0.1:9464 or 0.0.0.0:9464)")
    if not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise ValueError(f"{address!r}: the port must be a number from 0 to 65535")
    return host, int(port)


def _float(name: str, default: str) -> float:
    return _parsed(name, default, float, "a number")


def _seconds(name: str, default: str, most: float) -> float:
    """A duration of 0 to ``most`` seconds: NaN, infinities and negatives are refused."""
    def parse(text: str) -> float:
        seconds = float(text)
        if not 0 <= seconds <= most:  # NaN fails every comparison
            raise ValueError(text)
        return seconds

    return _parsed(name, default, parse, f"0 to {most:,.0f} seconds")


def _int_at_least(name: str, default: str, least: int) -> int:
    def parse(text: str) -> int:
        number = int(text)
        if number < least:
            raise ValueError(text)
        return number

    return _parsed(name, default, parse, f"a whole number of at least {least:,}")


@dataclass(frozen=True)
class Settings:
    database_url: str = field(
        default_factory=lambda: _env("PROMO_DATABASE_URL", DEFAULT_DATABASE_URL)
    )
    listen: str = field(default_factory=lambda: _env("PROMO_LISTEN", DEFAULT_LISTEN))
    # Worker threads, each with its own database connection. More threads
    # than cores mostly add contention for Python's GIL: 32 halved ActivateCode
    # on a 2-core machine. Long streams (imports, exports) hold one each.
    threads: int = field(default_factory=lambda: _count("PROMO_THREADS", "8"))
    # SQLite: how long an activation's commit waits for more activations to share it
    # after the last one joined (at most 5 times that in all); 0: not at all. A commit
    # costs more than a redemption's statements: sharing it made ActivateCode up to
    # 17% faster under load here, and costs a lone activation this much latency.
    group_commit_ms: float = field(
        default_factory=lambda: _float("PROMO_GROUP_COMMIT_MS", "2")
    )
    # Server processes sharing the port (`serve --workers N`); 1 serves in this process.
    workers: int = field(default_factory=lambda: _count("PROMO_WORKERS", "1"))
    # Set in the processes of `serve --workers N`, which bind the port with SO_REUSEPORT.
    shares_port: bool = False
    # Largest request or response message; an import streams many small chunks.
    max_message_bytes: int = field(
        default_factory=lambda: _int_at_least(
            "PROMO_MAX_MESSAGE_BYTES", str(MIN_MESSAGE_BYTES), MIN_MESSAGE_BYTES
        )
    )
    # How long a stop waits for calls in flight before cancelling them.
    grace_seconds: float = field(
        default_factory=lambda: _seconds("PROMO_GRACE_SECONDS", "10", MAX_GRACE_SECONDS)
    )
    # PostgreSQL cancels any statement (or lock wait) longer than this, but a bulk
    # publish of codes; the call fails UNAVAILABLE. 0: no limit.
    statement_timeout_seconds: float = field(
        default_factory=lambda: _seconds(
            "PROMO_STATEMENT_TIMEOUT_SECONDS", "30", MAX_STATEMENT_TIMEOUT_SECONDS
        )
    )
    # PostgreSQL: each connection prepares the statements of the hot calls once
    # (the key check, ValidateCode's and ActivateCode's), rather than the server
    # planning them on every call. Off behind a pooler in transaction mode, whose
    # backends change under a connection; the server turns it off itself, with a
    # warning, when it finds a statement it prepared gone.
    pg_prepare: bool = field(default_factory=lambda: _flag("PROMO_PG_PREPARE", "1"))
    # HOST:PORT of the Prometheus /metrics endpoint; empty: none.
    metrics_listen: str = field(default_factory=lambda: _env("PROMO_METRICS_LISTEN", ""))
    # How often the pools' available codes are counted, for the gauges and the
    # low-stock warnings: one grouped count over every available code. 0: never.
    stock_check_seconds: float = field(
        default_factory=lambda: _float("PROMO_STOCK_CHECK_SECONDS", "15")
    )
    log_level: str = field(
        default_factory=lambda: _one_of("PROMO_LOG_LEVEL", "INFO", LOG_LEVELS, upper=True)
    )
    log_format: str = field(
        default_factory=lambda: _one_of("PROMO_LOG_FORMAT", "json", LOG_FORMATS)
    )
    # PEM files; with a certificate and its key the server speaks only TLS, and with a
    # client CA as well it also requires client certificates that CA signed. The start-up
    # log shows these paths, never what the files hold.
    tls_cert: str = field(default_factory=lambda: _env("PROMO_TLS_CERT", ""))
    tls_key: str = field(default_factory=lambda: _env("PROMO_TLS_KEY", ""))
    tls_client_ca: str = field(default_factory=lambda: _env("PROMO_TLS_CLIENT_CA", ""))
    # Code-guessing defence, per API key and per process: each unknown code asked of
    # ValidateCode/ActivateCode takes a token; with none left the key's ValidateCode and
    # ActivateCode calls are refused until one is back. The bucket holds guess_burst
    # tokens and refills guess_per_second a second; either 0 turns the defence off.
    guess_burst: int = field(default_factory=lambda: _int("PROMO_GUESS_BURST", "20"))
    guess_per_second: float = field(
        default_factory=lambda: _float("PROMO_GUESS_PER_SECOND", "1.0")
    )

    def describe(self) -> dict[str, object]:
        """The settings for the start-up log, with any password in the URL hidden."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["database_url"] = redact_url(self.database_url)
        return out


class SettingsError(ValueError):
    """Settings that cannot work; the message names the flag (and variable) to fix."""


def redact_url(url: str) -> str:
    """The URL with its password hidden, given as user:password@ or as ?password=."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    # The query's password first: it may hold an "@", which would pass for userinfo's.
    rest = _QUERY_PASSWORD.sub(r"\1***", rest)
    userinfo, at, host = rest.rpartition("@")
    if at and ":" in userinfo:
        userinfo = f"{userinfo.split(':', 1)[0]}:***"
    return f"{scheme}://{userinfo}{at}{host}"


_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&]*", re.IGNORECASE)
