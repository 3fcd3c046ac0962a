"""Code pools through a real server, on SQLite and PostgreSQL: import, generate, export,
get, list and update."""

from __future__ import annotations

import csv
import io
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2

from promo.v1 import code_pb2 as pb
from promo.v1 import code_pb2_grpc, profile_pb2, promotion_pb2, promotion_pb2_grpc
from promo_server.domain.codes import ImportSpec
from promo_server.domain.errors import Aborted
from promo_server.store.db import database
from promo_server.store.models import Code
from promo_server.usecases import codes as usecases
from tests.conftest import Project, Running, bearer
from tests.rpc import error_reason, field_violations, refused, violation_list

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
Spec = pb.ImportCodesRequest.Spec


def requests(spec: Spec | None, *chunks: bytes) -> Iterator[pb.ImportCodesRequest]:
    if spec is not None:
        yield pb.ImportCodesRequest(spec=spec)
    for chunk in chunks:
        yield pb.ImportCodesRequest(chunk=chunk)


@dataclass
class Api:
    codes: code_pb2_grpc.CodeServiceStub
    promotions: promotion_pb2_grpc.PromotionServiceStub
    key: str

    def promotion(self, external_id: str) -> str:
        self.promotions.CreatePromotion(
            promotion_pb2.CreatePromotionRequest(
                promotion=promotion_pb2.Promotion(external_id=external_id, name={"en-US": "P"})
            ),
            metadata=bearer(self.key),
        )
        return external_id

    def import_csv(
        self, data: bytes | Sequence[bytes], promotion: str = "", **spec: object
    ) -> pb.ImportCodesResponse:
        chunks = [data] if isinstance(data, bytes) else list(data)
        return self.codes.ImportCodes(
            requests(Spec(promotion=promotion, **spec), *chunks), metadata=bearer(self.key)
        )

    def export(self, promotion: str = "", state: int = 0) -> list[dict[str, str]]:
        data = b"".join(
            response.chunk
            for response in self.codes.ExportCodes(
                pb.ExportCodesRequest(promotion=promotion, filter=state),
                metadata=bearer(self.key),
            )
        )
        return list(csv.DictReader(io.StringIO(data.decode())))

    def pool(self, promotion: str = "", state: int = 0) -> set[str]:
        """The codes of a pool that are not retired (or those of ``state``)."""
        rows = self.export(promotion, state)
        return {r["code"] for r in rows if state or r["retired"] == "false"}

    def get(self, code: str) -> pb.Code:
        return self.codes.GetCode(pb.GetCodeRequest(code=code), metadata=bearer(self.key))

    def list(self, **fields: object) -> pb.ListCodesResponse:
        return self.codes.ListCodes(pb.ListCodesRequest(**fields), metadata=bearer(self.key))

    def update(self, code: pb.Code, *paths: str) -> pb.Code:
        return self.codes.UpdateCode(
            pb.UpdateCodeRequest(code=code, update_mask=field_mask_pb2.FieldMask(paths=paths)),
            metadata=bearer(self.key),
        )

    def generate(self, promotion: str, count: int, pattern: str) -> int:
        response = self.codes.GenerateCodes(
            pb.GenerateCodesRequest(promotion=promotion, count=count, pattern=pattern),
            metadata=bearer(self.key),
        )
        return response.generated


@pytest.fixture
def api(running: Running, project: Project) -> Iterator[Api]:
    with running.channel() as channel:
        yield Api(
            code_pb2_grpc.CodeServiceStub(channel),
            promotion_pb2_grpc.PromotionServiceStub(channel),
            project.admin_key,
        )


def hand_out(code: str) -> None:
    """Marks a code handed out, as attaching or redeeming it will."""
    database.connect(reuse_if_open=True)
    try:
        Code.update(hand_out_time=datetime(2026, 1, 1)).where(
            Code.code_key == code.lower()
        ).execute()
    finally:
        database.close()


def lines(*codes: str) -> bytes:
    return "".join(f"{c}\n" for c in codes).encode()


# --- reading CSV files -----------------------------------------------------------------


