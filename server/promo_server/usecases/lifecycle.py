"""The code lifecycle: attach and detach, validate and activate, roll back, list redemptions."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from peewee import IntegrityError

from promo_server import metrics
from promo_server.domain import lifecycle as rules
from promo_server.domain import pagination, rewards
from promo_server.domain import promotions as promotion_rules
from promo_server.domain.codes import ProfileRef, key_of, require_code
from promo_server.domain.errors import (
    Aborted,
    AlreadyExists,
    DomainError,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Violations,
)
from promo_server.store import lifecycle as store
from promo_server.store import profiles, promotions
from promo_server.store.db import utcnow, when_committed, write_transaction
from promo_server.store.models import Code, Profile, Promotion, Redemption

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class AttachmentView:
    code: str
    promotion: str
    profile_id: str
    attach_time: datetime


@dataclass(frozen=True)
class RedemptionView:
    id: str
    code: str
    promotion: str
    profile_id: str
    reward: dict[str, Any]
    state: str
    request_id: str
    create_time: datetime
    rollback_time: datetime | None
    rollback_reason: str


@dataclass(frozen=True)
class Attempt:
    """What ValidateCode and ActivateCode are asked: a code, by whom, for which cart."""

    code: str
    profile: ProfileRef | None
    cart: rewards.Cart
    attributes: Mapping[str, str]
    applied_promotions: Sequence[str]
    request_id: str = ""


def attach(
    project_id: int, ref: ProfileRef | None, promotion: str, code: str | None,
    known: Sequence[FieldViolation] = (),
) -> AttachmentView:
    """Attaches a named code, or hands out the pool's oldest available one.

    ``known`` are the request's bad fields found while reading it: raised with
    these, every one at once."""
    problems = Violations(known)
    ref = problems.check(lambda: _required_profile(ref), None)
    if not promotion:
        problems.add("promotion", "is required")
    if code is not None:
        problems.check(lambda: require_code(code, "code"), "")
    problems.raise_if_any()
    assert ref is not None
    now = utcnow()
    with write_transaction():
        promo_row = promotions.get_row(project_id, promotion)
        rules_of = promotions.to_domain(promo_row)
        profile = profiles.find_or_create(project_id, ref)
        if code is None:
            attachment = store.hand_out(
                project_id, promo_row, profile.id,
                single_use=rules.is_single_use(rules_of, in_global_pool=False), now=now,
            )
        else:
            row = store.code_row(project_id, code) or store.add_code(
                project_id, promo_row.id, code, now
            )
            _require_pool(row, promo_row)
            rules.check_code(_state(row), now)
            attachment = store.attach(
                row, profile.id, promo_row.id,
                single_use=rules.is_single_use(rules_of, in_global_pool=row.promotion_id is None),
                now=now,
            )
        held = Code.get_by_id(attachment.code_id)
    _LOGGER.info("code attached project=%s promotion=%s", project_id, promotion)
    return AttachmentView(held.code, promotion, profile.profile_id, attachment.attach_time)


def detach(
    project_id: int, code: str, ref: ProfileRef | None, known: Sequence[FieldViolation] = ()
) -> None:
    problems = Violations(known)
    problems.check(lambda: require_code(code, "code"), "")
    problems.raise_if_any()
    with write_transaction():
        row = _code(project_id, code)
        profile_id = None
        if ref is not None:
            profile = profiles.find(project_id, ref)
            if profile is None:
                raise NotFound(f"code {code!r} is not attached to that profile")
            profile_id = profile.id
        store.detach(row, profile_id)
    _LOGGER.info("code detached project=%s", project_id)


def validate(project_id: int, attempt: Attempt) -> tuple[bool, str, rewards.Reward | None]:
    """The checks and reward of an activation, consuming nothing: (valid, reason, reward)."""
    try:
        checked = _check(project_id, attempt)
        _check_limits(checked)
    except DomainError as refusal:
        if not refusal.reason:
            raise
        return False, refusal.reason, None
    return True, "", checked.reward


# How often an activation reads again after what it read changed under it.
ACTIVATE_TRIES = 5


def activate(project_id: int, attempt: Attempt) -> RedemptionView:
    """Redeems the code once, counting it against every limit, all or nothing.

    The checks and the reward use rows read before counting: on SQLite the
    write lock is held only for the counting statements (on the event loop,
    the whole call runs in the write group, which holds it); on PostgreSQL the
    counting is one statement. When that finds a row changed (or a limit
    reached), nothing is counted, and the activation checks again: on SQLite
    inside the transaction.

    The same ``request_id`` again returns the first redemption and counts
    nothing more, even when the repeats race each other. Only an activation
    that fails looks for one: a new request_id costs nothing.
    """
    ref = _required_profile(attempt.profile)
    attempt = Attempt(attempt.code, ref, attempt.cart, attempt.attributes,
                      attempt.applied_promotions, attempt.request_id)
    try:
        redeemed = _redeem(project_id, attempt)
    except (DomainError, IntegrityError):
        # A repeat of an activation that went through: it may now be refused (the
        # code used up, say), or its INSERT may meet the first one's request_id.
        done = _by_request(project_id, attempt.request_id)
        if done is None:
            raise
        _require_repeat(project_id, attempt, done)
        return done

    def record(committed: bool) -> None:
        if committed:
            metrics.record_redemption(project_id)
            _LOGGER.info("code activated project=%s redemption=%s", project_id, redeemed.id)

    when_committed(record)  # on the event loop, its write group may commit later
    return redeemed


def _redeem(project_id: int, attempt: Attempt) -> RedemptionView:
    checked = _check(project_id, attempt)
    _check_limits(checked, count_profile=False)
    reward = reward_dict(checked.reward)
    for tries in range(1, ACTIVATE_TRIES + 1):
        try:
            with store.redemption_transaction():
                if tries > 1:  # what was read has changed: read it again (on SQLite, locked)
                    checked = _check(project_id, attempt)
                    _check_limits(checked)
                    reward = reward_dict(checked.reward)
                checked = _with_stored_profile(project_id, attempt, checked)
                public_id = store.redeem(
                    project_id, checked.code, checked.rules, checked.profile.id,
                    attempt.request_id, json.dumps(reward), checked.now,
                )
            return RedemptionView(
                id=public_id,
                code=checked.code.code,
                promotion=checked.code.promo_external_id,
                profile_id=checked.profile.profile_id,
                reward=reward,
                state=rules.REDEEMED,
                request_id=attempt.request_id,
                create_time=checked.now,
                rollback_time=None,
                rollback_reason="",
            )
        except store.Stale:
            continue
    raise Aborted(f"code {attempt.code!r} kept changing during the activation; retry")


# The longest rollback reason kept (a sentence or two from an operator or an order system).
MAX_ROLLBACK_REASON = 1024


def roll_back(project_id: int, redemption_id: str, reason: str) -> RedemptionView:
    problems = Violations()
    if not redemption_id:
        problems.add("redemption_id", "is required")
    if len(reason) > MAX_ROLLBACK_REASON:
        problems.add("reason", f"must be at most {MAX_ROLLBACK_REASON} characters")
    problems.raise_if_any()
    with write_transaction():
        found = store.redemption(project_id, redemption_id)
        store.roll_back(found, reason, utcnow())
    metrics.record_rollback(project_id)
    _LOGGER.info("redemption rolled back project=%s redemption=%s", project_id, redemption_id)
    return _view_of(project_id, found.id)


def list_redemptions(
    project_id: int, *, promotion: str, code: str, profile: ProfileRef | None,
    page_size: int, page_token: str, known: Sequence[FieldViolation] = (),
) -> tuple[list[RedemptionView], str]:
    """One page of redemptions, newest first, of one promotion, code or profile (or all)."""
    problems = Violations(known)
    named = [name for name, given in
             (("promotion", promotion), ("code", code), ("profile", profile)) if given]
    if len(named) > 1:
        problems.add(
            named[1], f"give at most one of promotion, code and profile, not {' and '.join(named)}"
        )
    if code:
        problems.check(lambda: require_code(code, "code"), "")
    size = problems.check(lambda: pagination.page_size(page_size), 0)
    query_key = ("redemptions", project_id, promotion, code, profile)
    cursor = problems.check(lambda: pagination.decode(page_token, query_key), None)
    problems.raise_if_any()
    query = store.redemption_view(project_id)
    if promotion:
        query = query.where(Redemption.promotion == promotions.get_row(project_id, promotion).id)
    if code:
        query = query.where(Redemption.code == _code(project_id, code).id)
    if profile is not None:
        found = profiles.find(project_id, profile)
        if found is None:
            return [], ""
        query = query.where(Redemption.profile == found.id)
    if cursor is not None:
        query = query.where(Redemption.id < cursor.after)
    rows = list(query.order_by(Redemption.id.desc()).limit(size + 1))
    more = len(rows) > size
    rows = rows[:size]
    views = [_view(row) for row in rows]
    return views, (pagination.encode(rows[-1].id, query_key) if more else "")


@dataclass(frozen=True)
class _Checked:
    code: store.Redeemable
    rules: promotion_rules.Promotion | None  # None for a global-pool code issued for none
    profile: Profile
    reward: rewards.Reward
    now: datetime


def _check(project_id: int, attempt: Attempt) -> _Checked:
    """Every check before the limits, in the contract's order; the reward if all pass.

    It stores nothing: an unknown profile_id is a new customer with no history
    (profile id 0), whom only an activation that passes stores."""
    now = utcnow()
    require_code(attempt.code, "code")
    ref = _required_profile(attempt.profile)
    by_id = ref.value if ref.by == "profile_id" else None
    row = store.redeemable(project_id, attempt.code, by_id)
    if row is None:
        raise NotFound(f"code {attempt.code!r} not found")
    rules.check_code(rules.CodeState(row.code, row.active, row.retired, row.expire_time), now)
    promo_rules = (
        promotions.by_version(row.promo_id, row.promo_version) if row.promo_id is not None
        else None
    )
    if row.profile_row_id is not None:
        profile = Profile(id=row.profile_row_id, profile_id=ref.value,
                          attributes=row.profile_attributes)
    else:
        profile = _profile(project_id, ref)
    if not _may_redeem(row, promo_rules, profile.id):
        raise rules.refuse(
            rules.CODE_ATTACHED_TO_OTHER_PROFILE,
            f"code {attempt.code!r} is attached to another profile",
        )
    if promo_rules is None:
        # A global-pool code not issued for any promotion: code checks only.
        return _Checked(row, None, profile, rewards.undiscounted(attempt.cart), now)
    rules.check_promotion(promo_rules, now)
    attributes = {**json.loads(profile.attributes or "{}"), **attempt.attributes}
    try:
        reward = rewards.evaluate(
            promo_rules, attempt.cart, attributes,
            _exclusions(project_id, attempt.applied_promotions),
        )
    except rewards.Refused as refusal:
        raise rules.refuse(refusal.reason, refusal.message) from None
    return _Checked(row, promo_rules, profile, reward, now)


def _may_redeem(
    row: store.Redeemable, promo_rules: promotion_rules.Promotion | None, profile_id: int
) -> bool:
    """Whether the profile may redeem the code as its promotion's rules stand now.

    Anyone may redeem a shared code. A single-use code attached to someone is
    its holder's; one attached to several profiles while it was shared (its
    promotion's limit since lowered to 1) is theirs, for whichever comes first.
    A holder kept from when a shared code was single-use binds no one.
    """
    if not rules.is_single_use(promo_rules, in_global_pool=row.promotion_id is None):
        return True
    if row.holder_id is not None:
        return row.holder_id == profile_id
    return row.attachment_count == 0 or store.attachment_of(row.id, profile_id) is not None


def _check_limits(checked: _Checked, *, count_profile: bool = True) -> None:
    """The limits as they stand, without counting, in the contract's order.

    The profile's redemptions are read with the code when the profile is named
    by id; else they are counted here, unless ``count_profile`` is False: then
    the per-profile limit is left to the redemption's statement to check.
    """
    limit = rules.code_limit(checked.rules, in_global_pool=checked.code.promotion_id is None)
    if limit is not None and checked.code.redemption_count >= limit:
        raise _limit(rules.CODE_LIMIT_REACHED, "code", limit)
    promo_id = checked.code.promo_id
    if checked.rules is None or promo_id is None:
        return
    user = checked.rules.redeem_user_limit
    if user is not None:
        used = checked.code.profile_redemptions
        if used is None and count_profile:
            used = store.usage_count(promo_id, checked.profile.id)
        if used is not None and used >= user:
            raise _limit(rules.USER_LIMIT_REACHED, "profile's", user)
    total = checked.rules.redeem_total_limit
    if total is not None and checked.code.promo_redemption_count >= total:
        raise _limit(rules.TOTAL_LIMIT_REACHED, "promotion's total", total)


def _limit(reason: str, whose: str, limit: int | None) -> DomainError:
    return rules.exhausted(reason, f"the {whose} redemption limit ({limit}) is reached")


def _code(project_id: int, code: str) -> Code:
    row = store.code_row(project_id, code)
    if row is None:
        raise NotFound(f"code {code!r} not found")
    return row


def _state(row: Code) -> rules.CodeState:
    return rules.CodeState(row.code, bool(row.active), row.retire_time is not None,
                           row.expire_time)


def _require_pool(row: Code, promotion: Promotion) -> None:
    if row.promotion_id == promotion.id:
        return
    if row.promotion_id is None and row.issued_for_id in (None, promotion.id):
        return
    raise rules.refuse(rules.CODE_IN_OTHER_POOL,
                       f"code {row.code!r} belongs to another promotion's pool")


PROFILE_REQUIRED = "name the profile by profile_id, email, phone or custom"


def _required_profile(ref: ProfileRef | None) -> ProfileRef:
    if ref is None:
        raise InvalidArgument.field("profile", PROFILE_REQUIRED)
    return ref


def _profile(project_id: int, ref: ProfileRef | None) -> Profile:
    ref = _required_profile(ref)
    found = profiles.find(project_id, ref)
    return found if found is not None else Profile(id=0, profile_id=ref.value, attributes="{}")


def _with_stored_profile(project_id: int, attempt: Attempt, checked: _Checked) -> _Checked:
    """``checked``, its profile stored first if it is new: in the redemption's
    transaction on SQLite, so a refused activation stores nothing. (On
    PostgreSQL the profile is committed just before the redemption's statement,
    which may still find a limit reached by a call that raced it.)"""
    if checked.profile.id:
        return checked
    profile = profiles.find_or_create(project_id, _required_profile(attempt.profile))
    return replace(checked, profile=profile)


def _exclusions(project_id: int, applied: Sequence[str]) -> dict[str, Sequence[str]]:
    out: dict[str, Sequence[str]] = {}
    for external_id in applied:
        try:
            out[external_id] = promotions.get(project_id, external_id).excluded_promotions
        except NotFound:
            out[external_id] = ()
    return out


def reward_dict(reward: rewards.Reward) -> dict[str, Any]:
    """The reward as the strings callers see ("100.00")."""
    money = rewards.money
    return {
        "cart_total": money(reward.cart_total),
        "discount_total": money(reward.discount_total),
        "final_total": money(reward.final_total),
        "items": [
            {"sku": i.sku, "quantity": i.quantity, "unit_price": money(i.unit_price),
             "discount": money(i.discount), "final_price": money(i.final_price)}
            for i in reward.items
        ],
        "bonus": [{"sku": b.sku, "quantity": b.quantity} for b in reward.bonus],
    }


def _require_repeat(project_id: int, attempt: Attempt, done: RedemptionView) -> None:
    """Refuses a request_id that redeemed another code, or for another profile: the
    caller reused an id it meant for one redemption, and answering with that
    redemption would tell it a code was redeemed that was not. (The cart may
    differ: a retry may recompute it.)"""
    ref = _required_profile(attempt.profile)
    if ref.by == "profile_id":
        same_profile = ref.value == done.profile_id
    else:
        try:
            found = profiles.find(project_id, ref)
        except DomainError:  # no profile, or several: not the one that redeemed
            found = None
        same_profile = found is not None and found.profile_id == done.profile_id
    if key_of(attempt.code) != key_of(done.code) or not same_profile:
        raise AlreadyExists(
            f"request_id {attempt.request_id!r} already redeemed code {done.code!r} for "
            f"profile_id {done.profile_id!r} (redemption {done.id}); "
            "send a new request_id for a new redemption"
        )


def _by_request(project_id: int, request_id: str) -> RedemptionView | None:
    found = store.redemption_by_request(project_id, request_id)
    return None if found is None else _view_of(project_id, found.id)


def _view_of(project_id: int, row_id: int) -> RedemptionView:
    return _view(store.redemption_view(project_id).where(Redemption.id == row_id).get())


def _view(row: Any) -> RedemptionView:
    return RedemptionView(
        id=row.public_id,
        code=row.code.code,
        promotion=row.promotion.external_id if row.promotion is not None else "",
        profile_id=row.profile.profile_id,
        reward=json.loads(row.reward),
        state=row.state,
        request_id=row.request_id or "",
        create_time=row.create_time,
        rollback_time=row.rollback_time,
        rollback_reason=row.rollback_reason,
    )
