"""The CSV reader of ImportCodes, as plain functions: what each line gives, whatever the chunks."""

from __future__ import annotations

import itertools
import string
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promo_server.domain.csvimport import MAX_LINE_BYTES, CodeCsvReader, Rows
from promo_server.domain.errors import InvalidArgument

BOM = "\ufeff".encode()
ELLIPSIS = "\u2026"
EXPORT_HEADER = (
    "code,promotion,active,expire_time,retired,profile_id,"
    "attachment_count,redemption_count,create_time"
)
CODE_CHARS = string.ascii_letters + string.digits + "_.-"
JAN_31 = datetime(2027, 1, 31)


def read_chunks(chunks: Iterable[bytes], *, has_header: bool = False) -> Rows:
    reader = CodeCsvReader(has_header=has_header)
    rows = Rows()
    for chunk in chunks:
        rows.extend(reader.feed(chunk))
    rows.extend(reader.finish())
    return rows


def read(data: bytes | str, *, has_header: bool = False) -> Rows:
    raw = data.encode() if isinstance(data, str) else data
    return read_chunks([raw], has_header=has_header)


def refusal(*chunks: bytes) -> str:
    """The description of the InvalidArgument that reading the chunks raises."""
    with pytest.raises(InvalidArgument) as raised:
        read_chunks(chunks)
    (violation,) = raised.value.violations
    assert violation.field == "chunk"
    return violation.description


def the_bad_line(rows: Rows) -> tuple[int, str, str]:
    assert rows.codes == []
    (bad,) = rows.bad
    return bad.line, bad.text, bad.reason


def quoted(text: str) -> str:
    """How a bad line's text is quoted back: at most 80 characters."""
    return text if len(text) <= 80 else text[:80] + ELLIPSIS


# ---------------------------------------------------------------- lines and line breaks


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_each_line_gives_one_code_numbered_from_1(newline: str) -> None:
    rows = read(newline.join(["A-1", "b_2", "C.3", ""]))

    assert rows.lines == [1, 2, 3]
    assert rows.codes == ["A-1", "b_2", "C.3"]
    assert rows.expire_times == [None, None, None]
    assert rows.bad == []
    assert not rows.dated


def test_lf_and_crlf_may_be_mixed_in_one_file() -> None:
    rows = read("A\r\nB\nC\r\n")

    assert rows.codes == ["A", "B", "C"]


@pytest.mark.parametrize("data", ["ABC\nDEF", "ABC\r\nDEF", "ABC\nDEF\r"])
def test_the_last_line_needs_no_line_break(data: str) -> None:
    reader = CodeCsvReader()

    fed = reader.feed(data.encode())
    finished = reader.finish()

    assert (fed.lines, fed.codes) == ([1], ["ABC"])
    assert (finished.lines, finished.codes) == ([2], ["DEF"])


def test_a_last_line_with_an_expiry_needs_no_line_break() -> None:
    rows = read("ABC,2027-01-31T00:00:00Z")

    assert rows.codes == ["ABC"]
    assert rows.expire_times == [JAN_31]


def test_blank_and_whitespace_only_lines_are_skipped_but_counted() -> None:
    rows = read("\nA\n   \n\t\nB\r\n\r\n \t \r\nC")

    assert rows.lines == [2, 5, 8]
    assert rows.codes == ["A", "B", "C"]
    assert rows.bad == []


def test_blanks_around_an_unquoted_code_are_dropped() -> None:
    rows = read(" A-1 \n\tB-2\t, \n")

    assert rows.codes == ["A-1", "B-2"]
    assert rows.expire_times == [None, None]


def test_an_empty_file_gives_nothing() -> None:
    assert read(b"") == Rows()


@pytest.mark.parametrize("has_header", [False, True])
def test_a_byte_order_mark_is_not_part_of_the_first_line(has_header: bool) -> None:
    header = "code,expire_time\n" if has_header else ""
    data = BOM + f"{header}ABC\nDEF,2027-01-31T00:00:00Z\n".encode()

    rows = read(data, has_header=has_header)

    assert rows.codes == ["ABC", "DEF"]
    assert rows.lines == [2, 3] if has_header else [1, 2]
    assert rows.expire_times == [None, JAN_31]


