"""A server process killed in the middle of an import loses nothing and publishes nothing
half-way, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import signal
import threading
from collections.abc import Iterator

import grpc
import pytest

from promo.v1 import code_pb2 as pb
from promo.v1 import code_pb2_grpc
from tests.conftest import bearer
from tests.processes import create_project, serving

OLD = [f"OLD-{i}" for i in range(100)]
NEW = [f"NEW-{i}" for i in range(200_000)]


def csv_lines(codes: list[str]) -> bytes:
    return "".join(f"{c}\n" for c in codes).encode()


def import_all(stub: code_pb2_grpc.CodeServiceStub, key: str, codes: list[str]) -> None:
    stub.ImportCodes(
        iter([pb.ImportCodesRequest(spec=pb.ImportCodesRequest.Spec()),
              pb.ImportCodesRequest(chunk=csv_lines(codes))]),
        metadata=bearer(key),
    )


def live_codes(stub: code_pb2_grpc.CodeServiceStub, key: str) -> set[str]:
    data = b"".join(
        r.chunk for r in stub.ExportCodes(pb.ExportCodesRequest(), metadata=bearer(key))
    )
    rows = csv.DictReader(io.StringIO(data.decode()))
    return {r["code"] for r in rows if r["retired"] == "false"}


def upload(data: bytes, sent: threading.Event, hold: threading.Event,
           hold_after: int) -> Iterator[pb.ImportCodesRequest]:
    """A REPLACE import that stops sending (until ``hold``) after ``hold_after`` bytes."""
    yield pb.ImportCodesRequest(spec=pb.ImportCodesRequest.Spec())
    for start in range(0, len(data), 64 * 1024):
        if start >= hold_after:
            sent.set()
            hold.wait(30)
        yield pb.ImportCodesRequest(chunk=data[start : start + 64 * 1024])
    sent.set()


@pytest.mark.parametrize("moment", ["while streaming", "while publishing"])
def test_a_killed_import_leaves_the_pool_as_it_was(db_url: str, moment: str) -> None:
    key = create_project(db_url)
    data = csv_lines(NEW)
    with serving(db_url) as (server, target), grpc.insecure_channel(target) as channel:
        stub = code_pb2_grpc.CodeServiceStub(channel)
        import_all(stub, key, OLD)
        sent, hold = threading.Event(), threading.Event()
        hold_after = len(data) // 2 if moment == "while streaming" else len(data)
        call = stub.ImportCodes.future(upload(data, sent, hold, hold_after), metadata=bearer(key))
        assert sent.wait(30)
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=20)
        hold.set()
        with pytest.raises(grpc.RpcError):
            call.result(timeout=30)

    with serving(db_url) as (_, target), grpc.insecure_channel(target) as channel:
        stub = code_pb2_grpc.CodeServiceStub(channel)
        after = live_codes(stub, key)
        if moment == "while streaming":
            assert after == set(OLD)
        else:  # killed before or after the commit: one set or the other, never a mix
            assert after in (set(OLD), set(NEW)), f"{len(after)} codes after the kill"
        import_all(stub, key, ["AGAIN-1"])
        assert live_codes(stub, key) == {"AGAIN-1"}
