"""``promo-server``: serve, and the admin commands that run against the database directly."""

from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import UTC, datetime

from peewee import InterfaceError, OperationalError

from promo_server import app, logs
from promo_server.api import throttle
from promo_server.config import Settings, SettingsError, parse_address, redact_url
from promo_server.domain import keys
from promo_server.domain.errors import DomainError
from promo_server.domain.values import parse_rfc3339
from promo_server.store import audit, invariants, projects
from promo_server.store.db import open_database, utcnow
from promo_server.store.migrate import migrate

AUDIT_LIMIT = 50


def _parser() -> argparse.ArgumentParser:
    defaults = Settings()
    parser = argparse.ArgumentParser(prog="promo-server", description="The promo gRPC service.")
    commands = parser.add_subparsers(dest="command", required=True)

    def with_db(command: argparse.ArgumentParser) -> argparse.ArgumentParser:
        command.add_argument(
            "--db", default=defaults.database_url,
            help="database URL (env PROMO_DATABASE_URL; default %(default)s)",
        )
        return command

    serve = with_db(commands.add_parser("serve", help="serve gRPC until SIGTERM/SIGINT"))
    serve.add_argument("--listen", type=_address, default=defaults.listen,
                       help="HOST:PORT (env PROMO_LISTEN; default %(default)s)")
    serve.add_argument("--threads", type=_positive, default=defaults.threads,
                       help="worker threads (env PROMO_THREADS; default %(default)s)")
    serve.add_argument("--group-commit-ms", metavar="MS", type=_group_commit_ms,
                       default=defaults.group_commit_ms,
                       help="SQLite: how long an activation's commit waits for others to "
                            "share it; 0: none (env PROMO_GROUP_COMMIT_MS; "
                            "default %(default)s)")
    serve.add_argument("--workers", type=_positive, default=defaults.workers,
                       help="server processes sharing the port "
                            "(env PROMO_WORKERS; default %(default)s)")
    serve.add_argument("--tls-cert", metavar="PATH", default=defaults.tls_cert,
                       help="PEM certificate chain; with --tls-key, serve TLS only "
                            "(env PROMO_TLS_CERT)")
    serve.add_argument("--tls-key", metavar="PATH", default=defaults.tls_key,
                       help="PEM private key of --tls-cert, unencrypted (env PROMO_TLS_KEY)")
    serve.add_argument("--tls-client-ca", metavar="PATH", default=defaults.tls_client_ca,
                       help="PEM CA certificates; require client certificates they signed "
                            "(mutual TLS; env PROMO_TLS_CLIENT_CA)")
    serve.add_argument("--metrics-listen", metavar="HOST:PORT", type=_metrics_address,
                       default=defaults.metrics_listen,
                       help="serve Prometheus metrics at http://HOST:PORT/metrics; with "
                            "--workers N, worker i at PORT+i "
                            "(env PROMO_METRICS_LISTEN; default: none)")

    project = with_db(commands.add_parser(
        "create-project", help="create a project; prints its admin key as the last line"))
    project.add_argument("name")

    key = with_db(commands.add_parser(
        "create-key", help="create an API key; prints it as the last line"))
    key.add_argument("project", help="the project's name or id")
    key.add_argument("--role", required=True, choices=keys.ROLES)
    expiry = key.add_mutually_exclusive_group()
    expiry.add_argument("--expires-in", metavar="DURATION",
                        help="the key stops working after DURATION: 30d, 12h or 90m")
    expiry.add_argument("--expire-time", metavar="RFC3339",
                        help="the key stops working at this time, like 2027-01-31T00:00:00Z")

    listing = with_db(commands.add_parser(
        "list-keys", help="list a project's keys (ids and times, never secrets)"))
    listing.add_argument("project", help="the project's name or id")

    revoke = with_db(commands.add_parser(
        "revoke-key", help="revoke a key: every server refuses it from its next call"))
    revoke.add_argument("key_id", help="the key's id, as list-keys shows it")

    stock = with_db(commands.add_parser(
        "set-low-stock-threshold",
        help="warn when the project's global pool holds fewer available codes than N"))
    stock.add_argument("project", help="the project's name or id")
    stock.add_argument("threshold", metavar="N", type=_threshold,
                       help="a whole number, 0 or more; 'none' for no warning")

    audit_log = with_db(commands.add_parser(
        "audit", help="list a project's admin changes, newest first: who, what, when"))
    audit_log.add_argument("project", help="the project's name or id")
    audit_log.add_argument("--since", metavar="RFC3339", type=_since,
                           help="only changes at or after this time, like 2027-01-31T00:00:00Z")
    audit_log.add_argument("--limit", metavar="N", type=_positive, default=AUDIT_LIMIT,
                           help="at most N changes (default %(default)s)")

    with_db(commands.add_parser(
        "check",
        help="verify the stored counters, attachments and limits; exit 1 listing each breach",
        description="Verify the database: every code's, promotion's and profile's redemption "
                    "counter equals its live redemptions; no single-use code has two "
                    "holders; no code, profile or promotion limit is exceeded; no row points "
                    "at a missing one; no code was attached after it was retired. Reads one "
                    "snapshot, so it may run beside live servers. A limit lowered below what "
                    "was already redeemed shows as a breach."))
    return parser


def _positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return number