def test_a_byte_order_mark_does_not_hide_the_first_column_name() -> None:
    rows = read(BOM + b"expire_time,code\n2027-01-31T00:00:00Z,ABC\n", has_header=True)

    assert rows.codes == ["ABC"]
    assert rows.expire_times == [JAN_31]


def test_a_byte_order_mark_before_the_last_line_only_is_read() -> None:
    assert read(BOM + b"ABC").codes == ["ABC"]


# ---------------------------------------------------------------- RFC 4180 quoting


@pytest.mark.parametrize(
    ("line", "code", "expire_time"),
    [
        ('"A-1"', "A-1", None),
        ('  "A-1"  ', "A-1", None),
        ('\t"A-1"\t', "A-1", None),
        ('"A-1",', "A-1", None),
        ('"A-1",""', "A-1", None),
        ('"A-1","2027-01-31T00:00:00Z"', "A-1", JAN_31),
        ('  "A-1"  ,  "2027-01-31T00:00:00Z"  ', "A-1", JAN_31),
        ('A-1,"2027-01-31T00:00:00Z"', "A-1", JAN_31),
        ('"A-1",2027-01-31T00:00:00Z', "A-1", JAN_31),
    ],
)
def test_quoted_fields_follow_rfc_4180(line: str, code: str, expire_time: datetime | None) -> None:
    rows = read(line + "\n")

    assert rows.codes == [code]
    assert rows.expire_times == [expire_time]
    assert rows.bad == []


def test_a_doubled_quote_is_a_quote_so_the_code_is_bad() -> None:
    line, text, reason = the_bad_line(read('"A""B"\n'))

    assert (line, text) == (1, '"A""B"')
    assert "A-Z" in reason
    assert read('"AB"\n').codes == ["AB"]


def test_a_quoted_comma_is_part_of_the_code_not_a_column_break() -> None:
    _, _, reason = the_bad_line(read('"A,1",2027-01-31T00:00:00Z\n'))

    assert "A-Z" in reason
    assert "columns" not in reason


@pytest.mark.parametrize("line", ['"ABC', '"ABC,2027-01-31T00:00:00Z', 'ABC,"2027', '"A""'])
def test_a_quote_left_open_is_a_bad_line_and_the_next_line_still_reads(line: str) -> None:
    rows = read(f"{line}\nDEF\n")

    assert [(bad.line, bad.text) for bad in rows.bad] == [(1, line)]
    assert "not closed" in rows.bad[0].reason
    assert rows.lines == [2]
    assert rows.codes == ["DEF"]


@pytest.mark.parametrize("line", ['"ABC"D', '"ABC" D', '"ABC"x,2027-01-31T00:00:00Z'])
def test_text_after_a_closing_quote_is_a_bad_line(line: str) -> None:
    _, text, reason = the_bad_line(read(line + "\n"))

    assert text == line
    assert "after a closing quote" in reason


@pytest.mark.parametrize("line", ['AB"C', 'ABC"', 'ABC,2027"'])
def test_a_quote_inside_an_unquoted_field_is_a_bad_line(line: str) -> None:
    _, _, reason = the_bad_line(read(line + "\n"))

    assert "quote" in reason


def test_an_empty_quoted_code_is_a_bad_line() -> None:
    _, _, reason = the_bad_line(read('""\n'))

    assert "empty" in reason


# ---------------------------------------------------------------- columns and headers


@pytest.mark.parametrize("line", ["A,2027-01-31T00:00:00Z,x", "A,,", "A,B,C,D"])
def test_more_than_two_columns_without_a_header_is_a_bad_line(line: str) -> None:
    _, _, reason = the_bad_line(read(line + "\n"))

    assert "columns" in reason


