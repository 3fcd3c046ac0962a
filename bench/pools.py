"""Code pools: bulk ImportCodes, GenerateCodes and ExportCodes, against the database alone.

On each backend, in this order:

1. raw baselines of the same codes, no gRPC and no server (see ``bench.baselines``);
2. a fresh server and database: ImportCodes of the codes into a new promotion's
   pool (REPLACE, the default mode; 64 KiB chunks cut as a file reader cuts them,
   the CSV built before the clock starts), timed from the first message to the
   response; then ExportCodes of that pool, every chunk read;
3. a fresh server and database: GenerateCodes of as many codes;
4. with ``--big``, a fresh server and database: ImportCodes of five times as many,
   to see whether the server's memory grows with the file.

The server's peak RSS is taken over each call alone (see ``bench.memory``). The
codes are ``CODE-`` and 10 random upper-case hex digits, distinct.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import grpc

from bench import baselines, servers
from bench.databases import OPENERS, NewDatabase, Unavailable
from bench.memory import Memory, peak_rss
from bench.report import BASELINE, MB, Check, PoolRow
from bench.runner import CONNECT_TIMEOUT_SECONDS, metadata
from bench.scenarios import create_request
from promo.v1 import code_pb2, code_pb2_grpc, promotion_pb2_grpc

_LOGGER = logging.getLogger(__name__)

# The name ``--only`` matches to select this part.
NAME = "pools"
DEFAULT_CODES = 1_000_000
BIG_FACTOR = 5
CHUNK_BYTES = 64 * 1024
GENERATE_PATTERN = "BENCH-********"
CALL_TIMEOUT_SECONDS = 900.0

# Targets. Times are per million codes, so that a smaller --codes scales them.
MAX_IMPORT_RATIO = 1.0  # ImportCodes time / raw baseline time
MAX_GENERATE_SECONDS_PER_MILLION = 10.0
MAX_EXPORT_SECONDS_PER_MILLION = 5.0
MAX_RSS_BYTES = 200 * MB
# The big import's peak RSS against the normal one's: memory must not grow with the file.
MAX_BIG_RSS_RATIO = 1.25

Metadata = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Workload:
    """The codes, built before anything is timed."""

    codes: list[str]  # the normal import's, for the SQLite baselines
    csv: bytes  # the same, one a line (LF)
    big_csv: bytes | None  # BIG_FACTOR times as many (the first ones are ``codes``), or None

    @property
    def big_count(self) -> int:
        return len(self.codes) * BIG_FACTOR


def workload(count: int, big: bool) -> Workload:
    began = time.perf_counter()
    codes = make_codes(count * BIG_FACTOR if big else count)
    result = Workload(
        codes[:count], _csv(codes[:count]), _csv(codes) if big else None
    )
    _LOGGER.info("codes built count=%d big=%s seconds=%.1f",
                 count, big, time.perf_counter() - began)
    return result


def make_codes(count: int) -> list[str]:
    """``count`` distinct random codes like CODE-3FA94C01B2."""
    codes: dict[str, None] = {}
    while len(codes) < count:
        digits = os.urandom(5 * (count - len(codes))).hex().upper()
        codes.update(dict.fromkeys(f"CODE-{digits[i:i + 10]}" for i in range(0, len(digits), 10)))
    return list(codes)


def _csv(codes: list[str]) -> bytes:
    return ("\n".join(codes) + "\n").encode("ascii")


def run(backends: Sequence[str], work: Workload, rows: list[PoolRow], notes: list[str]) -> None:
    """Appends each row as it is measured, so an interrupted run keeps what it has."""
    for backend in backends:
        began = time.perf_counter()
        try:
            with OPENERS[backend]() as new_database:
                _run_backend(backend, new_database, work, rows)
        except Unavailable as error:
            _LOGGER.warning("%s", error)
            notes.append(f"!!! {error}")
            continue
        notes.append(f"code pools on {backend} took {time.perf_counter() - began:.0f} s")


def _run_backend(
    backend: str, new_database: NewDatabase, work: Workload, rows: list[PoolRow]
) -> None:
    count = len(work.codes)
    raw = _baselines(backend, new_database, work)
    rows.extend(PoolRow(backend, base.what, count, base.seconds, (Check(BASELINE, True),))
                for base in raw)

    with _server(new_database) as server:
        imported = _import(server, "bench-import", work.csv, count)
        rows.append(_import_row(backend, count, imported, raw))
        exported = _export(server, "bench-import", count)
        rows.append(_timed_row(backend, "ExportCodes", count, exported,
                               MAX_EXPORT_SECONDS_PER_MILLION))

    with _server(new_database) as server:
        generated = _generate(server, "bench-generate", count)
        rows.append(_timed_row(backend, f"GenerateCodes {GENERATE_PATTERN}", count, generated,
                               MAX_GENERATE_SECONDS_PER_MILLION))

    if work.big_csv is not None:
        with _server(new_database) as server:
            big = _import(server, "bench-import-big", work.big_csv, work.big_count)
        rows.append(_big_import_row(backend, work.big_count, big, imported))


@dataclass(frozen=True)
class Baseline:
    what: str  # the row's name
    short: str  # its name in the import's ratio
    seconds: float


def _baselines(backend: str, new_database: NewDatabase, work: Workload) -> list[Baseline]:
    _LOGGER.info("measuring raw baselines backend=%s codes=%d", backend, len(work.codes))
    if backend == "sqlite":
        cache = f"{baselines.IMPORT_CACHE_KIB // 1024} MiB"
        return [
            Baseline("raw sqlite3 executemany, default cache", "raw",
                     baselines.sqlite_executemany(new_database(), work.codes, None)),
            Baseline(f"raw sqlite3 executemany, {cache} cache", f"raw {cache}",
                     baselines.sqlite_executemany(
                         new_database(), work.codes, baselines.IMPORT_CACHE_KIB)),
        ]
    if backend == "postgresql":
        return [Baseline("raw psycopg2 COPY", "raw",
                         baselines.postgres_copy(new_database(), work.csv))]
    return []


@dataclass(frozen=True)
class Measured:
    """One call: how long it took (None: it failed), what the server held meanwhile."""

    seconds: float | None
    memory: Memory | None
    error: str | None = None


@dataclass(frozen=True)
class _Connected:
    """A fresh server and database, a channel to it, and its admin key as call metadata."""

    channel: grpc.Channel
    metadata: Metadata
    pid: int


@contextlib.contextmanager
def _server(new_database: NewDatabase) -> Iterator[_Connected]:
    with (
        servers.promo_server(new_database()) as running,
        grpc.insecure_channel(running.address) as channel,
    ):
        grpc.channel_ready_future(channel).result(timeout=CONNECT_TIMEOUT_SECONDS)
        yield _Connected(channel, metadata(running), running.pid)


def _timed(pid: int, call: Callable[[], str | None]) -> Measured:
    """Runs ``call`` on the clock and under the memory probe; it returns a problem or None."""
    with peak_rss(pid) as memory:
        began = time.perf_counter()
        try:
            problem = call()
        except grpc.RpcError as error:
            return Measured(None, memory, _describe(error))
        seconds = time.perf_counter() - began
    return Measured(seconds, memory, problem)


def _create_promotion(server: _Connected, external_id: str) -> Measured | None:
    """None, or the failure of the measurement that needed the promotion."""
    stub = promotion_pb2_grpc.PromotionServiceStub(server.channel)
    try:
        stub.CreatePromotion(
            create_request(external_id), metadata=server.metadata, timeout=CALL_TIMEOUT_SECONDS
        )
    except grpc.RpcError as error:
        return Measured(None, None, f"CreatePromotion {_describe(error)}")
    return None


def _import(server: _Connected, promotion: str, csv: bytes, count: int) -> Measured:
    """ImportCodes into a new promotion's pool; every code must be imported."""
    if failed := _create_promotion(server, promotion):
        return failed
    spec = code_pb2.ImportCodesRequest.Spec(
        promotion=promotion, mode=code_pb2.ImportCodesRequest.Spec.REPLACE
    )
    requests = [
        code_pb2.ImportCodesRequest(spec=spec),
        *(code_pb2.ImportCodesRequest(chunk=csv[i:i + CHUNK_BYTES])
          for i in range(0, len(csv), CHUNK_BYTES)),
    ]
    stub = code_pb2_grpc.CodeServiceStub(server.channel)

    def call() -> str | None:
        response = stub.ImportCodes(
            iter(requests), metadata=server.metadata, timeout=CALL_TIMEOUT_SECONDS
        )
        if response.imported == count:
            return None
        return (f"imported {response.imported:,} (duplicates {response.duplicates:,}, "
                f"rejected {response.rejected:,})")

    _LOGGER.info("measuring ImportCodes codes=%d bytes=%d", count, len(csv))
    return _timed(server.pid, call)


