"""The server's edge: keys and roles, project isolation, health, reflection, limits, stop."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from promo.v1 import code_pb2, code_pb2_grpc, promotion_pb2_grpc
from promo.v1 import promotion_pb2 as pb
from promo_server import app
from promo_server.domain import keys
from promo_server.store.db import database
from promo_server.store.models import ApiKey
from tests.conftest import Project, Running, bearer, lock_for_writes
from tests.processes import create_project, free_port, promo_server
from tests.rpc import refused

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED


def promotion(external_id: str = "p") -> pb.Promotion:
    return pb.Promotion(external_id=external_id, name={"en-US": "P"})


def create(channel: grpc.Channel, key: str, external_id: str = "p") -> pb.Promotion:
    stub = promotion_pb2_grpc.PromotionServiceStub(channel)
    return stub.CreatePromotion(
        pb.CreatePromotionRequest(promotion=promotion(external_id)), metadata=bearer(key)
    )


def get(channel: grpc.Channel, key: str, external_id: str = "p") -> pb.Promotion:
    stub = promotion_pb2_grpc.PromotionServiceStub(channel)
    return stub.GetPromotion(pb.GetPromotionRequest(external_id=external_id), metadata=bearer(key))


@pytest.mark.parametrize(
    "metadata",
    [
        (),
        (("authorization", "Bearer "),),
        (("authorization", "Basic dXNlcjpwYXNz"),),
        (("authorization", "Bearer promo_0123456789abcdef_" + "A" * 43),),
        (("authorization", "Bearer not-a-key"),),
    ],
)
def test_calls_without_a_valid_key_are_unauthenticated(running: Running, metadata) -> None:  # type: ignore[no-untyped-def]
    with running.channel() as channel:
        stub = promotion_pb2_grpc.PromotionServiceStub(channel)
        refused(lambda: stub.ListPromotions(pb.ListPromotionsRequest(), metadata=metadata),
                UNAUTHENTICATED)


def test_a_key_with_a_changed_secret_is_unauthenticated(running: Running, project: Project) -> None:
    forged = project.admin_key[:-1] + ("A" if project.admin_key[-1] != "A" else "B")
    with running.channel() as channel:
        refused(lambda: create(channel, forged), UNAUTHENTICATED)


def test_roles_decide_what_a_key_may_call(running: Running, project: Project) -> None:
    with running.channel() as channel:
        create(channel, project.admin_key)
        assert get(channel, project.read_key).external_id == "p"
        refused(lambda: create(channel, project.read_key, "q"), DENIED)
        refused(lambda: get(channel, project.redeem_key), DENIED)
        refused(lambda: create(channel, project.redeem_key, "q"), DENIED)
        codes = code_pb2_grpc.CodeServiceStub(channel)
        refused(lambda: codes.ImportCodes(iter(()), metadata=bearer(project.redeem_key)), DENIED)
        refused(lambda: codes.AttachCode(code_pb2.AttachCodeRequest(),
                                         metadata=bearer(project.read_key)), DENIED)


def test_nothing_crosses_projects(running: Running) -> None:
    a, b = running.new_project("a"), running.new_project("b")
    with running.channel() as channel:
        create(channel, a.admin_key, "shared-name")
        refused(lambda: get(channel, b.admin_key, "shared-name"), grpc.StatusCode.NOT_FOUND)
        stub = promotion_pb2_grpc.PromotionServiceStub(channel)
        listed = stub.ListPromotions(pb.ListPromotionsRequest(), metadata=bearer(b.admin_key))
        assert list(listed.promotions) == []
        refused(lambda: stub.DeletePromotion(
            pb.DeletePromotionRequest(external_id="shared-name"), metadata=bearer(b.admin_key)),
            grpc.StatusCode.NOT_FOUND)
        create(channel, b.admin_key, "shared-name")
        assert get(channel, a.admin_key, "shared-name").external_id == "shared-name"


def test_health_and_reflection_need_no_key(running: Running) -> None:
    with running.channel() as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "promo.v1.PromotionService", "promo.v1.CodeService"):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service))
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
        assert {
            "promo.v1.PromotionService",
            "promo.v1.CodeService",
            "promo.v1.ProfileService",
            "grpc.health.v1.Health",
        } <= services


def test_an_oversized_message_is_refused(running: Running, project: Project) -> None:
    huge = pb.Promotion(external_id="big", name={"en-US": "x" * (5 * 1024 * 1024)})
    with running.channel() as channel:
        stub = promotion_pb2_grpc.PromotionServiceStub(channel)
        refused(lambda: stub.CreatePromotion(pb.CreatePromotionRequest(promotion=huge),
                                             metadata=bearer(project.admin_key)),
                grpc.StatusCode.RESOURCE_EXHAUSTED)
        assert list(stub.ListPromotions(pb.ListPromotionsRequest(),
                                        metadata=bearer(project.admin_key)).promotions) == []


def test_keys_are_stored_hashed_never_in_clear(running: Running, project: Project) -> None:
    tokens = (project.admin_key, project.redeem_key, project.read_key)
    secrets = [parsed[1] for parsed in map(keys.parse_token, tokens) if parsed is not None]
    assert len(secrets) == len(tokens)
    database.connect(reuse_if_open=True)
    try:
        stored = [" ".join(map(str, row)) for row in ApiKey.select().tuples()]
    finally:
        database.close()
    for secret in secrets:
        assert not any(secret in row for row in stored)
    if running.db_url.startswith("sqlite"):
        path = Path(running.db_url.removeprefix("sqlite:///"))
        raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
        for key, secret in zip(tokens, secrets, strict=True):
            assert key.encode() not in raw
            assert secret.encode() not in raw


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_gracefully_on_signals(db_url: str, signum: int) -> None:
    env = {**os.environ, "PROMO_DATABASE_URL": db_url}
    key = create_project(db_url)
    port = free_port()
    server = subprocess.Popen(
        promo_server("serve", "--listen", f"127.0.0.1:{port}"),
        env=env, stderr=subprocess.PIPE, text=True,
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=20)
            assert create(channel, key).external_id == "p"
        server.send_signal(signum)
        assert server.wait(timeout=20) == 0
    finally:
        if server.poll() is None:
            server.kill()
    log = server.stderr.read() if server.stderr else ""
    assert "stopping" in log and '"stopped"' in log
    # SQLite's hot calls run on an event loop; PostgreSQL's server is threaded.
    kind = "aio" if db_url.startswith("sqlite") else "threaded"
    assert f"grpc_server={kind}" in log


def test_stop_lets_a_call_in_flight_finish(running: Running, project: Project) -> None:
    """A call waiting on the database when the stop begins still gets its answer."""
    blocker = lock_for_writes(running.db_url, "promotion")
    with running.channel() as channel:
        stub = promotion_pb2_grpc.PromotionServiceStub(channel)
        in_flight = stub.CreatePromotion.future(
            pb.CreatePromotionRequest(promotion=promotion()), metadata=bearer(project.admin_key)
        )
        time.sleep(0.3)
        stopped = running.server.stop(5)  # type: ignore[attr-defined]
        time.sleep(0.3)
        blocker.rollback()
        blocker.close()
        assert in_flight.result(timeout=10).external_id == "p"
        assert stopped.wait(timeout=10)


def test_a_started_server_freezes_its_process_heap_once(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What lives as long as the process is kept out of full collections, which paused
    the event loop, and every call in flight, for about 23 ms each."""
    assert gc.get_freeze_count() > 0, "the server started, and froze nothing"
    done: list[str] = []
    monkeypatch.setattr(app, "gc", SimpleNamespace(
        collect=lambda: done.append("collect"), freeze=lambda: done.append("freeze")
    ))
    app.freeze_heap()
    assert done == [], "a second server of the process froze the heap again"
    monkeypatch.setattr(app, "_HEAP_FROZEN_IN", -1)  # as in a forked worker: its parent's
    app.freeze_heap()
    assert done == ["collect", "freeze"]


def test_a_restarted_server_keeps_its_data_and_schema(db_url: str) -> None:
    from promo_server.app import create_server

    first, port = create_server("127.0.0.1:0", db_url)
    first.start()
    project = Running(f"127.0.0.1:{port}", db_url, first).new_project()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        create(channel, project.admin_key)
    first.stop(None).wait()
    time.sleep(0.05)
    second, port = create_server("127.0.0.1:0", db_url)
    second.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert get(channel, project.read_key).external_id == "p"
    finally:
        second.stop(None).wait()
