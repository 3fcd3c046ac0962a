"""Builds the gRPC server: the promo.v1 services, health and reflection, behind the guard."""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures
from types import FrameType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from promo.v1 import (
    code_pb2,
    code_pb2_grpc,
    profile_pb2,
    profile_pb2_grpc,
    promotion_pb2,
    promotion_pb2_grpc,
)
from promo_server.api.codes import CodeService
from promo_server.api.guard import Guard
from promo_server.api.profiles import ProfileService
from promo_server.api.promotions import PromotionService
from promo_server.config import Settings
from promo_server.store.db import open_database
from promo_server.store.migrate import migrate

_LOGGER = logging.getLogger(__name__)

SERVICE_NAMES = (
    promotion_pb2.DESCRIPTOR.services_by_name["PromotionService"].full_name,
    code_pb2.DESCRIPTOR.services_by_name["CodeService"].full_name,
    profile_pb2.DESCRIPTOR.services_by_name["ProfileService"].full_name,
)


class Server:
    """A started-or-not gRPC server with its health service, stoppable gracefully."""

    def __init__(
        self,
        grpc_server: grpc.Server,
        health_servicer: health.HealthServicer,
        workers: futures.ThreadPoolExecutor,
    ) -> None:
        self.grpc_server = grpc_server
        self.health = health_servicer
        self._workers = workers

    def start(self) -> None:
        self.grpc_server.start()

    def stop(self, grace: float | None) -> threading.Event:
        """Refuses new calls, lets calls in flight finish for ``grace`` seconds, then stops.

        The event is set once every handler has returned, the handlers of
        cancelled calls too: only then are all database connections back.
        """
        self.health.enter_graceful_shutdown()
        stopped = self.grpc_server.stop(grace)
        done = threading.Event()

        def drain() -> None:
            stopped.wait()
            self._workers.shutdown(wait=True)
            done.set()

        threading.Thread(target=drain, name="server-stop", daemon=True).start()
        return done

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return self.grpc_server.wait_for_termination(timeout)


def create_server(
    address: str, db_url: str, settings: Settings | None = None
) -> tuple[Server, int]:
    """Opens and migrates the database, and binds a server to ``address`` (port 0: any)."""
    settings = settings or Settings(database_url=db_url, listen=address)
    db = open_database(db_url, pool_size=settings.threads)
    migrate(db)
    db.close()  # connections are per thread: each worker opens its own

    options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
    ]
    workers = futures.ThreadPoolExecutor(max_workers=settings.threads, thread_name_prefix="rpc")
    grpc_server = grpc.server(
        workers,
        interceptors=[Guard()],
        options=options,
    )
    promotion_pb2_grpc.add_PromotionServiceServicer_to_server(PromotionService(), grpc_server)
    code_pb2_grpc.add_CodeServiceServicer_to_server(CodeService(), grpc_server)
    profile_pb2_grpc.add_ProfileServiceServicer_to_server(ProfileService(), grpc_server)

    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, grpc_server)
    for name in ("", *SERVICE_NAMES):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), grpc_server
    )

    port = grpc_server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    return Server(grpc_server, health_servicer, workers), port


def serve(settings: Settings) -> None:
    """Serves until SIGTERM or SIGINT, then drains calls in flight and returns."""
    _LOGGER.info("starting settings=%s", settings.describe())
    server, port = create_server(settings.listen, settings.database_url, settings)
    server.start()
    host = settings.listen.rsplit(":", 1)[0]
    _LOGGER.info("serving address=%s:%d", host, port)

    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        _LOGGER.info("stopping signal=%s grace_seconds=%s",
                     signal.Signals(signum).name, settings.grace_seconds)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stopping.wait(timeout=1.0):
        pass
    server.stop(settings.grace_seconds).wait()
    _LOGGER.info("stopped")