def test_a_messy_csv_imports_every_code_with_its_expiry(api: Api) -> None:
    promo = api.promotion("summer")
    data = (
        "\ufeffcode,expires\r\n"
        "SUMMER-1,2027-01-31T10:00:00Z\r\n"
        "\r\n"
        '"SUMMER-2",\r\n'
        '  SUMMER-3 , "2027-02-01T00:00:00+02:00"\r\n'
        "\n"
        "SUMMER-4"
    ).encode()
    # Chunks that split lines, the CRLF pair and the byte order mark.
    chunks = [data[i : i + 5] for i in range(0, len(data), 5)]
    default = timestamp_pb2.Timestamp()
    default.FromDatetime(datetime(2028, 1, 1))

    result = api.import_csv(chunks, promo, has_header=True, default_expire_time=default)

    assert (result.imported, result.duplicates, result.rejected) == (4, 0, 0)
    assert api.get("SUMMER-1").expire_time.ToDatetime() == datetime(2027, 1, 31, 10)
    assert api.get("summer-2").expire_time.ToDatetime() == datetime(2028, 1, 1)
    assert api.get("SUMMER-3").expire_time.ToDatetime() == datetime(2027, 1, 31, 22)
    assert api.get("SUMMER-4").promotion == "summer"


def test_codes_match_case_insensitively_and_keep_their_first_spelling(api: Api) -> None:
    result = api.import_csv(lines("Promo-A", "PROMO-a", "promo-b", "promo-a"))

    assert (result.imported, result.duplicates) == (2, 2)
    assert api.get("PROMO-A").code == "Promo-A"
    assert api.pool() == {"Promo-A", "promo-b"}


def test_an_export_imports_back_as_it_is(api: Api) -> None:
    first = api.promotion("first")
    api.import_csv(b"A1,2027-01-01T00:00:00Z\nA2\nA3\n", first)
    exported = b"".join(
        r.chunk
        for r in api.codes.ExportCodes(
            pb.ExportCodesRequest(promotion=first), metadata=bearer(api.key)
        )
    )
    second = api.promotion("second")
    refused(lambda: api.import_csv(lines("A1", "A2", "A3"), second, mode=Spec.APPEND), INVALID)
    assert api.pool(second) == set()

    api.codes.ImportCodes(
        requests(Spec(promotion=first, mode=Spec.REPLACE, has_header=True), exported),
        metadata=bearer(api.key),
    )

    rows = api.export(first)
    assert {r["code"]: r["expire_time"] for r in rows} == {
        "A1": "2027-01-01T00:00:00Z", "A2": "", "A3": ""
    }
    assert {r["retired"] for r in rows} == {"false"}


# --- replace and append ----------------------------------------------------------------


def test_replace_retires_the_codes_never_handed_out_and_append_adds(api: Api) -> None:
    promo = api.promotion("spring")
    api.import_csv(lines("OLD-1", "OLD-2", "KEEP-1", "GIVEN-1"), promo)
    hand_out("GIVEN-1")

    replaced = api.import_csv(lines("KEEP-1", "NEW-1", "NEW-2"), promo)

    assert (replaced.imported, replaced.duplicates, replaced.retired) == (2, 1, 2)
    assert api.pool(promo) == {"KEEP-1", "NEW-1", "NEW-2", "GIVEN-1"}
    assert api.get("OLD-1").retired
    assert not api.get("GIVEN-1").retired

    appended = api.import_csv(lines("NEW-1", "NEW-3", "OLD-1"), promo, mode=Spec.APPEND)

    assert (appended.imported, appended.duplicates, appended.retired) == (2, 1, 0)
    assert api.pool(promo) == {"KEEP-1", "NEW-1", "NEW-2", "NEW-3", "OLD-1", "GIVEN-1"}
    assert not api.get("OLD-1").retired


def test_a_code_of_another_pool_is_a_rejected_line(api: Api) -> None:
    api.import_csv(lines("GLOBAL-1"))
    promo = api.promotion("autumn")

    error = refused(lambda: api.import_csv(lines("AUTUMN-1", "global-1"), promo), INVALID)
    assert "line 2" in field_violations(error)["chunk"]
    assert "global pool" in field_violations(error)["chunk"]
    assert api.pool(promo) == set()

    result = api.import_csv(lines("AUTUMN-1", "global-1"), promo, skip_invalid=True)

    assert (result.imported, result.rejected) == (1, 1)
    assert [(e.line, e.text) for e in result.errors] == [(2, "global-1")]
    assert api.get("GLOBAL-1").promotion == ""


# --- bad input -------------------------------------------------------------------------