def test_a_header_names_the_code_and_expiry_columns() -> None:
    rows = read("code,expire_time\nABC,2027-01-31T00:00:00Z\nDEF\n", has_header=True)

    assert rows.lines == [2, 3]
    assert rows.codes == ["ABC", "DEF"]
    assert rows.expire_times == [JAN_31, None]
    assert rows.bad == []


@pytest.mark.parametrize("header", ["code", "codes"])
def test_a_one_column_header_leaves_the_expiry_in_the_second_column(header: str) -> None:
    rows = read(f"{header}\nABC,2027-01-31T00:00:00Z\nDEF\nGHI,x,y\n", has_header=True)

    assert rows.codes == ["ABC", "DEF"]
    assert rows.expire_times == [JAN_31, None]
    assert [bad.line for bad in rows.bad] == [4]  # a third column is still too many


def test_header_names_ignore_case_and_blanks() -> None:
    rows = read(' Expire_Time , "CODE" \n2027-01-31T00:00:00Z,ABC\n', has_header=True)

    assert rows.codes == ["ABC"]
    assert rows.expire_times == [JAN_31]


def test_without_has_header_a_header_row_is_read_as_a_bad_code_line() -> None:
    rows = read("code,expire_time\nABC\n")

    assert [bad.line for bad in rows.bad] == [1]
    assert "RFC 3339" in rows.bad[0].reason
    assert rows.codes == ["ABC"]


def test_blank_lines_before_the_header_do_not_take_its_place() -> None:
    rows = read("\n\ncode,expire_time\nABC,2027-01-31T00:00:00Z\n", has_header=True)

    assert rows.lines == [4]
    assert rows.codes == ["ABC"]
    assert rows.bad == []


def test_a_reversed_two_column_header_swaps_the_columns() -> None:
    rows = read("expire_time,code\n2027-01-31T00:00:00Z,ABC\n,DEF\n", has_header=True)

    assert rows.codes == ["ABC", "DEF"]
    assert rows.expire_times == [JAN_31, None]


@pytest.mark.parametrize("same_chunk", [True, False], ids=["same-chunk", "later-chunk"])
def test_under_a_reversed_header_a_line_without_the_code_column_is_a_bad_line(
    same_chunk: bool,
) -> None:
    first, rest = b"expire_time,code\n2027-01-31T00:00:00Z,ABC\n", b"DEF\n"
    chunks = [first + rest] if same_chunk else [first, rest]

    rows = read_chunks(chunks, has_header=True)

    assert rows.codes == ["ABC"]
    assert [bad.line for bad in rows.bad] == [3]


def test_an_export_imports_back_with_its_codes_and_expiries() -> None:
    data = (
        f"{EXPORT_HEADER}\n"
        "ABC,summer,true,2027-01-31T00:00:00Z,false,,0,0,2026-01-01T00:00:00Z\n"
        "DEF,summer,false,,false,user-7,1,1,2026-01-02T00:00:00Z\r\n"
    )

    rows = read(data, has_header=True)

    assert rows.lines == [2, 3]
    assert rows.codes == ["ABC", "DEF"]
    assert rows.expire_times == [JAN_31, None]
    assert rows.bad == []


def test_columns_are_picked_by_name_in_any_order_among_others() -> None:
    data = "promotion,code,active,expire_time,note\nsummer,ABC,true,2027-01-31T00:00:00Z,x\n"

    rows = read(data, has_header=True)

    assert rows.codes == ["ABC"]
    assert rows.expire_times == [JAN_31]


@pytest.mark.parametrize("same_chunk", [True, False], ids=["same-chunk", "later-chunk"])
@pytest.mark.parametrize("line", ["GHI", "GHI,summer", "GHI,summer,true,,false,,0,0,x,extra"])
def test_a_header_of_more_than_two_columns_requires_that_many_on_each_line(
    line: str, same_chunk: bool
) -> None:
    header = f"{EXPORT_HEADER}\n".encode()
    chunks = [header + f"{line}\n".encode()] if same_chunk else [header, f"{line}\n".encode()]

    rows = read_chunks(chunks, has_header=True)

    assert rows.codes == []
    assert [bad.line for bad in rows.bad] == [2]
    assert "the header has 9" in rows.bad[0].reason


