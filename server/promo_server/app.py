"""Builds the gRPC server: the promo.v1 services, health and reflection, behind the guard."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import math
import multiprocessing
import os
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent import futures
from pathlib import Path
from types import FrameType
from typing import Any

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
from promo_server.api import auth, throttle
from promo_server.api.codes import CodeService
from promo_server.api.guard import Guard
from promo_server.api.handlers import intercepted
from promo_server.api.loopserver import LoopHealth, LoopServer, OnLoop, to_loop
from promo_server.api.profiles import ProfileService
from promo_server.api.promotions import PromotionService
from promo_server.api.wellformed import WellFormed
from promo_server.config import Settings, SettingsError, parse_address
from promo_server.metrics import MetricsEndpoint, StockWatcher
from promo_server.store.db import close_database, is_sqlite, open_database
from promo_server.store.migrate import migrate

_LOGGER = logging.getLogger(__name__)

SERVICE_NAMES = (
    promotion_pb2.DESCRIPTOR.services_by_name["PromotionService"].full_name,
    code_pb2.DESCRIPTOR.services_by_name["CodeService"].full_name,
    profile_pb2.DESCRIPTOR.services_by_name["ProfileService"].full_name,
)


class Server:
    """A started-or-not gRPC server with its health service, stoppable gracefully:
    on an event loop for SQLite, threaded for PostgreSQL (see api/loopserver.py)."""

    def __init__(
        self,
        grpc_server: grpc.Server | LoopServer,
        health_servicer: health.HealthServicer | LoopHealth,
        workers: futures.ThreadPoolExecutor,
        stock: StockWatcher,
        metrics_endpoint: MetricsEndpoint | None = None,
    ) -> None:
        self.grpc_server = grpc_server
        self.health = health_servicer
        self._workers = workers
        self.stock = stock
        self.metrics_endpoint = metrics_endpoint

    def start(self) -> None:
        self.grpc_server.start()
        self.stock.start()
        freeze_heap()

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
            self.stock.stop()
            if self.metrics_endpoint is not None:
                self.metrics_endpoint.stop()
            done.set()

        threading.Thread(target=drain, name="server-stop", daemon=True).start()
        return done

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return self.grpc_server.wait_for_termination(timeout)


# The process whose heap freeze_heap() froze, if any.
_HEAP_FROZEN_IN: int | None = None


def freeze_heap() -> None:
    """Keeps what is alive once the server starts (modules, message descriptors, the
    models) out of the garbage collector's sight, once per process.

    Those objects live as long as the process, yet every full collection went
    over all of them: measured under load, it paused the event loop for about
    23 ms every few thousand calls, and every call in flight waited with it.
    """
    global _HEAP_FROZEN_IN
    if os.getpid() == _HEAP_FROZEN_IN:  # a forked worker freezes its own
        return
    _HEAP_FROZEN_IN = os.getpid()
    gc.collect()
    gc.freeze()


_TLS_CERT = "--tls-cert (PROMO_TLS_CERT)"
_TLS_KEY = "--tls-key (PROMO_TLS_KEY)"
_TLS_CLIENT_CA = "--tls-client-ca (PROMO_TLS_CLIENT_CA)"


@dataclasses.dataclass(frozen=True)
class ServerTls:
    """The server's PEM files, read and checked: its certificate chain and key, and the CA
    that signs client certificates when it requires them."""

    cert: bytes
    key: bytes
    client_ca: bytes | None

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key, self.cert)],
            root_certificates=self.client_ca,
            require_client_auth=self.client_ca is not None,
        )


def load_tls(settings: Settings) -> ServerTls | None:
    """The TLS the settings ask for (None: plaintext); a SettingsError names the flag to fix."""
    if not settings.tls_cert and not settings.tls_key:
        if settings.tls_client_ca:
            raise SettingsError(f"{_TLS_CLIENT_CA} needs {_TLS_CERT} and {_TLS_KEY}")
        return None
    if not settings.tls_key:
        raise SettingsError(f"{_TLS_CERT} is set without {_TLS_KEY}: give both")
    if not settings.tls_cert:
        raise SettingsError(f"{_TLS_KEY} is set without {_TLS_CERT}: give both")
    tls = ServerTls(
        cert=_read_file(_TLS_CERT, settings.tls_cert),
        key=_read_file(_TLS_KEY, settings.tls_key),
        client_ca=(
            _read_file(_TLS_CLIENT_CA, settings.tls_client_ca) if settings.tls_client_ca else None
        ),
    )
    _check_pem_files(settings)
    return tls


def _read_file(flag: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise SettingsError(f"{flag}: cannot read {path}: {error.strerror}") from None


def _check_pem_files(settings: Settings) -> None:
    """Checks the files with Python's ssl: gRPC reports any bad one only as "Failed to bind"."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    for flag, path in ((_TLS_CERT, settings.tls_cert), (_TLS_CLIENT_CA, settings.tls_client_ca)):
        if path:
            try:
                context.load_verify_locations(cafile=path)
            except ssl.SSLError:
                raise SettingsError(f"{flag}: no PEM certificate in {path}") from None

    def refuse_encrypted() -> str:
        # Called only for an encrypted key; without it OpenSSL would prompt on the terminal.
        raise SettingsError(f"{_TLS_KEY}: {settings.tls_key} is encrypted; gRPC needs it plain")

    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key, password=refuse_encrypted)
    except ssl.SSLError as error:
        if error.reason == "KEY_VALUES_MISMATCH":
            problem = f"is not the key of the certificate in {settings.tls_cert}"
        else:
            problem = "holds no PEM private key"
        raise SettingsError(f"{_TLS_KEY}: {settings.tls_key} {problem}") from None