def _group_commit_ms(text: str) -> float:
    try:
        ms = float(text)
    except ValueError:
        ms = -1.0
    if not (math.isfinite(ms) and 0 <= ms <= app.MAX_GROUP_COMMIT_MS):
        raise argparse.ArgumentTypeError(
            f"must be 0 to {app.MAX_GROUP_COMMIT_MS:g} milliseconds, not {text!r}"
        )
    return ms


def _address(text: str) -> str:
    try:
        parse_address(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _metrics_address(text: str) -> str:
    return _address(text) if text else text


def _since(text: str) -> datetime:
    moment = parse_rfc3339(text)
    if moment is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an RFC 3339 time with its offset, like 2027-01-31T00:00:00Z"
        )
    return moment.astimezone(UTC).replace(tzinfo=None)


def _threshold(text: str) -> int | None:
    if text == "none":
        return None
    try:
        number = int(text)
    except ValueError:
        number = -1
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be a number, 0 or more, or none, not {text!r}")
    return number


def main(argv: list[str] | None = None) -> int:
    """Runs a command; a setting, a database or an address that cannot work is one line
    on stderr and an exit status (2: a setting, 1: anything else), never a traceback."""
    try:
        defaults = Settings()  # the environment's, checked before anything opens
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    args = _parser().parse_args(argv)
    logs.configure(defaults.log_level, defaults.log_format)
    try:
        return _run(args)
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except DomainError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 1
    except (OperationalError, InterfaceError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        print(f"error: cannot use the database {redact_url(args.db)}: {reason}",
              file=sys.stderr)
        return 1
    except OSError as error:  # an address to listen on, a file of the database or TLS
        print(f"error: {error}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    if args.command == "serve":
        settings = Settings(database_url=args.db, listen=args.listen, threads=args.threads,
                            group_commit_ms=args.group_commit_ms, workers=args.workers,
                            tls_cert=args.tls_cert, tls_key=args.tls_key,
                            tls_client_ca=args.tls_client_ca, metrics_listen=args.metrics_listen)
        app.load_tls(settings)  # here, before any worker process forks
        throttle.from_settings(settings)
        app.group_commit(settings)
        app.stock_check(settings)
        app.serve(settings)
        return 0
    if args.command == "check":
        return _check(args.db)
    expire_time = None
    if args.command == "create-key":
        expire_time = keys.expiry(
            expires_in=args.expires_in, expire_time=args.expire_time, now=utcnow()
        )
    migrate(open_database(args.db))
    if args.command == "list-keys":
        print(_key_table(projects.list_keys(args.project)))
        return 0
    if args.command == "audit":
        found = projects.find_project(args.project)
        print(_audit_table(audit.entries(found.id, since=args.since, limit=args.limit)))
        return 0
    if args.command == "revoke-key":
        revoked = projects.revoke_key(args.key_id)
        print(f"{revoked.role} key {revoked.key_id} revoked at {_time(revoked.revoke_time)}")
        return 0
    if args.command == "set-low-stock-threshold":
        pool = projects.set_low_stock_threshold(args.project, args.threshold)
        set_to = "none" if args.threshold is None else args.threshold
        print(f"global pool of project {pool.name!r}: low-stock threshold {set_to}")
        return 0
    if args.command == "create-project":
        project, token = projects.create_project(args.name)
        print(f"project {project.name!r} created (id {project.id}); its admin key, shown once:")
    else:
        token = projects.create_key(args.project, args.role, expire_time)
        until = f", expiring at {_time(expire_time)}" if expire_time else ""
        print(f"{args.role} key created for project {args.project!r}{until}; shown once:")
    print(token)
    return 0


def _check(url: str) -> int:
    """Prints a one-line summary when every invariant holds, else one line per breach."""
    migrate(open_database(url, statement_timeout=0, existing=True))
    report = invariants.check()
    for line in report.lines():
        print(line)
    print(report.summary())
    return 1 if report.breaches else 0


_KEY_COLUMNS = ("KEY ID", "ROLE", "CREATED", "LAST USED", "EXPIRES", "REVOKED")


def _key_table(infos: list[projects.KeyInfo]) -> str:
    """The keys as aligned columns, times in UTC, ``-`` for none (never used, say)."""
    return _table(_KEY_COLUMNS, [
        (info.key_id, info.role, _time(info.create_time), _time(info.last_used_time),
         _time(info.expire_time), _time(info.revoke_time))
        for info in infos
    ])


_AUDIT_COLUMNS = ("TIME", "ACTOR", "ACTION", "RESOURCE", "DETAILS")


def _audit_table(entries: list[audit.Entry]) -> str:
    """The entries as aligned columns; details as ``name=value`` pairs, values in JSON."""
    return _table(_AUDIT_COLUMNS, [
        (_time(entry.create_time), entry.actor, entry.action, entry.resource,
         " ".join(f"{name}={json.dumps(value, default=str)}"
                  for name, value in entry.details.items()))
        for entry in entries
    ])


def _table(header: tuple[str, ...], cells: list[tuple[str, ...]]) -> str:
    rows = [header, *cells]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _time(moment: datetime | None) -> str:
    return "-" if moment is None else f"{moment:%Y-%m-%dT%H:%M:%SZ}"


if __name__ == "__main__":
    sys.exit(main())
