"""Attachments, pool hand-out, limit counters and redemptions in the database.

Every counter moves by one conditional UPDATE whose affected-row count says
whether the limit allowed it; nothing reads a count and then writes it. A
redemption is checked against rows read before it is counted, and each of
its UPDATEs also checks that what was read still holds (the code's state and
pool, the promotion's version): when one does not, the caller reads again and
tries once more. Pool hand-out takes the oldest available code with ``FOR
UPDATE SKIP LOCKED`` on PostgreSQL (SQLite's writers are serialised by BEGIN
IMMEDIATE). Call every writer here inside a write transaction, but ``redeem``
inside ``redemption_transaction()``.
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import datetime
from typing import Any, NamedTuple

from peewee import JOIN, ColumnBase, IntegrityError, fn
from psycopg2.errorcodes import NOT_NULL_VIOLATION

from promo_server.domain import lifecycle as rules
from promo_server.domain.codes import key_of
from promo_server.domain.errors import NotFound
from promo_server.domain.promotions import Promotion as PromotionRules
from promo_server.store.db import (
    Compiled,
    Statement,
    database,
    execute,
    is_sqlite,
    write_transaction,
)
from promo_server.store.models import (
    Attachment,
    Code,
    Profile,
    Promotion,
    PromotionUsage,
    Redemption,
    available,
)

# The SQL of every call of ActivateCode is built once: building it per call with
# the query builder cost more than running it.
_CODE = Compiled(lambda p, k: Code.select().where((Code.project == p) & (Code.code_key == k)))
_REDEMPTION_BY_REQUEST = Compiled(
    lambda p, r: Redemption.select().where((Redemption.project == p) & (Redemption.request_id == r))
)
_USAGE = Compiled(
    lambda m, p: PromotionUsage.select().where(
        (PromotionUsage.promotion == m) & (PromotionUsage.profile == p)
    )
)


class Redeemable(NamedTuple):
    """A code as ValidateCode and ActivateCode check it, with the promotion it redeems for."""

    id: int
    code: str
    promotion_id: int | None
    issued_for_id: int | None
    active: bool
    retired: bool
    expire_time: datetime | None
    holder_id: int | None
    redemption_count: int
    attachment_count: int
    # The promotion of the code's pool, else the one a global-pool code was issued
    # for; None for a global-pool code issued for none.
    promo_id: int | None
    promo_external_id: str
    promo_version: Any  # update_time as stored: what a redemption checks is unchanged
    promo_redemption_count: int
    # The profile asked for by profile_id, read in the same query: None if not asked
    # for that way, or not found.
    profile_row_id: int | None = None
    profile_attributes: str = "{}"
    # That profile's redemptions counted against the promotion's per-profile limit;
    # None when the profile was not read.
    profile_redemptions: int | None = None


class Stale(Exception):
    """Something a redemption was checked against changed before it was counted."""


_REDEEMABLE = (
    "SELECT c.id, c.code, c.promotion_id, c.issued_for_id, c.active, "
    "c.retire_time IS NOT NULL, c.expire_time, c.holder_id, c.redemption_count, "
    "c.attachment_count, p.id, p.external_id, p.update_time, p.redemption_count{profile_columns} "
    "FROM code c LEFT JOIN promotion p ON p.id = coalesce(c.promotion_id, c.issued_for_id) "
    "{profile_join}WHERE c.project_id = ? AND c.code_key = ?"
)
_REDEEMABLE_ALONE = Statement(_REDEEMABLE.format(profile_columns="", profile_join=""))
_REDEEMABLE_WITH_PROFILE = Statement(_REDEEMABLE.format(
    profile_columns=", pr.id, pr.attributes, pu.redemption_count",
    profile_join=(
        "LEFT JOIN profile pr ON pr.project_id = c.project_id AND pr.profile_id = ? "
        "LEFT JOIN promotion_usage pu ON pu.promotion_id = p.id AND pu.profile_id = pr.id "
    ),
))
_EXPIRE_TIME = Code.expire_time.python_value


def redeemable(project_id: int, code: str, profile_id: str | None = None) -> Redeemable | None:
    """The code, its promotion's version and counts, and the profile named ``profile_id``
    (when given) with its redemptions of the promotion: one query, where a call would
    otherwise make four round trips."""
    if profile_id is None:
        row = execute(_REDEEMABLE_ALONE, (project_id, key_of(code))).fetchone()
    else:
        row = execute(_REDEEMABLE_WITH_PROFILE, (profile_id, project_id, key_of(code))).fetchone()
    if row is None:
        return None
    (id_, text, promotion_id, issued_for_id, active, retired, expire_time, holder_id,
     redemption_count, attachment_count, promo_id, promo_external_id, promo_version,
     promo_count) = row[:14]
    profile_row_id, attributes, used = row[14:] if profile_id is not None else (None, "{}", 0)
    return Redeemable(
        id_, text, promotion_id, issued_for_id, bool(active), bool(retired),
        _EXPIRE_TIME(expire_time), holder_id, redemption_count, attachment_count,
        promo_id, promo_external_id or "", promo_version, promo_count or 0,
        profile_row_id, attributes or "{}", None if profile_row_id is None else used or 0,
    )


def code_row(project_id: int, code: str) -> Code | None:
    return _CODE.first(Code, project_id, key_of(code))


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
    """Attaches the code to the profile; the same attachment again for the same profile.

    A single-use code gets the profile as its holder. A shared code has none: one
    it kept from when it was single-use (its promotion's limit raised since) goes
    as a second profile attaches it. The promotion was read without a lock, so a
    shared attach counts only while the promotion is still shared; else it is
    made again as the single-use attach it now is (which another profile's hold
    may refuse).
    """
    existing = attachment_of(code.id, profile_id)
    if existing is not None:
        return existing
    # As read before, unlocked: on PostgreSQL a REPLACE may have retired it since.
    usable = (Code.retire_time.is_null() & Code.active
              & (Code.expire_time.is_null() | (Code.expire_time > now)))
    allowed: ColumnBase
    if single_use:
        # A single-use code goes to one profile: none may hold it or be attached to it.
        allowed = Code.holder.is_null() & (Code.attachment_count == 0)
    else:
        allowed = fn.EXISTS(Promotion.select(Promotion.id).where(
            (Promotion.id == promotion_id)
            & (Promotion.redeem_code_limit.is_null() | (Promotion.redeem_code_limit != 1))
        ))
    taken = Code.update(
        {
            Code.hand_out_time: fn.COALESCE(Code.hand_out_time, now),
            Code.attachment_count: Code.attachment_count + 1,
            Code.issued_for: fn.COALESCE(Code.issued_for, promotion_id)
            if code.promotion_id is None
            else Code.issued_for,
            Code.holder: profile_id if single_use else None,
        }
    ).where((Code.id == code.id) & usable & allowed)
    if not taken.execute():
        current = Code.get_by_id(code.id)
        rules.check_code(rules.CodeState(current.code, current.active,
                                         current.retire_time is not None, current.expire_time),
                         now)
        if not single_use:  # made single-use since it was read
            return attach(code, profile_id, promotion_id, single_use=True, now=now)
        existing = attachment_of(code.id, profile_id) if current.holder_id == profile_id else None
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
    """The pool's oldest available code, locked on PostgreSQL.

    Skipping the codes other calls hold, so that hand-outs do not queue behind each
    other. When every one is held, by a REPLACE retiring them, say, whose new codes
    are not committed yet, waiting for them tells whether the pool is really dry:
    else hand-outs would go to the global pool, or fail POOL_EMPTY, meanwhile.
    """
    in_pool = Code.promotion.is_null() if pool is None else Code.promotion == pool
    query = (
        Code.select(Code.id)
        .where((Code.project == project_id) & in_pool & available(now))
        .order_by(Code.id)
        .limit(1)
    )
    if is_sqlite():
        row = query.tuples().first()
        return None if row is None else int(row[0])
    for skip_locked in (True, False, True):  # the last in a new snapshot, after the wait
        row = query.for_update(skip_locked=skip_locked).tuples().first()
        if row is not None:
            return int(row[0])
    return None


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
        raise rules.refuse(
            rules.CODE_ATTACHED_TO_SEVERAL_PROFILES,
            f"code {code.code!r} is attached to several profiles: name the profile to detach",
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


# One redemption's statements. Each counter's UPDATE is guarded by its limit
# (NULL: none) and by what the checks read; the code's also by its state and,
# when it is single-use, by its holder (the profile given; NULL for a shared code).
_COUNT_CODE = (
    "UPDATE code SET redemption_count = redemption_count + 1, "
    "hand_out_time = coalesce(hand_out_time, ?) "
    "WHERE id = ? AND active AND retire_time IS NULL "
    "AND (expire_time IS NULL OR expire_time > ?) "
    "AND (holder_id IS NULL OR holder_id = coalesce(?, holder_id)) "
    "AND coalesce(promotion_id, 0) = ? AND coalesce(issued_for_id, 0) = ? "
    "AND redemption_count < coalesce(?, redemption_count + 1)"
)
_COUNT_USER = (
    "INSERT INTO promotion_usage (promotion_id, profile_id, redemption_count) {rows} "
    "ON CONFLICT (promotion_id, profile_id) DO UPDATE "
    "SET redemption_count = promotion_usage.redemption_count + 1 "
    "WHERE promotion_usage.redemption_count < coalesce(?, promotion_usage.redemption_count + 1)"
)
_COUNT_TOTAL = (
    "UPDATE promotion SET redemption_count = redemption_count + 1 "
    "WHERE id = ? AND update_time = ? AND redemption_count < coalesce(?, redemption_count + 1)"
)
_RECORD = (
    "INSERT INTO redemption (public_id, project_id, code_id, promotion_id, profile_id, "
    "request_id, state, reward, create_time, rollback_reason) {rows}"
)
_RECORD_VALUES = "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '')"
# PostgreSQL runs them as one statement, outside any transaction (see
# redemption_transaction); each counter counts only if the one before did. The
# redemption's row is inserted whatever happened, but its public id is NULL unless
# every counter counted: the NOT NULL violation then fails the whole statement,
# and nothing it did is kept.
_RECORD_IF_COUNTED = (
    "SELECT CASE WHEN EXISTS (SELECT 1 FROM {last}) THEN ? END, ?, ?, ?, ?, ?, ?, ?, ?, ''"
)
_COUNTED_USER = (
    "counted_user AS ("
    + _COUNT_USER.format(rows="SELECT ?, ?, 1 FROM counted_code")
    + " RETURNING 1), "
)
_REDEEM_ONE_STATEMENT = Statement(
    f"WITH counted_code AS ({_COUNT_CODE} RETURNING id), {_COUNTED_USER}"
    f"counted_total AS ({_COUNT_TOTAL} AND EXISTS (SELECT 1 FROM counted_user) RETURNING 1) "
    + _RECORD.format(rows=_RECORD_IF_COUNTED.format(last="counted_total"))
)
# A promotion with no total limit has no count to check, so its redemptions are
# counted in one of its SHARES RedemptionShare rows, picked at random, instead of
# its row: every activation of a promotion updating that one row made them wait
# for each other, and PostgreSQL alone then ran our activations 1,000 times a
# second with a p99 of 180 ms, against 2,000 and 50 ms this way (pgbench, 32
# clients). A KEY SHARE lock on the promotion's row, which activations share,
# checks its version instead; UpdatePromotion and DeletePromotion lock the row
# for update, so they wait for these activations, and activations that come
# after them find the new version.
SHARES = 16
_COUNT_SHARE = (
    "INSERT INTO redemption_share (promotion_id, share, redemption_count) "
    f"SELECT ?, floor(random() * {SHARES})::int, 1 FROM {{after}} "
    "ON CONFLICT (promotion_id, share) DO UPDATE "
    "SET redemption_count = redemption_share.redemption_count + 1"
)
# A rollback's give-back to a random share (which may go below zero; the sum is right).
_UNCOUNT_SHARE = (
    "INSERT INTO redemption_share (promotion_id, share, redemption_count) "
    f"VALUES (?, floor(random() * {SHARES})::int, -1) "
    "ON CONFLICT (promotion_id, share) DO UPDATE "
    "SET redemption_count = redemption_share.redemption_count - 1"
)
_REDEEM_IN_SHARES_STATEMENT = Statement(
    "WITH version AS "
    "(SELECT 1 FROM promotion WHERE id = ? AND update_time = ? FOR KEY SHARE), "
    f"counted_code AS ({_COUNT_CODE} AND EXISTS (SELECT 1 FROM version) RETURNING id), "
    f"{_COUNTED_USER}counted_total AS ({_COUNT_SHARE.format(after='counted_user')} RETURNING 1) "
    + _RECORD.format(rows=_RECORD_IF_COUNTED.format(last="counted_total"))
)
_REDEEM_ONE_STATEMENT_CODE_ONLY = Statement(
    f"WITH counted_code AS ({_COUNT_CODE} RETURNING id) "
    + _RECORD.format(rows=_RECORD_IF_COUNTED.format(last="counted_code"))
)


def redemption_transaction() -> contextlib.AbstractContextManager[None]:
    """What ``redeem`` runs in. On SQLite, a write transaction: its statements are
    several. On PostgreSQL, none: the redemption is one statement, all or nothing,
    committed as it ends. So the promotion's row, which every redemption of a
    promotion with a total limit updates, stays locked only while that statement
    runs, not also while its answer travels back to a busy server and that
    server's COMMIT comes to the database (with BEGIN and COMMIT around it,
    activations of one promotion spent a third of their time waiting for that
    lock)."""
    return write_transaction() if is_sqlite() else contextlib.nullcontext()


def _not_counted(error: IntegrityError) -> bool:
    """Whether ``error`` is the NOT NULL violation of a redemption that did not count."""
    cause = error.__context__
    return (
        getattr(cause, "pgcode", None) == NOT_NULL_VIOLATION
        and getattr(getattr(cause, "diag", None), "column_name", None) == "public_id"
    )


def redeem(
    project_id: int, code: Redeemable, promotion: PromotionRules | None, profile_id: int,
    request_id: str, reward: str, now: datetime,
) -> str:
    """Counts one redemption against every limit and records it; returns its public id.

    Raises Stale when a limit is reached or the code or promotion is no longer
    as read, having changed nothing (on SQLite, once the caller's transaction
    rolls back, undoing any counter this did move); the caller reads again and
    names the refusal. The promotion's count comes last, so that PostgreSQL
    holds the lock on its row (or share) for as short a time as possible.
    """
    public_id = str(uuid.uuid4())
    limit = rules.code_limit(promotion, in_global_pool=code.promotion_id is None)
    # A holder binds a single-use code only: NULL lets any profile by (see _COUNT_CODE).
    holder = profile_id if limit == 1 else None
    count_code: tuple[Any, ...] = (
        now, code.id, now, holder, code.promotion_id or 0, code.issued_for_id or 0, limit,
    )
    record = (public_id, project_id, code.id, code.promo_id, profile_id, request_id or None,
              rules.REDEEMED, reward, now)
    user = total = None
    if promotion is not None and code.promo_id is not None:
        user, total = promotion.redeem_user_limit, promotion.redeem_total_limit
        if user is not None and user < 1:  # the upsert's first use would not check it
            raise Stale
    if not is_sqlite():
        statement, counts = _REDEEM_ONE_STATEMENT_CODE_ONLY, count_code
        if code.promo_id is not None and total is None:
            statement = _REDEEM_IN_SHARES_STATEMENT
            counts = (code.promo_id, code.promo_version, *count_code,
                      code.promo_id, profile_id, user, code.promo_id)
        elif code.promo_id is not None:
            statement = _REDEEM_ONE_STATEMENT
            counts += (code.promo_id, profile_id, user, code.promo_id, code.promo_version, total)
        try:
            execute(statement, (*counts, *record))
        except IntegrityError as error:
            if _not_counted(error):
                raise Stale from None
            raise
        return public_id
    if not execute(_COUNT_CODE, count_code).rowcount:
        raise Stale
    if code.promo_id is not None:
        usage = _COUNT_USER.format(rows="VALUES (?, ?, 1)")
        if not execute(usage, (code.promo_id, profile_id, user)).rowcount:
            raise Stale
    execute(_RECORD.format(rows=_RECORD_VALUES), record)
    if code.promo_id is not None and not execute(
        _COUNT_TOTAL, (code.promo_id, code.promo_version, total)
    ).rowcount:
        raise Stale
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


# Whether a promotion keeps its count in shares (it has no total limit); and, as a
# rollback's first lock on PostgreSQL, the same with the promotion's row locked as
# such activations lock it.
_IN_SHARES = "SELECT redeem_total_limit IS NULL FROM promotion WHERE id = ?"
_READ_IN_SHARES = Statement(_IN_SHARES)
_LOCK_IN_SHARES = Statement(f"{_IN_SHARES} FOR KEY SHARE")


def roll_back(found: Redemption, reason: str, now: datetime) -> None:
    """Gives the redemption's use back to every limit it counted against.

    On PostgreSQL it takes the rows in the order an activation of the promotion
    does: against the other order, behind an UpdatePromotion waiting for one of
    them, a rollback and an activation deadlocked. So for a promotion without a
    total limit it first locks the promotion's row as those activations do (see
    _REDEEM_IN_SHARES_STATEMENT), which also keeps where the count is as read, and
    gives the use back to a share. With a limit it takes the code's row, the
    usage's and last the promotion's, as _REDEEM_ONE_STATEMENT does; should the
    limit go meanwhile, the row's count is still part of the sum.
    """
    in_shares = False
    if (found.promotion_id is not None and not is_sqlite()
            and execute(_READ_IN_SHARES, (found.promotion_id,)).fetchone() == (True,)):
        row = execute(_LOCK_IN_SHARES, (found.promotion_id,)).fetchone()
        in_shares = row is not None and bool(row[0])
    changed = Redemption.update(
        {Redemption.state: rules.ROLLED_BACK, Redemption.rollback_time: now,
         Redemption.rollback_reason: reason}
    ).where((Redemption.id == found.id) & (Redemption.state == rules.REDEEMED)).execute()
    if not changed:
        raise rules.refuse(
            rules.ALREADY_ROLLED_BACK, f"redemption {found.public_id!r} is already rolled back"
        )
    # In the order a redemption locks them (code, usage, promotion): the other
    # order deadlocked against activations on PostgreSQL.
    Code.update({Code.redemption_count: Code.redemption_count - 1}).where(
        Code.id == found.code_id
    ).execute()
    if found.promotion_id is not None:
        PromotionUsage.update(
            {PromotionUsage.redemption_count: PromotionUsage.redemption_count - 1}
        ).where(
            (PromotionUsage.promotion == found.promotion_id)
            & (PromotionUsage.profile == found.profile_id)
        ).execute()
        if in_shares:
            execute(_UNCOUNT_SHARE, (found.promotion_id,))
        else:
            Promotion.update(
                {Promotion.redemption_count: Promotion.redemption_count - 1}
            ).where(Promotion.id == found.promotion_id).execute()


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
