"""The ``promo`` command: quiets gRPC's own logging before gRPC loads, then runs the CLI."""

from __future__ import annotations

import os


def main() -> None:
    # gRPC's log lines (a failed TLS handshake, say) would come before the one `error:`
    # line that says what failed. gRPC reads the variable as it loads; GRPC_VERBOSITY=INFO
    # shows them again.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    from promo.cli import main as run_cli

    run_cli()
