"""The promo gRPC server."""

import os

# gRPC logs on its own, in its own format, from the moment it loads: at the default
# level a failed TLS handshake writes a line that is not one of our JSON lines.
# Errors still show; GRPC_VERBOSITY=INFO shows the rest again.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
