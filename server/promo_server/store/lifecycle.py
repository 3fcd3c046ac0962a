"""Attachments, pool hand-out, limit counters and redemptions in the database.

Every counter moves by one conditional UPDATE whose affected-row count says
whether the limit allowed it; nothing reads a count and then writes it. Pool
hand-out takes the oldest available code with ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL (SQLite's writers are serialised by BEGIN IMMEDIATE). Call every
writer here inside a write transaction.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from peewee import JOIN, IntegrityError, fn

from promo_server.domain import lifecycle as rules
from promo_server.domain.codes import key_of
from promo_server.domain.errors import FailedPrecondition, NotFound
from promo_server.store.db import Compiled, database, execute, is_sqlite
from promo_server.store.models import (
    Attachment,
    Code,
    Profile,
    Promotion,
    PromotionUsage,
    Redemption,
)

# The SQL of every call of ActivateCode is built once: building it per call with
# the query builder cost more than running it.
_CODE = Compiled(lambda p, k: Code.select().where((Code.project == p) & (Code.code_key == k)))
_PROMOTION = Compiled(lambda i: Promotion.select().where(Promotion.id == i))
_REDEMPTION_BY_REQUEST = Compiled(
    lambda p, r: Redemption.select().where((Redemption.project == p) & (Redemption.request_id == r))
)
_USAGE = Compiled(
    lambda m, p: PromotionUsage.select().where(
        (PromotionUsage.promotion == m) & (PromotionUsage.profile == p)
    )
)


def code_row(project_id: int, code: str) -> Code | None:
    return _CODE.first(Code, project_id, key_of(code))


def promotion_row(promotion_id: int) -> Promotion:
    found = _PROMOTION.first(Promotion, promotion_id)
    assert found is not None, "a code's promotion row is never deleted"
    return found


def add_code(project_id: int, promotion_id: int, code: str, now: datetime) -> Code:
    """Adds a code to a promotion's pool (AttachCode of an unknown code)."""
    try:
        with database.atomic():
            return Code.create(  # type: ignore[no-any-return]
                project=project_id, promotion=promotion_id, code=code, code_key=key_of(code),
                active=True, create_time=now,
            )
    except IntegrityError:  # added meanwhile by another call
        found = code_row(project_id, code)
        assert found is not None
        return found


def attachment_of(code_id: int, profile_id: int) -> Attachment | None:
    return Attachment.get_or_none((Attachment.code == code_id) & (Attachment.profile == profile_id))


def attach(
    code: Code, profile_id: int, promotion_id: int, *, single_use: bool, now: datetime
) -> Attachment:
    """Attaches the code to the profile; the same attachment again for the same profile."""
    existing = attachment_of(code.id, profile_id)
    if existing is not None:
        return existing
    taken = Code.update(
        {
            Code.hand_out_time: fn.COALESCE(Code.hand_out_time, now),
            Code.attachment_count: Code.attachment_count + 1,
            Code.issued_for: fn.COALESCE(Code.issued_for, promotion_id)
            if code.promotion_id is None
            else Code.issued_for,
            **({Code.holder: profile_id} if single_use else {}),
        }
    ).where((Code.id == code.id) & (Code.holder.is_null() if single_use else True))
    if not taken.execute():
        holder = Code.get_by_id(code.id).holder_id
        existing = attachment_of(code.id, profile_id) if holder == profile_id else None
        if existing is not None:
            return existing
        raise rules.refuse(
            rules.CODE_ALREADY_ATTACHED, f"code {code.code!r} is attached to another profile"
        )
    try:
        with database.atomic():
            return Attachment.create(  # type: ignore[no-any-return]
                project=code.project_id, code=code.id, profile=profile_id,
                promotion=promotion_id, attach_time=now,
            )
    except IntegrityError:  # the same profile, attached by a concurrent call
        Code.update({Code.attachment_count: Code.attachment_count - 1}).where(
            Code.id == code.id
        ).execute()
        found = attachment_of(code.id, profile_id)
        assert found is not None
        return found


def hand_out(
    project_id: int, promotion: Promotion, profile_id: int, *, single_use: bool, now: datetime
) -> Attachment:
    """Attaches the oldest available code of the promotion's pool, else of the global pool."""
    for pool in (promotion.id, None):
        while (candidate := _oldest_available(project_id, pool, now)) is not None:
            values: dict[Any, Any] = {
                Code.hand_out_time: now,
                Code.attachment_count: Code.attachment_count + 1,
            }
            if pool is None:
                values[Code.issued_for] = promotion.id
            if single_use or pool is None:
                values[Code.holder] = profile_id
            taken = Code.update(values).where(
                (Code.id == candidate) & Code.hand_out_time.is_null()
            ).execute()
            if taken:  # else another call took it between our read and write
                return Attachment.create(  # type: ignore[no-any-return]
                    project=project_id, code=candidate, profile=profile_id,
                    promotion=promotion.id, attach_time=now,
                )
    raise rules.exhausted(
        rules.POOL_EMPTY,
        f"no available code in the pool of {promotion.external_id!r} nor in the global pool",
    )


def _oldest_available(project_id: int, pool: int | None, now: datetime) -> int | None:
    in_pool = Code.promotion.is_null() if pool is None else Code.promotion == pool
    query = (
        Code.select(Code.id)
        .where(
            (Code.project == project_id)
            & in_pool
            & Code.hand_out_time.is_null()
            & Code.retire_time.is_null()
            & Code.active
            & (Code.expire_time.is_null() | (Code.expire_time > now))
        )
        .order_by(Code.id)
        .limit(1)
    )
    if not is_sqlite():
        query = query.for_update(skip_locked=True)
    row = query.tuples().first()
    return None if row is None else int(row[0])