def test_bad_lines_fail_the_whole_import_and_change_nothing(api: Api) -> None:
    promo = api.promotion("winter")
    api.import_csv(lines("W-1", "W-2"), promo)

    error = refused(
        lambda: api.import_csv(b'W-3\nbad code!\nW-4,not-a-time\nW-5,a,b\n"W-6\n', promo), INVALID
    )

    assert [description.split(":")[0] for _, description in violation_list(error)] == [
        "line 2", "line 3", "line 4", "line 5"
    ]
    described = field_violations(error)["chunk"]
    assert "'bad code!'" in described and "RFC 3339" in described
    assert "3 columns" in described and "not closed" in described
    assert api.pool(promo) == {"W-1", "W-2"}  # the REPLACE retired nothing


def test_skip_invalid_imports_the_good_lines_and_lists_the_first_100_bad(api: Api) -> None:
    data = lines(*[f"ok-{i}" for i in range(50)], *[f"bad code {i}" for i in range(150)])

    result = api.import_csv(data, skip_invalid=True)

    assert (result.imported, result.rejected) == (50, 150)
    assert len(result.errors) == 100
    assert result.errors[0].line == 51
    assert result.errors[0].text == "bad code 0"
    assert "1..64 characters" in result.errors[0].reason
    assert len(api.pool()) == 50


@pytest.mark.parametrize(
    ("stream", "field", "words"),
    [
        ([b"x" * 5000 + b"\n"], "chunk", "longer than 4096 bytes"),
        ([b"A-1\nB-\xff\n"], "chunk", "line 2 is not UTF-8"),
        ([b"A-1\n", b"B" * 5000], "chunk", "line 2 is longer"),
    ],
)
def test_a_file_that_is_not_a_code_list_is_refused(
    api: Api, stream: list[bytes], field: str, words: str
) -> None:
    error = refused(lambda: api.import_csv(stream), INVALID)
    assert words in field_violations(error)[field]
    assert api.pool() == set()


def test_a_stream_must_start_with_one_spec(api: Api) -> None:
    no_spec = refused(
        lambda: api.codes.ImportCodes(requests(None, b"A\n"), metadata=bearer(api.key)), INVALID
    )
    assert "first message" in field_violations(no_spec)["spec"]
    twice = refused(
        lambda: api.codes.ImportCodes(
            iter([pb.ImportCodesRequest(spec=Spec()), pb.ImportCodesRequest(spec=Spec())]),
            metadata=bearer(api.key),
        ),
        INVALID,
    )
    assert "second spec" in field_violations(twice)["spec"]
    unknown = refused(lambda: api.import_csv(b"A\n", "no-such-promotion"), NOT_FOUND)
    assert "no-such-promotion" in unknown.details()
    mode = refused(lambda: api.import_csv(b"A\n", mode=7), INVALID)
    assert "spec.mode" in field_violations(mode)


CANCEL_ROUNDS = 30


def cancel_mid_stream(api: Api, promotion: str, chunk: bytes) -> grpc.Future:
    """A REPLACE import of ``chunk``, cancelled while the server waits for more."""
    sent = threading.Event()
    release = threading.Event()

    def slow() -> Iterator[pb.ImportCodesRequest]:
        yield pb.ImportCodesRequest(spec=Spec(promotion=promotion))
        yield pb.ImportCodesRequest(chunk=chunk)
        sent.set()
        release.wait(10)

    call = api.codes.ImportCodes.future(slow(), metadata=bearer(api.key))
    assert sent.wait(10)
    call.cancel()
    release.set()
    return call


def test_a_cancelled_import_changes_nothing(api: Api) -> None:
    promo = api.promotion("cancelled")
    api.import_csv(lines("C-1"), promo)

    call = cancel_mid_stream(api, promo, lines(*[f"N-{i}" for i in range(5000)]))

    assert call.cancelled()
    assert api.pool(promo) == {"C-1"}
    assert api.import_csv(lines("C-2"), promo, mode=Spec.APPEND).imported == 1


def test_a_cancelled_import_of_one_line_changes_nothing_either(api: Api) -> None:
    """A small import publishes in moments: the cancellation must be seen before that,
    though gRPC reports the stream's end first (a race seen once in 25 tries)."""
    promo = api.promotion("cancelled")
    api.import_csv(lines("C-1"), promo)
    for _ in range(CANCEL_ROUNDS):
        assert cancel_mid_stream(api, promo, lines("N-1")).cancelled()
        assert api.pool(promo) == {"C-1"}


# --- generate --------------------------------------------------------------------------


