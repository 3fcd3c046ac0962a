"""Code pool use cases: import, generate, export, get, list and update codes."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime

from peewee import IntegrityError

from promo_server import metrics
from promo_server.domain import codes as domain
from promo_server.domain import pagination, patterns
from promo_server.domain.csvimport import BadLine, CodeCsvReader, Rows
from promo_server.domain.errors import (
    Aborted,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    Violations,
)
from promo_server.store import audit, imports, profiles
from promo_server.store import codes as store
from promo_server.store.db import database, is_sqlite, utcnow, write_transaction

_LOGGER = logging.getLogger(__name__)

REPORTED_ERRORS = 100
# Bad lines named by a failed import: its status travels in trailers, which
# clients cap at 8 KiB.
FAILED_LINES_NAMED = 10
# Codes generated and staged per round: bounds memory for any count.
GENERATE_BATCH = 200_000
# Rounds in a row that found no new code before generation gives up.
GENERATE_STALLS = 20
# Draws per code still needed, at most, when most draws collide.
MIN_HIT_RATE = 1 / 64
# Publishes of one round that may meet a code added meanwhile before generation gives up.
GENERATE_RACES = 5
EXPORT_CHUNK_BYTES = 64 * 1024


def import_codes(
    project_id: int,
    spec: domain.ImportSpec,
    chunks: Iterable[bytes],
    still_wanted: Callable[[], bool],
) -> domain.ImportResult:
    """Reads a CSV stream into the pool; the pool changes only if the stream ends well.

    ``still_wanted`` is asked just before the pool changes: a caller that gave
    up (cancelled, deadline passed) gets nothing changed.
    """
    store.pool(project_id, spec.promotion)  # an unknown promotion fails before any upload
    reader = CodeCsvReader(has_header=spec.has_header)
    bad = _BadLines(fail_fast=not spec.skip_invalid)
    with imports.import_stage() as stage:
        for chunk in chunks:
            _stage(reader.feed(chunk), stage, bad)
        _stage(reader.finish(), stage, bad)
        bad.raise_if_failed()
        if spec.mode == "REPLACE" and not stage.lines:
            raise _nothing_to_replace_with("no line holds a valid code")
        now = utcnow()
        with write_transaction():
            target = store.pool(project_id, spec.promotion, locked=True)
            published = stage.publish(
                target,
                replace=spec.mode == "REPLACE",
                default_expire_time=spec.default_expire_time,
                now=now,
                keep_conflicts=spec.skip_invalid,
            )
            if published.conflicts and not spec.skip_invalid:
                raise _bad_lines(published.first_conflicts)
            if spec.mode == "REPLACE" and published.conflicts == stage.lines:
                raise _nothing_to_replace_with("every code of the file is in another pool")
            if not still_wanted():
                raise Aborted("the import was cancelled before it was published: nothing changed")
            errors = sorted(bad.first + published.first_conflicts, key=lambda b: b.line)
            result = domain.ImportResult(
                imported=published.imported,
                duplicates=stage.lines - published.conflicts - published.imported,
                rejected=bad.count + published.conflicts,
                retired=published.retired,
                errors=errors[:REPORTED_ERRORS],
            )
            audit.record(
                project_id, "ImportCodes", audit.pool(spec.promotion), mode=spec.mode,
                imported=result.imported, duplicates=result.duplicates,
                rejected=result.rejected, retired=result.retired,
            )
    imports.refresh_statistics(published.imported)
    metrics.record_codes_added(project_id, "import", published.imported)
    _LOGGER.info(
        "codes imported project=%s promotion=%s mode=%s imported=%d duplicates=%d "
        "rejected=%d retired=%d",
        project_id, spec.promotion, spec.mode, result.imported, result.duplicates,
        result.rejected, result.retired,
    )
    return result


def _nothing_to_replace_with(why: str) -> InvalidArgument:
    """Most likely the wrong file or an empty pipe, and it would empty the pool."""
    return InvalidArgument.field(
        "chunk", f"{why}: a REPLACE with this file would retire the whole pool and add nothing"
    )


class _BadLines:
    """Counts refused lines and keeps the first ones to report."""

    def __init__(self, *, fail_fast: bool) -> None:
        self.fail_fast = fail_fast
        self.count = 0
        self.first: list[BadLine] = []

    def add(self, lines: list[BadLine]) -> None:
        self.count += len(lines)
        self.first += lines[: REPORTED_ERRORS - len(self.first)]
        if self.fail_fast and len(self.first) >= FAILED_LINES_NAMED:
            # Enough to show what is wrong: no need to read the rest.
            self.raise_if_failed()

    def raise_if_failed(self) -> None:
        if self.fail_fast and self.first:
            raise _bad_lines(self.first)


def _stage(rows: Rows, stage: imports.ImportStage, bad: _BadLines) -> None:
    if rows.bad:
        bad.add(rows.bad)
    if not (bad.fail_fast and bad.count):  # a failing import need not stage more
        stage.add(rows)


def _bad_lines(lines: list[BadLine]) -> InvalidArgument:
    """The first bad lines; nothing was imported (skip_invalid imports the good ones)."""
    return InvalidArgument([
        FieldViolation("chunk", f"line {b.line}: {b.text!r}: {b.reason}")
        for b in lines[:FAILED_LINES_NAMED]
    ])


def generate(
    project_id: int, promotion: str, count: int, text: str, expire_time: datetime | None,
    known: Sequence[FieldViolation] = (),
) -> int:
    """Adds ``count`` new random codes of the pattern to the pool, all or none.

    ``known`` are the request's bad fields found while reading it (its expiry)."""
    problems = Violations(known)
    pattern = problems.check(lambda: patterns.parse(text, count), None)
    problems.raise_if_any()
    assert pattern is not None
    store.pool(project_id, promotion)
    with imports.generated_stage() as stage:
        _draw(stage, pattern, count)
        with write_transaction():
            target = store.pool(project_id, promotion, locked=True)
            imports.lock(target)
            generated = stalls = 0
            while True:
                drawn = stage.size
                added = _publish_generated(stage, target, count - generated, expire_time)
                generated += added
                if generated == count:
                    break
                # Some draws repeated taken codes: draw again, more the more they collide.
                stalls = 0 if added else stalls + 1
                if stalls >= GENERATE_STALLS:
                    raise FailedPrecondition(
                        f"the project already holds nearly every code of the pattern {text!r}: "
                        "use a longer pattern",
                        reason=patterns.PATTERN_EXHAUSTED,
                    )
                stage.clear()
                hit_rate = max(added / drawn, MIN_HIT_RATE)
                _draw(stage, pattern, math.ceil((count - generated) / hit_rate))
            audit.record(project_id, "GenerateCodes", audit.pool(promotion), pattern=text,
                         count=generated)
    imports.refresh_statistics(generated)
    metrics.record_codes_added(project_id, "generate", generated)
    _LOGGER.info(
        "codes generated project=%s promotion=%s pattern=%s count=%d",
        project_id, promotion, text, generated,
    )
    return generated


