"""Codes in the database: pools, lookups, state filters, keyset pages and CSV export rows."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from peewee import JOIN, Case, ColumnBase

from promo_server.domain import codes as domain
from promo_server.domain.errors import NotFound
from promo_server.store import promotions
from promo_server.store.db import database, is_sqlite
from promo_server.store.models import Attachment, Code, Profile, Promotion, available

# Rows per query of an export: large enough to amortise the query, small enough
# to keep memory flat whatever the pool's size.
EXPORT_BATCH = 5000


@dataclass(frozen=True)
class Pool:
    """A promotion's pool (``promotion_id``) or the project's global pool (None)."""

    project_id: int
    promotion_id: int | None
    external_id: str  # "" for the global pool

    def holds(self) -> ColumnBase:
        """The condition "the code is in the pool", indexable on both backends."""
        if self.promotion_id is None:
            return (Code.project == self.project_id) & Code.promotion.is_null()
        return (Code.project == self.project_id) & (Code.promotion == self.promotion_id)


def pool(project_id: int, external_id: str, *, locked: bool = False) -> Pool:
    """The pool of a live promotion, or the global pool for "".

    ``locked`` keeps the promotion from being updated or deleted until the
    transaction ends, with a key-share lock: concurrent attaches (their
    foreign-key checks) and redemptions (their count) pass it, where FOR UPDATE
    made every redemption of the promotion wait for a whole import, and an
    import and an AttachCode wait for each other (a deadlock on PostgreSQL).
    """
    if not external_id:
        return Pool(project_id, None, "")
    row = promotions.get_row(project_id, external_id, for_share=locked)
    return Pool(project_id, row.id, external_id)


def state_filter(name: str | None, now: datetime) -> ColumnBase | None:
    """The condition a CodeFilter names, None for every code."""
    if name is None:
        return None
    return {
        "AVAILABLE": available(now),
        "ATTACHED": Code.attachment_count > 0,
        "REDEEMED": Code.redemption_count > 0,
        "RETIRED": Code.retire_time.is_null(False),
        "EXPIRED": Code.expire_time <= now,
        "INACTIVE": ~Code.active,
    }[name]


_Holder = Profile.alias("holder")
_Issued = Promotion.alias("issued")
# The holder a Code shows: a single-use code's only. One kept from when the code was
# single-use binds no one while its promotion's limit lets several redeem it.
_SHOWN_HOLDER = Case(
    None,
    [(Code.promotion.is_null() | (Promotion.redeem_code_limit == 1), _Holder.profile_id)],
    None,
)


def _viewed() -> Any:
    return (
        Code.select(
            Code.id,
            Code.code,
            Promotion.external_id,
            Code.active,
            Code.expire_time,
            Code.retire_time,
            _SHOWN_HOLDER,
            Code.attachment_count,
            Code.redemption_count,
            _Issued.external_id,
            Code.create_time,
        )
        .join_from(Code, Promotion, JOIN.LEFT_OUTER, on=Code.promotion == Promotion.id)
        .join_from(Code, _Holder, JOIN.LEFT_OUTER, on=Code.holder == _Holder.id)
        .join_from(Code, _Issued, JOIN.LEFT_OUTER, on=Code.issued_for == _Issued.id)
    )


def _to_domain(row: tuple[Any, ...]) -> domain.Code:
    return domain.Code(
        code=row[1],
        promotion=row[2] or "",
        active=bool(row[3]),
        expire_time=row[4],
        retired=row[5] is not None,
        profile_id=row[6] or "",
        attachment_count=row[7],
        redemption_count=row[8],
        issued_for=row[9] or "",
        create_time=row[10],
    )


def get(project_id: int, code: str) -> domain.Code:
    query = _viewed().where((Code.project == project_id) & (Code.code_key == domain.key_of(code)))
    row = query.tuples().first()
    if row is None:
        raise NotFound(f"code {code!r} not found")
    return _to_domain(row)


def page(
    project_id: int,
    *,
    in_pool: Pool | None,
    holder: int | None,
    state: ColumnBase | None,
    after: int | None,
    size: int,
) -> tuple[list[domain.Code], int | None]:
    """One page of codes in the order they were added, and the key to continue after.

    ``in_pool`` and ``holder`` narrow the page to a pool and to the codes a
    profile holds.
    """
    query = _viewed().where(Code.project == project_id)
    if in_pool is not None:
        query = query.where(in_pool.holds())
    if holder is not None:
        held = Attachment.select(Attachment.code).where(Attachment.profile == holder)
        query = query.where(Code.id.in_(held))
    if state is not None:
        query = query.where(state)
    if after is not None:
        query = query.where(Code.id > after)
    rows = list(query.order_by(Code.id).limit(size + 1).tuples())
    more = len(rows) > size
    rows = rows[:size]
    return [_to_domain(r) for r in rows], (rows[-1][0] if more else None)


def update(project_id: int, change: domain.CodeChange, code: str) -> domain.Code:
    values: dict[Any, Any] = {}
    if "active" in change.fields:
        values[Code.active] = change.active
    if "expire_time" in change.fields:
        values[Code.expire_time] = change.expire_time
    changed = (
        Code.update(values)
        .where((Code.project == project_id) & (Code.code_key == domain.key_of(code)))
        .execute()
    )
    if not changed:
        raise NotFound(f"code {code!r} not found")
    return get(project_id, code)


def export_lines(target: Pool, where: ColumnBase | None) -> Iterator[str]:
    """The CSV lines of the pool's codes (no header), in the order they were added.

    Keyset batches inside the caller's transaction: memory stays flat, and the
    transaction's snapshot makes the export consistent.
    """
    condition = target.holds()
    if where is not None:
        condition &= where
    base = (
        Code.select(
            Code.id,
            Code.code,
            Code.active,
            Code.expire_time,
            Code.retire_time,
            _Holder.profile_id,
            Code.attachment_count,
            Code.redemption_count,
            Code.create_time,
        )
        .join_from(Code, _Holder, JOIN.LEFT_OUTER, on=Code.holder == _Holder.id)
        .where(condition)
        .order_by(Code.id)
        .limit(EXPORT_BATCH)
    )
    time_text = _sqlite_time if is_sqlite() else _postgres_time
    promotion = target.external_id
    # As _SHOWN_HOLDER: a holder shows on a single-use code only.
    single_use = target.promotion_id is None or Promotion.select(
        Promotion.redeem_code_limit
    ).where(Promotion.id == target.promotion_id).scalar() == 1
    after = 0
    while True:
        # Raw rows: Peewee's per-value conversion would cost more than the export.
        rows = database.execute_sql(*base.where(Code.id > after).sql()).fetchall()
        for row in rows:
            yield (
                f"{row[1]},{promotion},{'true' if row[2] else 'false'},"
                f"{time_text(row[3])},{'false' if row[4] is None else 'true'},"
                f"{_csv_field(row[5]) if row[5] and single_use else ''},"
                f"{row[6]},{row[7]},{time_text(row[8])}\n"
            )
        if len(rows) < EXPORT_BATCH:
            return
        after = rows[-1][0]


def _csv_field(text: str) -> str:
    """RFC 4180: a field holding a comma or a quote is quoted, its quotes doubled. Only
    a holder's profile_id can: codes and external ids are made of safer characters."""
    if "," in text or '"' in text:
        return '"' + text.replace('"', '""') + '"'
    return text


def _sqlite_time(value: str | None) -> str:
    # SQLite keeps Peewee's "YYYY-MM-DD HH:MM:SS[.ffffff]" in UTC.
    return "" if value is None else value.replace(" ", "T") + "Z"


def _postgres_time(value: datetime | None) -> str:
    return "" if value is None else value.isoformat() + "Z"
