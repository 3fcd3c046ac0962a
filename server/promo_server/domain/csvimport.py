"""Reads a CSV of codes as it arrives, chunk by chunk, in memory bounded by one chunk.

The first column is the code; an optional second column is its expiry
(RFC 3339). A header row may name the columns ``code`` and ``expire_time``
in any place among others, so that an export of ``ExportCodes`` imports back
as it is. RFC 4180 quoting, CRLF or LF,
a UTF-8 byte order mark and blank lines are accepted. A quoted field must close
on its line: no code or time contains a line break, so a field that spans
lines is a mistake, reported on its own line instead of swallowing the rest.

Lines are numbered from 1 as an editor shows them, counting the header and
blank lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from promo_server.domain.errors import InvalidArgument
from promo_server.domain.values import CODE, parse_rfc3339

# Above the longest line ExportCodes writes (a 64-character code, a 255-character
# promotion id and a profile_id of up to 255 characters of up to 4 bytes each, times
# and counts: about 1.5 KB), so that an export always imports back.
MAX_LINE_BYTES = 4096
# How much of a bad line an error quotes.
QUOTED_TEXT = 80
CODE_RULE = "a code is 1..64 characters of A-Z, a-z, 0-9, '_', '.' and '-'"

_BOM = "\ufeff"
# Bytes an unfinished line may hold beyond the limit: the byte order mark and
# the CR of a CRLF, which do not count towards a line's length.
_LINE_SLACK = 4
# A block of complete lines that are all one bare, valid code: the common case,
# read without looking at each line in Python.
_PLAIN_BLOCK = re.compile(r"(?:[A-Za-z0-9_.-]{1,64}\r?\n)*")


@dataclass(frozen=True)
class BadLine:
    line: int
    text: str
    reason: str


@dataclass
class Rows:
    """Codes read from some lines, in file order, and the lines refused."""

    lines: list[int] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)
    # None: the line gave no expiry (the import's default applies).
    expire_times: list[datetime | None] = field(default_factory=list)
    bad: list[BadLine] = field(default_factory=list)
    dated: bool = False  # some line gave an expiry

    def __len__(self) -> int:
        return len(self.codes)

    def extend(self, other: Rows) -> None:
        self.lines += other.lines
        self.codes += other.codes
        self.expire_times += other.expire_times
        self.bad += other.bad
        self.dated |= other.dated


class CodeCsvReader:
    """Feed it the file's bytes in chunks of any size; each call returns the rows completed.

    Bytes that are not UTF-8 and lines longer than ``MAX_LINE_BYTES`` raise
    InvalidArgument: such a file is not a list of codes, and refusing it keeps
    the buffer bounded.
    """

    def __init__(self, *, has_header: bool = False) -> None:
        self._header_pending = has_header
        self._rest = b""
        self._next_line = 1
        self._started = False
        self._code_column = 0
        self._expire_column: int | None = 1
        self._max_columns = 2
        self._exact_columns = False  # a wide header: every line has its columns

    def feed(self, chunk: bytes) -> Rows:
        data = self._rest + chunk if self._rest else chunk
        end = data.rfind(b"\n") + 1
        self._rest = data[end:]
        if len(self._rest) > MAX_LINE_BYTES + _LINE_SLACK:
            self._too_long(self._next_line + data.count(b"\n", 0, end))
        return self._read_lines(data[:end]) if end else Rows()

    def finish(self) -> Rows:
        """The rows of a last line without a line break, if any."""
        rest, self._rest = self._rest, b""
        return self._read_lines(rest + b"\n") if rest else Rows()

    def _read_lines(self, block: bytes) -> Rows:
        first = self._next_line
        self._next_line += block.count(b"\n")
        text = self._decode(block, first)
        if not self._started:
            self._started = True
            text = text.removeprefix(_BOM)
        if self._plain_layout() and _PLAIN_BLOCK.fullmatch(text):
            codes = (text.replace("\r", "") if "\r" in text else text).split("\n")
            codes.pop()  # the empty string after the last line break
            return Rows(list(range(first, first + len(codes))), codes, [None] * len(codes))
        rows = Rows()
        for number, line in enumerate(text.split("\n")[:-1], start=first):
            self._read_line(number, line.removesuffix("\r"), rows)
        return rows

    def _plain_layout(self) -> bool:
        """Whether a line holding only a code is read as it stands."""
        return not self._header_pending and self._code_column == 0 and not self._exact_columns

    def _decode(self, block: bytes, first: int) -> str:
        try:
            return block.decode("utf-8")
        except UnicodeDecodeError as error:
            line = first + block.count(b"\n", 0, error.start)
            raise InvalidArgument.field(
                "chunk", f"line {line} is not UTF-8 text: save the file as UTF-8 (or ASCII)"
            ) from None

    def _too_long(self, line: int) -> None:
        raise InvalidArgument.field(
            "chunk",
            f"line {line} is longer than {MAX_LINE_BYTES} bytes: "
            "a line holds one code and an optional expiry",
        )

    def _read_line(self, number: int, line: str, rows: Rows) -> None:
        if len(line) * 4 > MAX_LINE_BYTES and len(line.encode()) > MAX_LINE_BYTES:
            self._too_long(number)
        if not line.strip():
            return
        try:
            fields = split_fields(line)
        except ValueError as error:
            self._header_pending = False
            rows.bad.append(_bad(number, line, str(error)))
            return
        if self._header_pending:
            self._header_pending = False
            self._read_header(fields)
            return
        problem = self._read_fields(fields, rows)
        if problem is None:
            rows.lines.append(number)
        else:
            rows.bad.append(_bad(number, line, problem))

    def _read_header(self, fields: list[str]) -> None:
        """Picks the columns: ``code`` (else the first) and ``expire_time`` (else the
        other column of a two-column file, or the second after a one-column header:
        a header naming only the code leaves the optional expiry where it is).

        Lines may leave out trailing empty columns of a header of one or two
        columns; under a wider header (an export's) each line has them all.
        """
        names = [name.strip().lower() for name in fields]
        if len(names) == 1:
            names.append("expire_time")
        self._code_column = names.index("code") if "code" in names else 0
        if "expire_time" in names:
            self._expire_column = names.index("expire_time")
        else:
            self._expire_column = 1 - self._code_column if len(names) == 2 else None
        self._max_columns = len(names)
        self._exact_columns = len(names) > 2

    def _read_fields(self, fields: list[str], rows: Rows) -> str | None:
        """Appends the line's code and expiry to ``rows``, or says what is wrong."""
        if self._exact_columns and len(fields) != self._max_columns:
            return f"has {len(fields)} columns, the header has {self._max_columns}"
        if len(fields) > self._max_columns:
            return (
                f"has {len(fields)} columns: expected the code and an optional expiry"
                if self._max_columns == 2
                else f"has {len(fields)} columns, the header has {self._max_columns}"
            )
        if self._code_column >= len(fields):
            column = self._code_column + 1
            return f"has {len(fields)} column: the header puts the code in column {column}"
        code = fields[self._code_column]
        if not CODE.fullmatch(code):
            return CODE_RULE if code else "the code is empty"
        expire_time = None
        if self._expire_column is not None and self._expire_column < len(fields):
            text = fields[self._expire_column]
            if text:
                moment = parse_rfc3339(text)
                if moment is None:
                    return (
                        f"the expiry {_cut(text)!r} is not an RFC 3339 time "
                        "(2027-01-31T00:00:00Z) within the years 1..9999"
                    )
                expire_time = moment.astimezone(UTC).replace(tzinfo=None)
        rows.codes.append(code)
        rows.expire_times.append(expire_time)
        rows.dated |= expire_time is not None
        return None


def split_fields(line: str) -> list[str]:
    """The fields of one CSV line (RFC 4180 quoting); unquoted fields lose surrounding blanks."""
    if '"' not in line:
        return [part.strip() for part in line.split(",")]
    fields: list[str] = []
    at, end = 0, len(line)
    while True:
        start = at
        while at < end and line[at] in " \t":
            at += 1
        if at < end and line[at] == '"':
            value, at = _quoted(line, at + 1)
            while at < end and line[at] in " \t":
                at += 1
            if at < end and line[at] != ",":
                raise ValueError("text after a closing quote (write a quote inside quotes as \"\")")
        else:
            comma = line.find(",", start)
            at = end if comma < 0 else comma
            value = line[start:at].strip()
            if '"' in value:
                raise ValueError("a quote inside an unquoted field")
        fields.append(value)
        if at >= end:
            return fields
        at += 1  # past the comma
        if at == end:
            fields.append("")
            return fields


def _quoted(line: str, at: int) -> tuple[str, int]:
    """The value of a quoted field whose text starts at ``at``, and where it ends."""
    parts = []
    while True:
        close = line.find('"', at)
        if close < 0:
            raise ValueError("a quoted field is not closed on its line")
        parts.append(line[at:close])
        if line.startswith('"', close + 1):
            parts.append('"')
            at = close + 2
        else:
            return "".join(parts), close + 1


def _cut(text: str) -> str:
    return text if len(text) <= QUOTED_TEXT else text[:QUOTED_TEXT] + "…"


def _bad(number: int, line: str, reason: str) -> BadLine:
    return BadLine(number, _cut(line), reason)