def _export(server: _Connected, promotion: str, count: int) -> Measured:
    """ExportCodes of a pool, every chunk read; the CSV must hold a header and each code."""
    stub = code_pb2_grpc.CodeServiceStub(server.channel)
    request = code_pb2.ExportCodesRequest(promotion=promotion)

    def call() -> str | None:
        size = lines = 0
        for response in stub.ExportCodes(
            request, metadata=server.metadata, timeout=CALL_TIMEOUT_SECONDS
        ):
            size += len(response.chunk)
            lines += response.chunk.count(b"\n")
        _LOGGER.info("exported bytes=%d lines=%d", size, lines)
        return None if lines == count + 1 else f"{lines:,} lines, not a header and {count:,}"

    _LOGGER.info("measuring ExportCodes codes=%d", count)
    return _timed(server.pid, call)


def _generate(server: _Connected, promotion: str, count: int) -> Measured:
    """GenerateCodes into a new promotion's pool."""
    if failed := _create_promotion(server, promotion):
        return failed
    stub = code_pb2_grpc.CodeServiceStub(server.channel)
    request = code_pb2.GenerateCodesRequest(
        promotion=promotion, count=count, pattern=GENERATE_PATTERN
    )

    def call() -> str | None:
        response = stub.GenerateCodes(
            request, metadata=server.metadata, timeout=CALL_TIMEOUT_SECONDS
        )
        return None if response.generated == count else f"generated {response.generated:,}"

    _LOGGER.info("measuring GenerateCodes codes=%d pattern=%s", count, GENERATE_PATTERN)
    return _timed(server.pid, call)