# ---------------------------------------------------------------- expiries


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2027-01-31T00:00:00Z", JAN_31),
        ("2027-01-31t00:00:00z", JAN_31),
        ("2027-01-31T02:00:00+02:00", JAN_31),
        ("2027-01-30T19:30:00-04:30", JAN_31),
        ("2027-01-01T01:00:00+05:00", datetime(2026, 12, 31, 20)),
        ("2027-01-31T00:00:00.250Z", JAN_31.replace(microsecond=250_000)),
        ("2027-01-31T00:00:00.123456789Z", JAN_31.replace(microsecond=123_456)),
        ("2027-01-31T02:00:00.5+02:00", JAN_31.replace(microsecond=500_000)),
        ("2027-01-30T19:30:00.000001-04:30", JAN_31.replace(microsecond=1)),
    ],
)
def test_an_expiry_is_read_as_naive_utc(text: str, moment: datetime) -> None:
    rows = read(f"ABC,{text}\n")

    assert rows.bad == []
    assert rows.expire_times == [moment]
    assert rows.dated


@pytest.mark.parametrize("line", ["ABC,", 'ABC,""', "ABC, ", "ABC"])
def test_an_empty_expiry_is_none(line: str) -> None:
    rows = read(line + "\n")

    assert rows.codes == ["ABC"]
    assert rows.expire_times == [None]
    assert not rows.dated


def test_rows_are_dated_when_any_line_gives_an_expiry() -> None:
    rows = read("A\nB,2027-01-31T00:00:00Z\nC\n")

    assert rows.expire_times == [None, JAN_31, None]
    assert rows.dated


@pytest.mark.parametrize(
    "expiry",
    [
        "tomorrow",
        "2027-01-31",
        "2027-01-31T00:00:00",
        "2027-01-31 00:00:00Z",
        "2027-02-30T00:00:00Z",
        "2027-01-31T24:00:00Z",
        "2027-01-31T00:00:00+0200",
        "1785456000",
    ],
)
def test_a_bad_expiry_is_a_bad_line_naming_rfc_3339(expiry: str) -> None:
    line, text, reason = the_bad_line(read(f"ABC,{expiry}\n"))

    assert (line, text) == (1, f"ABC,{expiry}")
    assert "RFC 3339" in reason