# How much larger than the largest allowed message gRPC accepts before refusing it itself.
RECEIVE_SLACK = 4


def create_server(
    address: str, db_url: str, settings: Settings | None = None
) -> tuple[Server, int]:
    """Opens and migrates the database, and binds a server to ``address`` (port 0: any)."""
    settings = settings or Settings(database_url=db_url, listen=address)
    tls = load_tls(settings)  # before the database: a bad file must change nothing
    guesses = throttle.from_settings(settings)
    group_commit_seconds = group_commit(settings)
    stock_seconds = stock_check(settings)  # here: a bad setting must change nothing
    # A connection for each worker, one for the stock watcher's counts and, on
    # SQLite, one for the calls that run on the event loop.
    db = open_database(db_url, pool_size=settings.threads + 2,
                       statement_timeout=settings.statement_timeout_seconds,
                       prepare=settings.pg_prepare)
    migrate(db)
    on_loop = is_sqlite()
    db.close()  # connections are per thread: each worker opens its own

    options = [
        # gRPC itself refuses only messages far over the limit: one it refuses ends
        # a client stream as if the client had finished it, and an import would
        # publish what came before. WellFormed refuses the rest as an error.
        ("grpc.max_receive_message_length", settings.max_message_bytes * RECEIVE_SLACK),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        # Only the processes of `serve --workers N` share a port; a second
        # server started by mistake on a taken port must fail, not share it.
        ("grpc.so_reuseport", 1 if settings.shares_port else 0),
    ]
    workers = futures.ThreadPoolExecutor(max_workers=settings.threads, thread_name_prefix="rpc")
    auth.record_uses_on(workers)
    # The guard first: it authenticates and maps what the inner ones raise.
    interceptors = [Guard(), WellFormed(settings.max_message_bytes)]
    grpc_server: grpc.Server | LoopServer
    health_servicer: health.HealthServicer | LoopHealth
    if on_loop:
        grpc_server, health_servicer = _loop_server(
            options, interceptors, workers, guesses, group_commit_seconds,
            settings.max_message_bytes,
        )
    else:
        grpc_server = grpc.server(workers, interceptors=interceptors, options=options)
        _add_services(grpc_server, guesses, settings.max_message_bytes)
        health_servicer = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, grpc_server)
        reflection.enable_server_reflection(_REFLECTED, grpc_server)
    for name in ("", *SERVICE_NAMES):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)

    try:
        if tls is None:
            port = grpc_server.add_insecure_port(address)
        else:
            port = grpc_server.add_secure_port(address, tls.credentials())
    except RuntimeError:  # gRPC's "Failed to bind", which says no more
        port = 0
    if port == 0:
        raise OSError(
            f"cannot listen on {address}: the port is taken, or the host is not one of "
            "this machine's addresses"
        )
    endpoint = MetricsEndpoint(settings.metrics_listen) if settings.metrics_listen else None
    stock = StockWatcher(stock_seconds)
    return Server(grpc_server, health_servicer, workers, stock, endpoint), port