def _describe(error: grpc.RpcError) -> str:
    if isinstance(error, grpc.Call):
        return f"{error.code().name}: {error.details()}"
    return repr(error)


# Rows: each measurement against its targets.


def _row(backend: str, what: str, codes: int, measured: Measured,
         checks: tuple[Check, ...] = ()) -> PoolRow:
    memory, done = measured.memory, measured.seconds is not None
    return PoolRow(
        backend, what, codes, measured.seconds, checks if done else (), memory,
        memory.peak_bytes < MAX_RSS_BYTES if memory and done else None, measured.error,
    )


def _import_row(backend: str, count: int, measured: Measured, raw: list[Baseline]) -> PoolRow:
    checks = []
    if measured.seconds is not None:
        for base in raw:
            ratio = measured.seconds / base.seconds
            checks.append(Check(
                f"{_ratio(ratio, MAX_IMPORT_RATIO)}x {base.short} (<= {MAX_IMPORT_RATIO:.2f})",
                ratio <= MAX_IMPORT_RATIO,
            ))
    return _row(backend, "ImportCodes", count, measured, tuple(checks))


def _big_import_row(backend: str, count: int, measured: Measured, normal: Measured) -> PoolRow:
    checks: tuple[Check, ...] = ()
    if measured.memory and normal.memory and measured.seconds and normal.seconds:
        ratio = measured.memory.peak_bytes / normal.memory.peak_bytes
        checks = (Check(f"peak RSS {_ratio(ratio, MAX_BIG_RSS_RATIO)}x the "
                        f"{count // BIG_FACTOR:,} import's "
                        f"(<= {MAX_BIG_RSS_RATIO:.2f})", ratio <= MAX_BIG_RSS_RATIO),)
    return _row(backend, "ImportCodes", count, measured, checks)


def _timed_row(backend: str, what: str, count: int, measured: Measured,
               seconds_per_million: float) -> PoolRow:
    limit = seconds_per_million * count / 1_000_000
    checks: tuple[Check, ...] = ()
    if measured.seconds is not None:
        checks = (Check(f"< {limit:.1f} s", measured.seconds < limit),)
    return _row(backend, what, count, measured, checks)


def _ratio(ratio: float, limit: float) -> str:
    """Two decimals, or three where two would print a miss as the limit itself."""
    text = f"{ratio:.2f}"
    return f"{ratio:.3f}" if ratio > limit and float(text) <= limit else text