@pytest.mark.parametrize("expiry", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
def test_an_expiry_whose_utc_time_is_out_of_range_is_a_bad_line(expiry: str) -> None:
    line, text, _ = the_bad_line(read(f"ABC,{expiry}\n"))

    assert (line, text) == (1, f"ABC,{expiry}")


# ---------------------------------------------------------------- what a code may be


@pytest.mark.parametrize(("length", "accepted"), [(1, True), (64, True), (65, False)])
def test_a_code_is_1_to_64_characters(length: int, accepted: bool) -> None:
    code = ("Ab9_.-" * 11)[:length]

    rows = read(f"{code}\n{code},2027-01-31T00:00:00Z\n")

    assert rows.codes == ([code, code] if accepted else [])
    assert len(rows.bad) == (0 if accepted else 2)


@pytest.mark.parametrize(
    "code", ["ÄBC", "ABé", "AB C", "AB!C", "A/B", "A+B", "\uff21BC", "\u0663\u0664", "A\u200bB"]
)
def test_a_code_outside_the_ascii_alphabet_is_a_bad_line(code: str) -> None:
    line, text, reason = the_bad_line(read(f"{code}\n"))

    assert (line, text) == (1, code)
    assert "A-Z" in reason


@pytest.mark.parametrize(
    ("line", "text"),
    [
        ("!" * 80, "!" * 80),
        ("!" * 81, "!" * 80 + ELLIPSIS),
        ("!" * 500, "!" * 80 + ELLIPSIS),
        ("Ä" * 300, "Ä" * 80 + ELLIPSIS),
    ],
)
def test_a_bad_line_is_quoted_back_to_at_most_80_characters(line: str, text: str) -> None:
    _, quoted_text, reason = the_bad_line(read(line + "\n"))

    assert quoted_text == text
    assert len(reason) < 250


# ---------------------------------------------------------------- lines too long


@pytest.mark.parametrize("line", ["X" * MAX_LINE_BYTES, "é" * (MAX_LINE_BYTES // 2)])
def test_a_line_of_exactly_the_limit_is_only_a_bad_line(line: str) -> None:
    number, _, _ = the_bad_line(read(f"{line}\n"))

    assert number == 1


@pytest.mark.parametrize("line", ["X" * (MAX_LINE_BYTES + 1), "é" * (MAX_LINE_BYTES // 2) + "a"])
def test_a_complete_line_over_the_limit_is_refused_with_its_number(line: str) -> None:
    description = refusal(f"A\n\nB\n{line}\nC\n".encode())

    assert "line 4 " in description
    assert f"{MAX_LINE_BYTES} bytes" in description


def test_an_unfinished_line_over_the_limit_is_refused_before_it_ends() -> None:
    reader = CodeCsvReader()

    with pytest.raises(InvalidArgument) as raised:
        # Beyond the limit and the 4 bytes a BOM and a CR may add to a line.
        reader.feed(b"A\r\nB\n" + b"X" * (MAX_LINE_BYTES + 5))

    assert "line 3 " in raised.value.violations[0].description


def test_an_unfinished_line_growing_over_many_chunks_is_refused_once_too_long() -> None:
    reader = CodeCsvReader()
    reader.feed(b"A\n\n")
    for _ in range(MAX_LINE_BYTES // 128):
        reader.feed(b"X" * 128)

    reader.feed(b"XXXX")  # a BOM and a CR may still follow: not too long yet

    with pytest.raises(InvalidArgument) as raised:
        reader.feed(b"X")

    assert "line 3 " in raised.value.violations[0].description


def test_a_last_line_over_the_limit_without_a_line_break_is_refused() -> None:
    half = b"X" * (MAX_LINE_BYTES // 2 + 100)
    assert "line 2 " in refusal(b"A\n", half, half)


def test_a_line_of_the_limit_is_not_refused_when_a_chunk_ends_between_its_cr_and_lf() -> None:
    rows = read_chunks([b"A\r\n" + b"X" * MAX_LINE_BYTES + b"\r", b"\nB\r\n"])

    assert rows.codes == ["A", "B"]
    assert [bad.line for bad in rows.bad] == [2]


def test_a_first_line_of_the_limit_is_not_refused_for_its_byte_order_mark() -> None:
    rows = read_chunks([BOM + b"X" * MAX_LINE_BYTES, b"\nB\n"])

    assert rows.codes == ["B"]
    assert [bad.line for bad in rows.bad] == [1]


# ---------------------------------------------------------------- UTF-8


@pytest.mark.parametrize(
    ("chunks", "line"),
    [
        ([b"A\nB\n\xff\n"], 3),
        ([b"\xffA\n"], 1),
        ([b"A\n\xc3("], 2),
        ([b"A\nB\n", b"C\xe9\n"], 3),
        ([b"A\n\xc3", b"B\n"], 2),
        ([b"A\n", b"B,2027-01-31T00:00:00Z\r\n", "ÄBC\n".encode("latin-1")], 3),
        ([b"A\n\xed\xa0\x80\n"], 2),
        ([b"\xef\xbb\n"], 1),
    ],
)
def test_bytes_that_are_not_utf8_are_refused_naming_their_line(
    chunks: list[bytes], line: int
) -> None:
    description = refusal(*chunks)

    assert f"line {line} " in description
    assert "UTF-8" in description


def test_a_character_split_across_chunks_is_read_whole() -> None:
    data = "ÄBC,😀\nDEF\n日本\r\nGHI".encode()

    for cut in range(len(data) + 1):
        assert read_chunks([data[:cut], data[cut:]]) == read(data), cut


def test_byte_by_byte_and_empty_chunks_read_like_one_chunk() -> None:
    text = (
        'code,expire_time\r\n"A-1",2027-01-31T02:00:00+02:00\r\n\r\n  \nÄBC\n"open\n'
        "B,,\nC\nD,2027-01-31T00:00:00Z"
    )
    data = BOM + text.encode()
    chunks = [piece for byte in data for piece in (data[:0], bytes([byte]))]

    assert read_chunks(chunks, has_header=True) == read(data, has_header=True)


# ---------------------------------------------------------------- properties


@dataclass(frozen=True)
class Line:
    """A line of a generated file and what the reader should make of it."""

    text: str
    code: str | None = None  # None: blank or bad
    expire_time: datetime | None = None
    bad: bool = False


CODES = st.text(CODE_CHARS, min_size=1, max_size=64)
MOMENTS = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2999, 12, 31))
# Offsets in minutes; None writes Z.
OFFSETS = st.none() | st.integers(-(23 * 60 + 59), 23 * 60 + 59)
BLANKS = st.text(" \t", max_size=3)


@st.composite
def expiries(draw: st.DrawFn) -> tuple[str, datetime]:
    """An RFC 3339 time and the naive UTC time it names."""
    local, offset = draw(MOMENTS), draw(OFFSETS)
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    if local.microsecond:
        text += f".{local.microsecond:06d}"
    if offset is None:
        return text + "Z", local
    sign = "-" if offset < 0 else "+"
    hours, minutes = divmod(abs(offset), 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}", local - timedelta(minutes=offset)


@st.composite
def good_lines(draw: st.DrawFn) -> Line:
    code = draw(CODES)
    kind = draw(st.sampled_from(["bare", "padded", "comma", "dated", "quoted", "quoted-dated"]))
    if kind == "bare":
        return Line(code, code)
    if kind == "padded":
        return Line(f"{draw(BLANKS)}{code}{draw(BLANKS)}", code)
    if kind == "comma":
        return Line(f"{code},", code)
    text, moment = draw(expiries())
    if kind == "dated":
        return Line(f"{code},{text}", code, moment)
    if kind == "quoted":
        return Line(f'{draw(BLANKS)}"{code}"{draw(BLANKS)}', code)
    return Line(f'"{code}",{draw(BLANKS)}"{text}"', code, moment)


ILLEGAL = st.sampled_from([" ", "!", "/", "Ä", "é", "日本", "😀", "\u00a0", '""'])
BAD_TEXTS = st.one_of(
    st.text(CODE_CHARS, min_size=65, max_size=120),
    st.builds(lambda a, x, b: f"{a}{x}{b}", CODES, ILLEGAL, CODES),
    st.builds(lambda a, x, b: f'"{a}{x}{b}"', CODES, ILLEGAL, CODES),
    CODES.map(lambda code: f"{code},,x"),
    CODES.map(lambda code: f'"{code}'),
    CODES.map(lambda code: f'"{code}"x'),
    st.builds(lambda code, junk: f"{code},{junk}", CODES, st.sampled_from(["x", "2027-01-31"])),
    st.sampled_from(["日本語", "ÄBC,😀", "ÅÄÖ,2027-01-31T00:00:00Z"]),
    # At the length limit, in one-byte and in two-byte characters: a few bytes
    # short of it leave room for a BOM or the CR of a CRLF.
    st.integers(MAX_LINE_BYTES - 4, MAX_LINE_BYTES).map(lambda n: "X" * n),
    st.integers(MAX_LINE_BYTES // 2 - 2, MAX_LINE_BYTES // 2).map(lambda n: "é" * n),
)
LINES = st.one_of(
    good_lines(),
    good_lines(),
    BLANKS.map(Line),
    BAD_TEXTS.map(lambda text: Line(text, bad=True)),
)


@dataclass(frozen=True)
class CsvFile:
    data: bytes
    has_header: bool
    lines: list[Line]  # the lines after the header
    first: int  # the number of the first of those lines


@st.composite
def csv_files(draw: st.DrawFn, headers: list[str | None]) -> CsvFile:
    header = draw(st.sampled_from(headers))
    lines = draw(st.lists(LINES, max_size=20))
    texts = ([] if header is None else [header]) + [line.text for line in lines]
    endings = [draw(st.sampled_from(["\n", "\r\n"])) for _ in texts]
    if texts and not draw(st.booleans()):
        endings[-1] = ""
    text = "".join(line + end for line, end in zip(texts, endings, strict=True))
    bom = BOM if draw(st.booleans()) else b""
    return CsvFile(bom + text.encode(), header is not None, lines, 1 if header is None else 2)


@st.composite
def chunkings(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """The bytes cut anywhere: random cuts (repeats make empty chunks), a run of
    one-byte chunks, and cuts just before some line feeds (between CR and LF)."""
    size = len(data)
    cuts = draw(st.lists(st.integers(0, size), max_size=30))
    start = draw(st.integers(0, size))
    cuts += range(start, min(size, start + draw(st.integers(0, 40))))
    feeds = [at for at, byte in enumerate(data) if byte == ord("\n")]
    if feeds:
        cuts += draw(st.lists(st.sampled_from(feeds), max_size=10))
    edges = [0, *sorted(cuts), size]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@settings(max_examples=200, deadline=None)
@given(
    file=csv_files([None, "code,expire_time", "expire_time,code", "code", EXPORT_HEADER]),
    data=st.data(),
)
def test_any_chunking_reads_like_one_chunk(file: CsvFile, data: st.DataObject) -> None:
    whole = read(file.data, has_header=file.has_header)

    chunks = data.draw(chunkings(file.data))

    assert b"".join(chunks) == file.data
    assert read_chunks(chunks, has_header=file.has_header) == whole


@settings(max_examples=200, deadline=None)
@given(file=csv_files([None, "code,expire_time"]))
def test_every_good_line_gives_its_code_and_expiry_and_every_bad_line_is_reported(
    file: CsvFile,
) -> None:
    rows = read(file.data, has_header=file.has_header)

    numbered = list(enumerate(file.lines, start=file.first))
    good = [(number, line) for number, line in numbered if line.code is not None]
    assert rows.lines == [number for number, _ in good]
    assert rows.codes == [line.code for _, line in good]
    assert rows.expire_times == [line.expire_time for _, line in good]
    assert rows.dated == any(line.expire_time for _, line in good)
    expected_bad = [(number, quoted(line.text)) for number, line in numbered if line.bad]
    assert [(bad.line, bad.text) for bad in rows.bad] == expected_bad


RAW_LINES = st.tuples(
    st.integers(0, 70) | st.integers(MAX_LINE_BYTES - 4, MAX_LINE_BYTES + 4),
    st.sampled_from([b"\n", b"\r\n"]),
)


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(RAW_LINES, min_size=1, max_size=8),
    bom=st.booleans(),
    data=st.data(),
)
def test_the_reader_holds_at_most_one_line_and_refuses_only_lines_too_long(
    lines: list[tuple[int, bytes]], bom: bool, data: st.DataObject
) -> None:
    raw = (BOM if bom else b"") + b"".join(b"x" * length + end for length, end in lines)
    too_long = [number for number, (length, _) in enumerate(lines, 1) if length > MAX_LINE_BYTES]
    reader = CodeCsvReader()

    try:
        for chunk in data.draw(chunkings(raw)):
            reader.feed(chunk)
            # A line's own bytes, plus room for a BOM before line 1 and the CR of a CRLF.
            assert len(reader._rest) <= MAX_LINE_BYTES + len(BOM) + 1
        reader.finish()
    except InvalidArgument as error:
        assert too_long, f"refused a file whose lines all fit: {error}"
        named = int(error.violations[0].description.split()[1])
        assert named in too_long
    else:
        assert not too_long