# Longer would hold every activation up for little more sharing.
MAX_GROUP_COMMIT_MS = 100.0


def stock_check(settings: Settings) -> float:
    """Seconds between the pools' counts, 0 for none; a SettingsError names the setting."""
    seconds = settings.stock_check_seconds
    if not (math.isfinite(seconds) and seconds >= 0):
        raise SettingsError(
            f"PROMO_STOCK_CHECK_SECONDS must be 0 (never count) or more seconds, not {seconds:g}"
        )
    return seconds


def group_commit(settings: Settings) -> float:
    """The write groups' quiet time in seconds; a SettingsError names the flag to fix."""
    ms = settings.group_commit_ms
    if not (math.isfinite(ms) and 0 <= ms <= MAX_GROUP_COMMIT_MS):
        raise SettingsError(
            f"--group-commit-ms (PROMO_GROUP_COMMIT_MS) must be 0 to {MAX_GROUP_COMMIT_MS:g} "
            f"milliseconds, not {ms:g}"
        )
    return ms / 1000


_REFLECTED = (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME)


def _add_services(
    server: grpc.Server | _Recorder, guesses: throttle.GuessThrottle, max_message_bytes: int
) -> None:
    promotion_pb2_grpc.add_PromotionServiceServicer_to_server(
        PromotionService(max_message_bytes), server
    )
    code_pb2_grpc.add_CodeServiceServicer_to_server(CodeService(guesses), server)
    profile_pb2_grpc.add_ProfileServiceServicer_to_server(ProfileService(), server)


class _Recorder:
    """Stands for a server to the generated ``add_*_to_server``: keeps their handlers."""

    def __init__(self) -> None:
        self.services: dict[str, dict[str, grpc.RpcMethodHandler]] = {}

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        pass  # the same handlers, by name, come to add_registered_method_handlers

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        self.services[service] = handlers


# The calls that run on the event loop, and how (see api/loopserver.py): the hot
# ones. Every other call runs on a worker thread.
_ON_LOOP = {
    "/promo.v1.CodeService/ValidateCode": OnLoop.READS,
    "/promo.v1.CodeService/ActivateCode": OnLoop.WRITES,
}


def _loop_server(
    options: list[tuple[str, Any]],
    interceptors: list[grpc.ServerInterceptor],
    workers: futures.ThreadPoolExecutor,
    guesses: throttle.GuessThrottle,
    group_commit_seconds: float,
    max_message_bytes: int,
) -> tuple[LoopServer, LoopHealth]:
    server = LoopServer(options, group_commit_seconds)
    recorder = _Recorder()
    _add_services(recorder, guesses, max_message_bytes)
    for service, handlers in recorder.services.items():
        served = {}
        for name, handler in handlers.items():
            method = f"/{service}/{name}"
            served[name] = to_loop(
                intercepted(handler, method, interceptors), workers, _ON_LOOP.get(method),
                name,
            )
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, served),))
    health_servicer = LoopHealth()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer.servicer, server.aio)
    reflection.enable_server_reflection(_REFLECTED, server.aio)
    return server, health_servicer


def serve(settings: Settings) -> None:
    """Serves until SIGTERM or SIGINT, then drains calls in flight and returns."""
    if settings.workers > 1:
        supervise(settings)
        return
    if not settings.shares_port:
        _LOGGER.info("starting settings=%s", settings.describe())
    server, port = create_server(settings.listen, settings.database_url, settings)
    server.start()
    host = settings.listen.rsplit(":", 1)[0]
    _LOGGER.info("serving address=%s:%d pid=%d grpc_server=%s", host, port, os.getpid(),
                 "aio" if isinstance(server.grpc_server, LoopServer) else "threaded")
    if server.metrics_endpoint is not None:
        _LOGGER.info("serving metrics address=http://%s:%d/metrics",
                     settings.metrics_listen.rsplit(":", 1)[0], server.metrics_endpoint.port)

    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        _LOGGER.info("stopping signal=%s grace_seconds=%s",
                     signal.Signals(signum).name, settings.grace_seconds)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # A worker of `serve --workers` whose supervisor is gone (killed) stops too,
    # rather than serving on, unseen, until someone finds it.
    supervisor = os.getppid() if settings.shares_port else None
    while not stopping.wait(timeout=1.0):
        if supervisor is not None and os.getppid() != supervisor:
            _LOGGER.warning("stopping: the supervisor process is gone supervisor_pid=%d",
                            supervisor)
            break
    server.stop(settings.grace_seconds).wait()
    _LOGGER.info("stopped")


