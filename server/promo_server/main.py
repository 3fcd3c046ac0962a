"""``promo-server``: serve, and the admin commands that run against the database directly."""

from __future__ import annotations

import argparse
import sys

from promo_server import app, logs
from promo_server.config import Settings
from promo_server.domain import keys
from promo_server.domain.errors import DomainError
from promo_server.store import projects
from promo_server.store.db import open_database
from promo_server.store.migrate import migrate


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
    serve.add_argument("--listen", default=defaults.listen,
                       help="HOST:PORT (env PROMO_LISTEN; default %(default)s)")
    serve.add_argument("--threads", type=int, default=defaults.threads,
                       help="worker threads (env PROMO_THREADS; default %(default)s)")
    serve.add_argument("--workers", type=_positive, default=defaults.workers,
                       help="server processes sharing the port "
                            "(env PROMO_WORKERS; default %(default)s)")

    project = with_db(commands.add_parser(
        "create-project", help="create a project; prints its admin key as the last line"))
    project.add_argument("name")

    key = with_db(commands.add_parser(
        "create-key", help="create an API key; prints it as the last line"))
    key.add_argument("project", help="the project's name or id")
    key.add_argument("--role", required=True, choices=keys.ROLES)
    return parser


def _positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return number


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    defaults = Settings()
    logs.configure(defaults.log_level, defaults.log_format)
    if args.command == "serve":
        settings = Settings(database_url=args.db, listen=args.listen, threads=args.threads,
                            workers=args.workers)
        app.serve(settings)
        return 0
    try:
        migrate(open_database(args.db))
        if args.command == "create-project":
            project, token = projects.create_project(args.name)
            print(f"project {project.name!r} created (id {project.id}); its admin key, shown once:")
        else:
            token = projects.create_key(args.project, args.role)
            print(f"{args.role} key created for project {args.project!r}; shown once:")
    except DomainError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 1
    print(token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