def test_generated_codes_follow_the_pattern_and_are_new_to_the_project(api: Api) -> None:
    promo = api.promotion("generated")
    api.import_csv(lines(*[f"SALE-{i:02}" for i in range(0, 100, 2)]))  # even ones taken

    assert api.generate(promo, 50, "sale-##") == 50
    assert api.generate(promo, 300, "X*?#-x") == 300

    pool = api.pool(promo)
    assert len(pool) == 350
    assert {c.upper() for c in pool if c.startswith("sale")} == {
        f"SALE-{i:02}" for i in range(1, 100, 2)
    }
    assert all(re.fullmatch(r"X[0-9A-Z][A-Z][0-9]-x", c) for c in pool if c.startswith("X"))


def test_generate_racing_attaches_of_unknown_codes_of_its_pattern_adds_only_new_ones(
    api: Api,
) -> None:
    """An AttachCode of an unknown code adds it to a pool without the pools' lock: a
    GenerateCodes drawing the same code once failed INTERNAL on its unique index."""
    drawn, attached = api.promotion("drawn"), api.promotion("attached")
    failures: list[str] = []
    generated = 0

    def attaching(round_: int) -> None:
        for i in range(100):
            try:
                api.codes.AttachCode(pb.AttachCodeRequest(
                    code=f"R{round_}{i:02d}", promotion=attached,
                    profile=profile_pb2.ProfileRef(profile_id=f"p{round_}-{i}")),
                    metadata=bearer(api.key))
            except grpc.RpcError as error:  # generated into the other pool first
                if error.code() != grpc.StatusCode.FAILED_PRECONDITION:
                    failures.append(f"attach {error.code().name}: {error.details()}")

    for round_ in range(6):
        attacher = threading.Thread(target=attaching, args=(round_,))
        attacher.start()
        for _ in range(5):
            try:
                generated += api.generate(drawn, 8, f"R{round_}##")
            except grpc.RpcError as error:
                failures.append(f"{error.code().name}: {error.details()}")
        attacher.join()

    assert failures == []
    pool = api.pool(drawn)
    assert len(pool) == generated == 6 * 5 * 8
    assert not pool & api.pool(attached)


def test_generate_refuses_what_the_pattern_cannot_give(api: Api) -> None:
    api.import_csv(lines(*[f"G-{i}" for i in range(10)]))

    crowded = refused(lambda: api.generate("", 6, "G#"), INVALID)
    assert "at most 5" in field_violations(crowded)["count"]
    taken = refused(lambda: api.generate("", 5, "G-#"), grpc.StatusCode.FAILED_PRECONDITION)
    assert "longer pattern" in taken.details()
    assert error_reason(taken) == ("promo.v1", "PATTERN_EXHAUSTED")
    for pattern, words in [("AB CD#", "literal"), ("ABC", "placeholder"), ("#" * 65, "1..64")]:
        error = refused(lambda p=pattern: api.generate("", 1, p), INVALID)
        assert words in field_violations(error)["pattern"]
    assert "count" in field_violations(refused(lambda: api.generate("", 0, "#####"), INVALID))
    assert len(api.pool()) == 10


# --- get, list, update -----------------------------------------------------------------


def test_update_changes_what_the_mask_names(api: Api) -> None:
    api.import_csv(lines("U-1"))
    expiry = timestamp_pb2.Timestamp(seconds=1_900_000_000)

    updated = api.update(pb.Code(code="u-1", active=False, expire_time=expiry), "active")

    assert not updated.active
    assert not updated.HasField("expire_time")
    updated = api.update(pb.Code(code="U-1", expire_time=expiry), "expire_time")
    assert updated.expire_time == expiry and not updated.active
    assert api.pool(state=pb.INACTIVE) == {"U-1"}
    cleared = api.update(pb.Code(code="U-1", active=True), "expire_time", "active")
    assert cleared.active and not cleared.HasField("expire_time")


def test_update_refuses_an_empty_or_unknown_mask(api: Api) -> None:
    api.import_csv(lines("U-2"))

    empty = refused(lambda: api.update(pb.Code(code="U-2", active=False)), INVALID)
    assert "expire_time, active" in field_violations(empty)["update_mask"]
    unknown = refused(lambda: api.update(pb.Code(code="U-2"), "colour"), INVALID)
    assert "update_mask.paths[0]" in field_violations(unknown)
    refused(lambda: api.update(pb.Code(code="NOPE"), "active"), NOT_FOUND)
    assert api.get("U-2").active