def detach(code: Code, profile_id: int | None) -> None:
    """Removes the profile's attachment; without a profile, the code's only one."""
    attachments = Attachment.select().where(Attachment.code == code.id)
    if profile_id is not None:
        attachments = attachments.where(Attachment.profile == profile_id)
    found = list(attachments.limit(2))
    if not found:
        whom = " to that profile" if profile_id is not None else ""
        raise NotFound(f"code {code.code!r} is not attached{whom}")
    if len(found) > 1:
        raise FailedPrecondition(
            f"code {code.code!r} is attached to several profiles: name the profile to detach"
        )
    attachment = found[0]
    if Attachment.delete().where(Attachment.id == attachment.id).execute():
        Code.update(
            {
                Code.attachment_count: Code.attachment_count - 1,
                Code.holder: fn.NULLIF(Code.holder, attachment.profile_id),
            }
        ).where(Code.id == code.id).execute()


def usage_count(promotion_id: int, profile_id: int) -> int:
    row = _USAGE.first(PromotionUsage, promotion_id, profile_id)
    return 0 if row is None else int(row.redemption_count)


def count_code(code_id: int, limit: int | None, now: datetime) -> bool:
    """One more redemption of the code, if its limit allows; False if not."""
    return _counted(
        "UPDATE code SET redemption_count = redemption_count + 1, "
        "hand_out_time = coalesce(hand_out_time, ?) WHERE id = ?",
        (now, code_id), limit,
    )


def count_user(promotion_id: int, profile_id: int, limit: int | None) -> bool:
    """One more redemption of the promotion by the profile, if its limit allows."""
    insert = (
        "INSERT {} INTO promotion_usage (promotion_id, profile_id, redemption_count) "
        "VALUES (?, ?, 0){}"
    )
    execute(
        insert.format("OR IGNORE", "") if is_sqlite()
        else insert.format("", " ON CONFLICT DO NOTHING"),
        (promotion_id, profile_id),
    )
    return _counted(
        "UPDATE promotion_usage SET redemption_count = redemption_count + 1 "
        "WHERE promotion_id = ? AND profile_id = ?",
        (promotion_id, profile_id), limit,
    )


def count_total(promotion_id: int, limit: int | None) -> bool:
    """One more redemption of the promotion, if its total limit allows."""
    return _counted(
        "UPDATE promotion SET redemption_count = redemption_count + 1 WHERE id = ?",
        (promotion_id,), limit,
    )


def _counted(update: str, params: tuple[Any, ...], limit: int | None) -> bool:
    """Runs a counter's UPDATE, guarded by its limit: whether it counted."""
    if limit is not None:
        update += " AND redemption_count < ?"
        params = (*params, limit)
    return bool(execute(update, params).rowcount)


def add_redemption(
    project_id: int, code_id: int, promotion_id: int | None, profile_id: int,
    request_id: str, reward: str, now: datetime,
) -> str:
    """Records a redemption; returns its public id."""
    public_id = str(uuid.uuid4())
    execute(
        "INSERT INTO redemption (public_id, project_id, code_id, promotion_id, profile_id, "
        "request_id, state, reward, create_time, rollback_reason) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '')",
        (public_id, project_id, code_id, promotion_id, profile_id, request_id or None,
         rules.REDEEMED, reward, now),
    )
    return public_id


def redemption_by_request(project_id: int, request_id: str) -> Redemption | None:
    if not request_id:
        return None
    return _REDEMPTION_BY_REQUEST.first(Redemption, project_id, request_id)


def redemption(project_id: int, public_id: str) -> Redemption:
    found = Redemption.get_or_none(
        (Redemption.project == project_id) & (Redemption.public_id == public_id)
    )
    if found is None:
        raise NotFound(f"redemption {public_id!r} not found")
    return found  # type: ignore[no-any-return]


def roll_back(found: Redemption, reason: str, now: datetime) -> None:
    """Gives the redemption's use back to every limit it counted against."""
    changed = Redemption.update(
        {Redemption.state: rules.ROLLED_BACK, Redemption.rollback_time: now,
         Redemption.rollback_reason: reason}
    ).where((Redemption.id == found.id) & (Redemption.state == rules.REDEEMED)).execute()
    if not changed:
        raise rules.refuse(
            rules.ALREADY_ROLLED_BACK, f"redemption {found.public_id!r} is already rolled back"
        )
    Code.update({Code.redemption_count: Code.redemption_count - 1}).where(
        Code.id == found.code_id
    ).execute()
    if found.promotion_id is not None:
        Promotion.update({Promotion.redemption_count: Promotion.redemption_count - 1}).where(
            Promotion.id == found.promotion_id
        ).execute()
        PromotionUsage.update(
            {PromotionUsage.redemption_count: PromotionUsage.redemption_count - 1}
        ).where(
            (PromotionUsage.promotion == found.promotion_id)
            & (PromotionUsage.profile == found.profile_id)
        ).execute()


def redemption_view(project_id: int) -> Any:
    """Redemptions with the names callers know them by: code, promotion and profile ids."""
    return (
        Redemption.select(
            Redemption, Code.code, Promotion.id, Promotion.external_id, Profile.profile_id
        )
        .join_from(Redemption, Code)
        .join_from(Redemption, Promotion, JOIN.LEFT_OUTER)
        .join_from(Redemption, Profile)
        .where(Redemption.project == project_id)
    )
