"""PromoClient over code pools, against a real server on SQLite and PostgreSQL: importing a
CSV, exporting it back, generating, listing, reading and changing codes."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from concurrent import futures
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from promo import errors
from promo.client import PromoClient
from promo.v1 import code_pb2, code_pb2_grpc, promotion_pb2
from tests.conftest import Project, Running

PROMOTION = {
    "externalId": "summer-sale",
    "name": {"en-US": "Summer sale"},
    "discount": {"percent": "15.00"},
}


@pytest.fixture
def client(running: Running, project: Project) -> Iterator[PromoClient]:
    with PromoClient(running.target, project.admin_key) as client:
        client.create_promotion(PROMOTION)
        yield client


def write_codes(path: Path, codes: list[str]) -> Path:
    path.write_text("".join(f"{code}\n" for code in codes))
    return path


def exported(
    client: PromoClient, promotion: str = "summer-sale", filter: str | None = None
) -> list[dict[str, str]]:
    """The rows export_csv writes, by header name."""
    out = io.BytesIO()
    count = client.export_csv(out, promotion, filter=filter)
    rows = list(csv.DictReader(io.StringIO(out.getvalue().decode())))
    assert count == len(rows)
    return rows


def test_import_a_file_then_export_it_back(client: PromoClient, tmp_path: Path) -> None:
    codes = [f"SUMMER-{n:04d}" for n in range(300)]
    source = write_codes(tmp_path / "codes.csv", codes)

    response = client.import_csv(source, "summer-sale")

    assert (response.imported, response.duplicates, response.rejected) == (300, 0, 0)
    destination = tmp_path / "back.csv"
    assert client.export_csv(destination, "summer-sale") == 300
    with destination.open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert sorted(row["code"] for row in rows) == codes
    assert {row["promotion"] for row in rows} == {"summer-sale"}


def test_twenty_thousand_codes_stream_both_ways_with_progress(
    client: PromoClient, tmp_path: Path
) -> None:
    codes = [f"BULK-{n:06d}" for n in range(20_000)]
    source = write_codes(tmp_path / "codes.csv", codes)
    sent: list[int] = []
    received: list[tuple[int, int]] = []

    response = client.import_csv(source, "summer-sale", chunk_size=16 * 1024, progress=sent.append)
    count = client.export_csv(
        tmp_path / "back.csv", "summer-sale", progress=lambda b, n: received.append((b, n))
    )

    assert response.imported == 20_000
    size = source.stat().st_size
    assert len(sent) == -(-size // (16 * 1024))
    assert sent == sorted(set(sent)) and sent[-1] == size
    assert count == 20_000
    assert received == sorted(set(received))
    assert received[-1] == ((tmp_path / "back.csv").stat().st_size, 20_000)
    with (tmp_path / "back.csv").open(newline="") as file:
        assert sorted(row["code"] for row in csv.DictReader(file)) == codes


def test_an_export_imports_back_into_another_project(
    client: PromoClient, running: Running, tmp_path: Path
) -> None:
    client.import_csv(io.BytesIO(b"A-1,2031-01-01T00:00:00Z\nA-2\n"), "")
    back = tmp_path / "back.csv"
    client.export_csv(back)

    with PromoClient(running.target, running.new_project().admin_key) as other:
        response = other.import_csv(back, has_header=True)
        assert response.imported == 2
        assert other.get_code("a-1").expire_time.ToJsonString() == "2031-01-01T00:00:00Z"
        assert not other.get_code("A-2").HasField("expire_time")


def test_a_bad_line_refuses_the_whole_file(client: PromoClient) -> None:
    source = io.BytesIO(b"GOOD-1\nnot a code!\nGOOD-2\n")

    with pytest.raises(errors.InvalidArgument) as refused:
        client.import_csv(source, "summer-sale")

    [(field, why)] = refused.value.field_violations
    assert field == "chunk" and why.startswith("line 2: ")
    assert exported(client) == []


def test_skip_invalid_imports_the_good_lines_and_reports_the_bad(client: PromoClient) -> None:
    source = io.BytesIO(b"GOOD-1\nnot a code!\nGOOD-2\nGOOD-1\n")

    response = client.import_csv(source, "summer-sale", skip_invalid=True)

    assert (response.imported, response.duplicates, response.rejected) == (2, 1, 1)
    [error] = response.errors
    assert (error.line, error.text) == (2, "not a code!")
    assert error.reason
    assert sorted(row["code"] for row in exported(client)) == ["GOOD-1", "GOOD-2"]


def test_replace_retires_what_the_new_file_lacks_and_append_adds(client: PromoClient) -> None:
    client.import_csv(io.BytesIO(b"A\nB\n"), "summer-sale")

    replaced = client.import_csv(io.BytesIO(b"B\nC\n"), "summer-sale", mode="REPLACE")
    appended = client.import_csv(io.BytesIO(b"D\n"), "summer-sale", mode="append")

    assert (replaced.imported, replaced.retired) == (1, 1)
    assert (appended.imported, appended.retired) == (1, 0)
    assert client.get_code("a").retired
    available = exported(client, filter="Available")
    assert sorted(row["code"] for row in available) == ["B", "C", "D"]
    assert [row["code"] for row in exported(client, filter="retired")] == ["A"]


def test_header_and_a_naive_default_expiry_taken_as_utc(client: PromoClient) -> None:
    source = io.BytesIO(b"code,expire_time\nX-1,2030-05-01T10:00:00Z\nX-2\n")

    client.import_csv(
        source, "summer-sale", has_header=True, default_expire_time=datetime(2029, 1, 1, 12)
    )

    assert client.get_code("X-1").expire_time.ToJsonString() == "2030-05-01T10:00:00Z"
    assert client.get_code("X-2").expire_time.ToJsonString() == "2029-01-01T12:00:00Z"


class _BrokenFile:
    """A file whose second read fails, as a disk or a network mount may."""

    def __init__(self) -> None:
        self.reads = 0

    def read(self, size: int = -1, /) -> bytes:
        self.reads += 1
        if self.reads > 1:
            raise OSError(5, "Input/output error")
        return b"PART-1\nPART-2\n"


def test_a_file_that_fails_to_read_raises_its_error_and_imports_nothing(
    client: PromoClient,
) -> None:
    with pytest.raises(OSError, match="Input/output error"):
        client.import_csv(_BrokenFile(), "summer-sale")

    assert exported(client) == []


def test_a_failing_progress_callback_stops_the_import(client: PromoClient) -> None:
    def refuse(n_bytes: int) -> None:
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        client.import_csv(io.BytesIO(b"P-1\n" * 10), "summer-sale", chunk_size=8, progress=refuse)

    assert exported(client) == []


def test_a_failed_export_leaves_no_file(client: PromoClient, tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    kept = folder / "kept.csv"
    kept.write_text("earlier export\n")

    with pytest.raises(errors.NotFound):
        client.export_csv(folder / "new.csv", "no-such-promotion")
    with pytest.raises(errors.NotFound):
        client.export_csv(kept, "no-such-promotion")

    assert [path.name for path in folder.iterdir()] == ["kept.csv"]
    assert kept.read_text() == "earlier export\n"


def test_generate_then_list_and_get(client: PromoClient) -> None:
    generated = client.generate_codes("summer-sale", 25, "GEN-####-??")

    found = list(client.iter_codes(promotion="summer-sale", page_size=10))

    assert generated == 25
    assert len({code.code for code in found}) == 25
    assert all(re.fullmatch(r"GEN-\d{4}-[A-Za-z]{2}", code.code) for code in found)
    first = client.list_codes(promotion="summer-sale", page_size=10)
    assert len(first.codes) == 10 and first.next_page_token
    one = client.get_code(found[0].code.lower())
    assert one.code == found[0].code
    assert (one.promotion, one.active, one.retired) == ("summer-sale", True, False)


def test_generated_codes_take_the_expiry(client: PromoClient) -> None:
    client.generate_codes("", 3, "G-*****", expire_time=datetime(2030, 1, 1, tzinfo=UTC))

    codes = list(client.iter_codes())

    assert len(codes) == 3
    assert {code.expire_time.ToJsonString() for code in codes} == {"2030-01-01T00:00:00Z"}


def test_update_a_code(client: PromoClient) -> None:
    client.import_csv(io.BytesIO(b"U-1\nU-2\n"), "summer-sale")

    inactive = client.update_code("u-1", active=False)
    expiring = client.update_code("U-2", expire_time=datetime(2030, 1, 1, tzinfo=UTC))
    cleared = client.update_code("U-2", clear_expire_time=True)

    assert not inactive.active and not client.get_code("U-1").active
    assert expiring.active and expiring.expire_time.ToJsonString() == "2030-01-01T00:00:00Z"
    assert not cleared.HasField("expire_time")
    listed = client.list_codes(promotion="summer-sale", filter=code_pb2.INACTIVE)
    assert [code.code for code in listed.codes] == ["U-1"]


def test_update_with_nothing_to_change_is_refused_before_any_call(client: PromoClient) -> None:
    with pytest.raises(ValueError, match="nothing to change"):
        client.update_code("U-1")
    with pytest.raises(ValueError, match="not both"):
        client.update_code("U-1", expire_time=datetime(2030, 1, 1), clear_expire_time=True)


def test_an_unknown_code(client: PromoClient) -> None:
    with pytest.raises(errors.NotFound):
        client.get_code("NOPE")


class _QuotingExport(code_pb2_grpc.CodeServiceServicer):
    """Streams a CSV whose quoted fields hold line breaks, one byte a message."""

    CSV = (
        b"code,promotion,active,expire_time,retired,profile_id,attachment_count,"
        b"redemption_count,create_time\r\n"
        b'Q-1,p,true,,false,"line\nbreak",1,0,2026-01-01T00:00:00Z\r\n'
        b'Q-2,p,true,,false,"quote "" and\r\n, comma",1,0,2026-01-01T00:00:00Z\r\n'
        b"Q-3,p,true,,false,,0,0,2026-01-01T00:00:00Z"
    )

    def ExportCodes(
        self, request: code_pb2.ExportCodesRequest, context: grpc.ServicerContext
    ) -> Iterator[code_pb2.ExportCodesResponse]:
        for index in range(len(self.CSV)):
            yield code_pb2.ExportCodesResponse(chunk=self.CSV[index : index + 1])


def test_export_counts_records_not_line_breaks() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    code_pb2_grpc.add_CodeServiceServicer_to_server(_QuotingExport(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    out = io.BytesIO()
    try:
        with PromoClient(f"127.0.0.1:{port}", "k") as client:
            count = client.export_csv(out, "p")
    finally:
        server.stop(grace=None)

    assert out.getvalue() == _QuotingExport.CSV
    assert count == 3 == len(list(csv.DictReader(io.StringIO(out.getvalue().decode()))))


def test_an_import_from_a_file_opened_as_text_says_to_open_it_in_binary(
    client: PromoClient, tmp_path: Path
) -> None:
    source = write_codes(tmp_path / "codes.csv", ["T-1"])

    with open(source) as text, pytest.raises(TypeError, match="'rb'"):
        client.import_csv(text, "summer-sale")

    assert exported(client) == []


def test_an_update_mask_may_be_given_as_a_field_mask_text(client: PromoClient) -> None:
    updated = client.update_promotion(
        {"externalId": "summer-sale", "state": "INACTIVE", "redeemTotalLimit": "5"},
        "state,redeem_total_limit",
    )

    assert (updated.state, updated.redeem_total_limit) == (promotion_pb2.Promotion.INACTIVE, 5)
    assert updated.discount.percent == "15.00"  # not in the mask: kept