def test_list_pages_through_a_pool_by_state(api: Api) -> None:
    promo = api.promotion("listed")
    api.import_csv(lines(*[f"L-{i:02}" for i in range(25)]), promo)
    api.update(pb.Code(code="L-03"), "active")

    seen: list[str] = []
    token = ""
    while True:
        page = api.list(promotion=promo, filter=pb.AVAILABLE, page_size=10, page_token=token)
        seen += [c.code for c in page.codes]
        token = page.next_page_token
        if not token:
            break

    assert sorted(seen) == sorted(f"L-{i:02}" for i in range(25) if i != 3)
    assert [c.code for c in api.list(promotion=promo, filter=pb.INACTIVE).codes] == ["L-03"]
    assert api.list(filter=pb.AVAILABLE).codes == []  # the global pool is empty
    stale = refused(lambda: api.list(promotion=promo, page_token=page_token_of(api, promo)),
                    INVALID)
    assert "page_token" in field_violations(stale)


def page_token_of(api: Api, promo: str) -> str:
    """A token issued for another query (the AVAILABLE filter)."""
    return api.list(promotion=promo, filter=pb.AVAILABLE, page_size=1).next_page_token


def test_get_answers_not_found_across_projects(running: Running, api: Api) -> None:
    api.import_csv(lines("MINE-1"))
    other = running.new_project()
    with running.channel() as channel:
        theirs = Api(code_pb2_grpc.CodeServiceStub(channel),
                     promotion_pb2_grpc.PromotionServiceStub(channel), other.admin_key)
        refused(lambda: theirs.get("MINE-1"), NOT_FOUND)
        # Codes are unique per project: the other project may have its own MINE-1.
        assert theirs.import_csv(lines("MINE-1")).imported == 1


def test_read_keys_export_but_do_not_import(running: Running, project: Project) -> None:
    with running.channel() as channel:
        reader = Api(code_pb2_grpc.CodeServiceStub(channel),
                     promotion_pb2_grpc.PromotionServiceStub(channel), project.read_key)
        refused(lambda: reader.import_csv(lines("R-1")), grpc.StatusCode.PERMISSION_DENIED)
        assert reader.export() == []
        redeemer = Api(code_pb2_grpc.CodeServiceStub(channel),
                       promotion_pb2_grpc.PromotionServiceStub(channel), project.redeem_key)
        refused(redeemer.export, grpc.StatusCode.PERMISSION_DENIED)
        assert redeemer.list().codes == []


def test_export_writes_the_documented_header(api: Api) -> None:
    api.import_csv(lines("H-1"))
    data = b"".join(
        r.chunk
        for r in api.codes.ExportCodes(pb.ExportCodesRequest(), metadata=bearer(api.key))
    ).decode()
    header, row, end = data.split("\n")
    assert header == (
        "code,promotion,active,expire_time,retired,profile_id,attachment_count,"
        "redemption_count,create_time"
    )
    assert re.fullmatch(r"H-1,,true,,false,,0,0,\d{4}-\d\d-\d\dT[0-9:.]+Z", row)
    created = datetime.fromisoformat(row.rsplit(",", 1)[1].replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - created).total_seconds()) < 60
    assert end == ""


def test_export_quotes_a_holder_whose_id_holds_a_comma_or_a_quote(api: Api) -> None:
    single = api.promotion("single")
    api.promotions.UpdatePromotion(
        promotion_pb2.UpdatePromotionRequest(
            promotion=promotion_pb2.Promotion(external_id=single, redeem_code_limit=1),
            update_mask=field_mask_pb2.FieldMask(paths=["redeem_code_limit"]),
        ),
        metadata=bearer(api.key),
    )
    api.import_csv(lines("Q-1", "Q-2", "Q-3"), single)
    for code, holder in (("Q-1", "a,b"), ("Q-2", 'q"x'), ("Q-3", "plain")):
        api.codes.AttachCode(
            pb.AttachCodeRequest(code=code, promotion=single,
                                 profile=profile_pb2.ProfileRef(profile_id=holder)),
            metadata=bearer(api.key),
        )

    rows = api.export(single)

    assert {row["code"]: row["profile_id"] for row in rows} == {
        "Q-1": "a,b", "Q-2": 'q"x', "Q-3": "plain"
    }
    assert {len(row) for row in rows} == {9} and all(None not in row for row in rows)


