"""Handing codes out and redeeming them: the refusals, in the order the contract checks them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from promo_server.domain import promotions
from promo_server.domain.errors import FailedPrecondition, ResourceExhausted

CODE_INACTIVE = "CODE_INACTIVE"
CODE_EXPIRED = "CODE_EXPIRED"
CODE_RETIRED = "CODE_RETIRED"
CODE_ATTACHED_TO_OTHER_PROFILE = "CODE_ATTACHED_TO_OTHER_PROFILE"
CODE_ALREADY_ATTACHED = "CODE_ALREADY_ATTACHED"
PROMOTION_INACTIVE = "PROMOTION_INACTIVE"
PROMOTION_NOT_STARTED = "PROMOTION_NOT_STARTED"
PROMOTION_ENDED = "PROMOTION_ENDED"
TOTAL_LIMIT_REACHED = "TOTAL_LIMIT_REACHED"
USER_LIMIT_REACHED = "USER_LIMIT_REACHED"
CODE_LIMIT_REACHED = "CODE_LIMIT_REACHED"
POOL_EMPTY = "POOL_EMPTY"
ALREADY_ROLLED_BACK = "ALREADY_ROLLED_BACK"
# Beyond the contract's list: refusals it names no reason for.
CODE_IN_OTHER_POOL = "CODE_IN_OTHER_POOL"  # AttachCode of another promotion's code
CODE_ATTACHED_TO_SEVERAL_PROFILES = "CODE_ATTACHED_TO_SEVERAL_PROFILES"  # DetachCode, no profile
PROFILE_AMBIGUOUS = "PROFILE_AMBIGUOUS"  # a ProfileRef that several profiles match

REDEEMED = "REDEEMED"
ROLLED_BACK = "ROLLED_BACK"


@dataclass(frozen=True)
class CodeState:
    """What the checks need of a code row."""

    code: str
    active: bool
    retired: bool
    expire_time: datetime | None


def refuse(reason: str, message: str) -> FailedPrecondition:
    return FailedPrecondition(message, reason=reason)


def exhausted(reason: str, message: str) -> ResourceExhausted:
    return ResourceExhausted(message, reason=reason)


def check_code(code: CodeState, now: datetime) -> None:
    """Refuses a code that is inactive, retired or expired, in that order."""
    if not code.active:
        raise refuse(CODE_INACTIVE, f"code {code.code!r} is inactive")
    if code.retired:
        raise refuse(CODE_RETIRED, f"code {code.code!r} is retired")
    if code.expire_time is not None and code.expire_time <= now:
        raise refuse(CODE_EXPIRED, f"code {code.code!r} expired at {code.expire_time}Z")


def check_promotion(promotion: promotions.Promotion, now: datetime) -> None:
    """Refuses a promotion that is inactive or outside its time window."""
    name = promotion.external_id
    if promotion.state != promotions.ACTIVE:
        raise refuse(PROMOTION_INACTIVE, f"promotion {name!r} is inactive")
    if promotion.start_time is not None and now < promotion.start_time:
        raise refuse(PROMOTION_NOT_STARTED, f"promotion {name!r} starts {promotion.start_time}Z")
    if promotion.end_time is not None and now >= promotion.end_time:
        raise refuse(PROMOTION_ENDED, f"promotion {name!r} ended {promotion.end_time}Z")


def code_limit(promotion: promotions.Promotion | None, in_global_pool: bool) -> int | None:
    """How often one code may be redeemed: global-pool codes are single-use, whatever
    the redeem_code_limit of the promotion they were issued for."""
    return 1 if promotion is None or in_global_pool else promotion.redeem_code_limit


def is_single_use(promotion: promotions.Promotion | None, in_global_pool: bool) -> bool:
    return code_limit(promotion, in_global_pool) == 1