# A worker that exits with an error this soon after it started is failing to start
# (a taken port, an unreachable database), not crashing: starting it again is no use.
WORKER_START_SECONDS = 10.0
WORKER_STOP_MARGIN_SECONDS = 5.0


def supervise(settings: Settings) -> None:
    """``serve --workers N``: N server processes sharing one port, until SIGTERM or SIGINT.

    The pattern of gRPC's multiprocessing example: the processes are forked
    before any gRPC object exists (gRPC's threads do not survive a fork), each
    then builds its own server on the port with SO_REUSEPORT, and the kernel
    spreads new connections over them. A client channel stays on the process
    it connected to, so a client spreads its calls over several channels. The
    database is migrated once, here, before the fork. A worker that dies (a
    signal, say) is started again; one that cannot start stops them all. SIGTERM to this
    process stops every worker gracefully and waits for them.
    """
    _LOGGER.info("starting settings=%s", settings.describe())
    migrate(open_database(settings.database_url, pool_size=1))
    close_database()  # no connection, and no thread, may cross the fork
    host, _, port_text = settings.listen.rpartition(":")
    with _reserved_port(host, int(port_text)) as port:
        worker_settings = dataclasses.replace(
            settings, listen=f"{host}:{port}", workers=1, shares_port=True
        )
        context = multiprocessing.get_context("fork")
        stopping = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            _LOGGER.info("stopping workers signal=%s", signal.Signals(signum).name)
            stopping.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

        def start(number: int) -> tuple[multiprocessing.process.BaseProcess, float]:
            process = context.Process(
                target=_serve_worker, args=(_worker_settings(worker_settings, number),),
                name=f"promo-worker-{number}",
            )
            process.start()
            return process, time.monotonic()

        workers = [start(number) for number in range(settings.workers)]
        _LOGGER.info("serving address=%s:%d workers=%d", host, port, settings.workers)
        failed = False
        while not stopping.wait(timeout=0.5):
            for number, (process, started) in enumerate(workers):
                if process.is_alive():
                    continue
                exited = process.exitcode or 0
                if exited > 0 and time.monotonic() - started < WORKER_START_SECONDS:
                    _LOGGER.error("worker failed to start worker=%d exitcode=%s",
                                  number, process.exitcode)
                    failed = True
                    stopping.set()
                    break
                _LOGGER.error("worker died; starting another worker=%d exitcode=%s",
                              number, process.exitcode)
                workers[number] = start(number)
        for process, _ in workers:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        for process, _ in workers:
            process.join(settings.grace_seconds + WORKER_STOP_MARGIN_SECONDS)
            if process.is_alive():
                _LOGGER.warning("worker did not stop; killing pid=%s", process.pid)
                process.kill()
                process.join()
    _LOGGER.info("stopped")
    if failed:
        raise SystemExit(1)


def _worker_settings(settings: Settings, number: int) -> Settings:
    """Worker ``number``'s settings. Its metrics endpoint is on the given port plus
    ``number`` (0: any free one): each process counts its own calls, so each is a
    scrape target of its own. Only worker 0 counts the pools: the count reads every
    available code, and the others would repeat it, and its warnings."""
    if number:
        settings = dataclasses.replace(settings, stock_check_seconds=0)
    if not settings.metrics_listen:
        return settings
    host, port = parse_address(settings.metrics_listen)
    if not port:
        return settings
    shown = f"[{host}]" if ":" in host else host
    return dataclasses.replace(settings, metrics_listen=f"{shown}:{port + number}")


def _serve_worker(settings: Settings) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL)  # until serve() sets its own
    try:
        serve(settings)
    except OSError as error:  # its metrics address taken, say: one line, as main() says it
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None


@contextlib.contextmanager
def _reserved_port(host: str, port: int) -> Iterator[int]:
    """Holds ``port`` (any free one for 0) with SO_REUSEPORT while the workers share it."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((host.strip("[]") or "0.0.0.0", port))
        except OSError as error:
            raise OSError(f"cannot listen on {host}:{port}: {error.strerror}") from None
        yield int(sock.getsockname()[1])
    finally:
        sock.close()