def test_an_export_with_the_longest_ids_imports_back(api: Api) -> None:
    single = api.promotion("p" * 255)
    api.promotions.UpdatePromotion(
        promotion_pb2.UpdatePromotionRequest(
            promotion=promotion_pb2.Promotion(external_id=single, redeem_code_limit=1),
            update_mask=field_mask_pb2.FieldMask(paths=["redeem_code_limit"]),
        ),
        metadata=bearer(api.key),
    )
    longest = "C" * 64
    api.import_csv(lines(longest, "SHORT-1"), single)
    api.codes.AttachCode(  # 255 characters of 4 bytes each
        pb.AttachCodeRequest(code=longest, promotion=single,
                             profile=profile_pb2.ProfileRef(profile_id="\U0001F600" * 255)),
        metadata=bearer(api.key),
    )
    exported = b"".join(r.chunk for r in api.codes.ExportCodes(
        pb.ExportCodesRequest(promotion=single), metadata=bearer(api.key)))
    assert max(len(line) for line in exported.split(b"\n")) > 1024

    again = api.import_csv(exported, single, has_header=True)

    assert (again.imported, again.duplicates, again.rejected, again.retired) == (0, 2, 0, 0)


def test_generate_and_update_name_every_bad_field_at_once(api: Api) -> None:
    long_ago = timestamp_pb2.Timestamp(seconds=-10**12)
    generate = refused(lambda: api.codes.GenerateCodes(
        pb.GenerateCodesRequest(count=0, pattern="", expire_time=long_ago),
        metadata=bearer(api.key)), INVALID)
    assert set(field_violations(generate)) == {"expire_time", "count", "pattern"}

    update = refused(lambda: api.update(pb.Code(code="bad code!", expire_time=long_ago),
                                        "expire_time", "colour"), INVALID)
    assert set(field_violations(update)) == {
        "code.code", "code.expire_time", "update_mask.paths[1]"
    }
    # An expiry the mask does not name is not read, bad or not.
    api.import_csv(lines("U-3"))
    assert not api.update(pb.Code(code="U-3", active=False, expire_time=long_ago),
                          "active").active


@pytest.mark.parametrize("data", [b"", b"\n\r\n", b"code\n", b"bad code\n"])
def test_a_replace_without_any_code_is_refused_rather_than_emptying_the_pool(
    api: Api, data: bytes
) -> None:
    api.import_csv(lines("KEPT-1"))
    header = data == b"code\n"

    error = refused(
        lambda: api.import_csv(data, has_header=header, skip_invalid=True), INVALID
    )

    assert "retire the whole pool" in field_violations(error)["chunk"]
    assert api.pool() == {"KEPT-1"}
    appended = api.import_csv(data, mode=Spec.APPEND, has_header=header, skip_invalid=True)
    assert appended.imported == 0


def test_a_replace_of_nothing_but_other_pools_codes_is_refused_too(api: Api) -> None:
    first, second = api.promotion("first"), api.promotion("second")
    api.import_csv(lines("A-1", "A-2"), first)
    api.import_csv(lines("B-1", "B-2"), second)

    error = refused(lambda: api.import_csv(lines("A-1", "a-2"), second, skip_invalid=True),
                    INVALID)

    assert "every code of the file is in another pool" in field_violations(error)["chunk"]
    assert api.pool(second) == {"B-1", "B-2"}
    kept = api.import_csv(lines("A-1", "B-2"), second, skip_invalid=True)  # one of its own
    assert (kept.rejected, kept.retired) == (1, 1)
    assert api.pool(second) == {"B-2"}


def test_an_import_whose_caller_is_gone_before_the_commit_changes_nothing(
    api: Api, project: Project
) -> None:
    api.import_csv(lines("STAYS-1"))
    database.connect(reuse_if_open=True)
    try:
        with pytest.raises(Aborted):
            usecases.import_codes(
                project.id, ImportSpec(promotion="", mode="REPLACE"), [lines("GONE-1")],
                still_wanted=lambda: False,
            )
    finally:
        database.close()

    assert api.pool() == {"STAYS-1"}


def test_an_export_cancelled_half_way_leaves_the_server_serving(api: Api) -> None:
    promo = api.promotion("big")
    assert api.generate(promo, 20_000, "BIG-**********") == 20_000
    export = api.codes.ExportCodes(pb.ExportCodesRequest(promotion=promo),
                                   metadata=bearer(api.key))
    next(export)  # the first of several chunks
    export.cancel()

    for _ in range(3):
        assert len(api.export(promo)) == 20_000
    assert api.get(api.export(promo)[0]["code"]).code.startswith("BIG-")