def _publish_generated(
    stage: imports.GeneratedStage, target: store.Pool, count: int, expire_time: datetime | None
) -> int:
    for _ in range(GENERATE_RACES):
        try:
            with database.atomic():  # a savepoint: a failed insert leaves the rest usable
                return stage.publish(target, count, expire_time=expire_time, now=utcnow())
        except IntegrityError:
            # A code drawn was added meanwhile by AttachCode of an unknown code, which
            # takes no pool lock: published again, the insert leaves it out.
            continue
    raise Aborted("codes of the pattern kept being added by other calls: nothing was "
                  "generated; retry")


def _draw(stage: imports.GeneratedStage, pattern: patterns.Pattern, count: int) -> None:
    for start in range(0, count, GENERATE_BATCH):
        stage.add(patterns.generate(pattern, min(GENERATE_BATCH, count - start)))


def export(project_id: int, promotion: str, state: str | None) -> Iterator[bytes]:
    """The pool as CSV with a header row, in chunks; one consistent snapshot."""
    target = store.pool(project_id, promotion)
    condition = store.state_filter(state, utcnow())
    with database.atomic():
        if not is_sqlite():
            database.execute_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        buffer = [",".join(domain.EXPORT_COLUMNS) + "\n"]
        size = len(buffer[0])
        for line in store.export_lines(target, condition):
            buffer.append(line)
            size += len(line)
            if size >= EXPORT_CHUNK_BYTES:
                yield "".join(buffer).encode()
                buffer, size = [], 0
        if buffer:
            yield "".join(buffer).encode()


def get(project_id: int, code: str) -> domain.Code:
    return store.get(project_id, domain.require_code(code, "code"))


def list_page(
    project_id: int,
    *,
    promotion: str,
    profile: domain.ProfileRef | None,
    state: str | None,
    page_size: int,
    page_token: str,
    known: Sequence[FieldViolation] = (),
) -> tuple[list[domain.Code], str]:
    """Codes of a pool, or held by a profile (in one pool, if a promotion is named too).

    ``known`` are the request's bad fields found while reading it: raised with
    these, every one at once."""
    problems = Violations(known)
    size = problems.check(lambda: pagination.page_size(page_size), 0)
    query = ("codes", project_id, promotion, profile, state)
    cursor = problems.check(lambda: pagination.decode(page_token, query), None)
    problems.raise_if_any()
    in_pool = store.pool(project_id, promotion) if promotion or profile is None else None
    holder = None
    if profile is not None:
        found = profiles.find(project_id, profile)
        if found is None:  # a profile_id never seen holds nothing
            return [], ""
        holder = found.id
    items, last = store.page(
        project_id,
        in_pool=in_pool,
        holder=holder,
        state=store.state_filter(state, utcnow()),
        after=cursor.after if cursor else None,
        size=size,
    )
    return items, (pagination.encode(last, query) if last is not None else "")


def update(project_id: int, code: str, change: domain.CodeChange) -> domain.Code:
    """Changes what ``change`` names; the API layer has checked the request whole."""
    domain.require_code(code, "code.code")
    with write_transaction():
        updated = store.update(project_id, change, code)
        audit.record(project_id, "UpdateCode", f"code/{updated.code}",
                     **{field: getattr(change, field) for field in change.fields})
    _LOGGER.info(
        "code updated project=%s code=%s fields=%s", project_id, code, ",".join(change.fields)
    )
    return updated
