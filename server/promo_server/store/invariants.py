"""What must hold of the stored counters, attachments and limits: ``promo-server check``.

Each check is one query comparing what the counters say with the rows they
count, or the rows with the limits; it returns the breaches it found. The
counts compared are live redemptions (state REDEEMED: a rollback gives its
use back). Run them through ``check``, which reads every table in one
snapshot, so a server writing meanwhile shows no half-done redemption.

A limit lowered below what was already redeemed shows as a breach: the
server never undoes redemptions, and the check cannot tell a lowered limit
from an exceeded one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from promo_server.domain.lifecycle import REDEEMED
from promo_server.store.db import database, execute, is_sqlite

CODE_REDEMPTION_COUNT = "CODE_REDEMPTION_COUNT"
CODE_ATTACHMENT_COUNT = "CODE_ATTACHMENT_COUNT"
PROMOTION_REDEMPTION_COUNT = "PROMOTION_REDEMPTION_COUNT"
USAGE_REDEMPTION_COUNT = "USAGE_REDEMPTION_COUNT"
HOLDER_NOT_SOLE_ATTACHMENT = "HOLDER_NOT_SOLE_ATTACHMENT"
SINGLE_USE_CODE_SHARED = "SINGLE_USE_CODE_SHARED"
CODE_LIMIT_EXCEEDED = "CODE_LIMIT_EXCEEDED"
USER_LIMIT_EXCEEDED = "USER_LIMIT_EXCEEDED"
TOTAL_LIMIT_EXCEEDED = "TOTAL_LIMIT_EXCEEDED"
LIMITED_PROMOTION_SHARES = "LIMITED_PROMOTION_SHARES"
MISSING_REFERENCE = "MISSING_REFERENCE"
ATTACHED_AFTER_RETIRE = "ATTACHED_AFTER_RETIRE"

# How many breaches of one kind a report lists before it only counts the rest.
LISTED_PER_KIND = 20


@dataclass(frozen=True)
class Breach:
    """One invariant that does not hold: its kind, the rows it names, what is wrong."""

    kind: str
    where: str
    problem: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.where}: {self.problem}"


@dataclass
class Report:
    code_count: int = 0
    redemption_count: int = 0
    attachment_count: int = 0
    breaches: list[Breach] = field(default_factory=list)

    def summary(self) -> str:
        verdict = "ok" if not self.breaches else f"{len(self.breaches)} breaches"
        return (
            f"{verdict}: checked {self.code_count} codes, {self.redemption_count} redemptions, "
            f"{self.attachment_count} attachments"
        )

    def lines(self, listed_per_kind: int = LISTED_PER_KIND) -> list[str]:
        """One line per breach, at most ``listed_per_kind`` of each kind, then how many more."""
        by_kind: dict[str, list[Breach]] = {}
        for breach in self.breaches:
            by_kind.setdefault(breach.kind, []).append(breach)
        out: list[str] = []
        for kind, breaches in by_kind.items():
            out += [str(breach) for breach in breaches[:listed_per_kind]]
            if len(breaches) > listed_per_kind:
                out.append(f"{kind}: and {len(breaches) - listed_per_kind} more")
        return out


def check() -> Report:
    """Runs every check on one snapshot of the database."""
    with database.atomic():
        if not is_sqlite():
            execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        report = Report(
            code_count=_count("code"),
            redemption_count=_count("redemption"),
            attachment_count=_count("attachment"),
        )
        for each in CHECKS:
            report.breaches += each()
    return report


def _count(table: str) -> int:
    return int(execute(f"SELECT count(*) FROM {table}").fetchone()[0])


# --- how breaches name rows ---------------------------------------------------------------

# The columns naming a code: its project, pool and text. Queries alias the
# code ``c``, its project ``pj`` and its pool's promotion ``p``.
_CODE_NAMES = "pj.name, p.external_id, c.code"
_CODE_JOINS = (
    "LEFT JOIN project pj ON pj.id = c.project_id "
    "LEFT JOIN promotion p ON p.id = c.promotion_id "
)
# Live redemptions per code, per promotion and per (promotion, profile).
_LIVE_BY_CODE = "(SELECT code_id, count(*) AS n FROM redemption WHERE state = ? GROUP BY code_id)"
_LIVE_BY_PROMOTION = (
    "(SELECT promotion_id, count(*) AS n FROM redemption "
    "WHERE state = ? AND promotion_id IS NOT NULL GROUP BY promotion_id)"
)
# What each promotion counted in its shares (see RedemptionShare).
_SHARED_BY_PROMOTION = (
    "(SELECT promotion_id, sum(redemption_count) AS n FROM redemption_share "
    "GROUP BY promotion_id)"
)
_LIVE_BY_USER = (
    "(SELECT promotion_id, profile_id, count(*) AS n FROM redemption "
    "WHERE state = ? AND promotion_id IS NOT NULL GROUP BY promotion_id, profile_id)"
)


def _code(project: str | None, promotion: str | None, code: str) -> str:
    pool = "global pool" if promotion is None else f"promotion {promotion!r}"
    return f"project {project!r} {pool} code {code!r}"


def _promotion(project: str | None, promotion: str) -> str:
    return f"project {project!r} promotion {promotion!r}"


# --- the checks ---------------------------------------------------------------------------


def code_counts() -> list[Breach]:
    """Each code's redemption_count is its live redemptions; attachment_count its attachments."""
    rows = execute(
        f"SELECT {_CODE_NAMES}, c.redemption_count, coalesce(r.n, 0), "
        "c.attachment_count, coalesce(a.n, 0) "
        f"FROM code c {_CODE_JOINS}"
        f"LEFT JOIN {_LIVE_BY_CODE} r ON r.code_id = c.id "
        "LEFT JOIN (SELECT code_id, count(*) AS n FROM attachment GROUP BY code_id) a "
        "ON a.code_id = c.id "
        "WHERE c.redemption_count <> coalesce(r.n, 0) OR c.attachment_count <> coalesce(a.n, 0) "
        "ORDER BY c.id",
        (REDEEMED,),
    )
    out = []
    for project, promotion, code, counted, live, attach_counted, attached in rows:
        where = _code(project, promotion, code)
        if counted != live:
            out.append(Breach(CODE_REDEMPTION_COUNT, where,
                              f"redemption_count {counted}, live redemptions {live}"))
        if attach_counted != attached:
            out.append(Breach(CODE_ATTACHMENT_COUNT, where,
                              f"attachment_count {attach_counted}, attachments {attached}"))
    return out


def promotion_counts() -> list[Breach]:
    """Each promotion's redemption count (its row's and its shares') is its live
    redemptions, within redeem_total_limit; with a limit, the row holds all of it."""
    rows = execute(
        "SELECT pj.name, p.external_id, p.redemption_count, coalesce(s.n, 0), "
        "coalesce(r.n, 0), p.redeem_total_limit "
        "FROM promotion p LEFT JOIN project pj ON pj.id = p.project_id "
        f"LEFT JOIN {_LIVE_BY_PROMOTION} r ON r.promotion_id = p.id "
        f"LEFT JOIN {_SHARED_BY_PROMOTION} s ON s.promotion_id = p.id "
        "WHERE p.redemption_count + coalesce(s.n, 0) <> coalesce(r.n, 0) "
        "OR coalesce(r.n, 0) > coalesce(p.redeem_total_limit, coalesce(r.n, 0)) "
        "OR (p.redeem_total_limit IS NOT NULL AND s.n IS NOT NULL) "
        "ORDER BY p.id",
        (REDEEMED,),
    )
    out = []
    for project, promotion, counted, shared, live, limit in rows:
        where = _promotion(project, promotion)
        if counted + shared != live:
            out.append(Breach(PROMOTION_REDEMPTION_COUNT, where,
                              f"redemption_count {counted + shared}, live redemptions {live}"))
        if limit is not None and live > limit:
            out.append(Breach(TOTAL_LIMIT_EXCEEDED, where,
                              f"{live} live redemptions, redeem_total_limit {limit}"))
        if limit is not None and shared:
            out.append(Breach(
                LIMITED_PROMOTION_SHARES, where,
                f"{shared} of its redemptions counted in shares, unseen by its limit",
            ))
    return out


def usage_counts() -> list[Breach]:
    """Each promotion_usage row counts the profile's live redemptions of the promotion,
    and every profile with live redemptions of a promotion has one."""
    names = (
        "pj.name, p.external_id, pr.profile_id FROM {source} "
        "LEFT JOIN promotion p ON p.id = {alias}.promotion_id "
        "LEFT JOIN project pj ON pj.id = p.project_id "
        "LEFT JOIN profile pr ON pr.id = {alias}.profile_id "
    )
    counted = execute(
        "SELECT u.redemption_count, coalesce(r.n, 0), "
        + names.format(source="promotion_usage u", alias="u")
        + f"LEFT JOIN {_LIVE_BY_USER} r "
        "ON r.promotion_id = u.promotion_id AND r.profile_id = u.profile_id "
        "WHERE u.redemption_count <> coalesce(r.n, 0) ORDER BY u.id",
        (REDEEMED,),
    ).fetchall()
    uncounted = execute(
        "SELECT NULL, r.n, "
        + names.format(source=f"{_LIVE_BY_USER} r", alias="r")
        + "LEFT JOIN promotion_usage u "
        "ON u.promotion_id = r.promotion_id AND u.profile_id = r.profile_id "
        "WHERE u.id IS NULL ORDER BY r.promotion_id, r.profile_id",
        (REDEEMED,),
    ).fetchall()
    return [
        Breach(
            USAGE_REDEMPTION_COUNT,
            f"{_promotion(project, promotion)} profile_id {profile_id!r}",
            f"promotion_usage redemption_count {'missing' if count is None else count}, "
            f"live redemptions {live}",
        )
        for count, live, project, promotion, profile_id in counted + uncounted
    ]


def user_limits() -> list[Breach]:
    """No profile has more live redemptions of a promotion than its redeem_user_limit."""
    rows = execute(
        "SELECT pj.name, p.external_id, pr.profile_id, r.n, p.redeem_user_limit "
        f"FROM {_LIVE_BY_USER} r JOIN promotion p ON p.id = r.promotion_id "
        "LEFT JOIN project pj ON pj.id = p.project_id "
        "LEFT JOIN profile pr ON pr.id = r.profile_id "
        "WHERE r.n > coalesce(p.redeem_user_limit, r.n) ORDER BY r.promotion_id, r.profile_id",
        (REDEEMED,),
    )
    return [
        Breach(USER_LIMIT_EXCEEDED, f"{_promotion(project, promotion)} profile_id {profile_id!r}",
               f"{live} live redemptions, redeem_user_limit {limit}")
        for project, promotion, profile_id, live, limit in rows
    ]


def code_limits() -> list[Breach]:
    """No code has more live redemptions than its limit: its promotion's
    redeem_code_limit, or 1 for a global-pool code."""
    limit = "CASE WHEN c.promotion_id IS NULL THEN 1 ELSE p.redeem_code_limit END"
    rows = execute(
        f"SELECT {_CODE_NAMES}, r.n, {limit} "
        f"FROM {_LIVE_BY_CODE} r JOIN code c ON c.id = r.code_id {_CODE_JOINS}"
        f"WHERE r.n > coalesce({limit}, r.n) ORDER BY c.id",
        (REDEEMED,),
    )
    return [
        Breach(CODE_LIMIT_EXCEEDED, _code(project, promotion, code),
               f"{live} live redemptions, limit {limit_of}")
        for project, promotion, code, live, limit_of in rows
    ]


def holders() -> list[Breach]:
    """A code with a holder is attached to that profile and to no other."""
    attached = "(SELECT count(*) FROM attachment a WHERE a.code_id = c.id)"
    rows = execute(
        f"SELECT {_CODE_NAMES}, h.profile_id, c.holder_id, {attached}, "
        "EXISTS (SELECT 1 FROM attachment a WHERE a.code_id = c.id AND a.profile_id = c.holder_id) "
        f"FROM code c {_CODE_JOINS}LEFT JOIN profile h ON h.id = c.holder_id "
        f"WHERE c.holder_id IS NOT NULL AND ({attached} <> 1 OR NOT EXISTS "
        "(SELECT 1 FROM attachment a WHERE a.code_id = c.id AND a.profile_id = c.holder_id)) "
        "ORDER BY c.id"
    )
    out = []
    for project, promotion, code, holder, holder_row, count, holder_attached in rows:
        whose = f"profile_id {holder!r}" if holder is not None else f"profile row {holder_row}"
        to_holder = "one of them to" if holder_attached else "none to"
        out.append(Breach(HOLDER_NOT_SOLE_ATTACHMENT, _code(project, promotion, code),
                          f"held by {whose}, attached {count} times, {to_holder} the holder"))
    return out


def single_use_codes() -> list[Breach]:
    """A single-use code (redeem_code_limit 1, or the global pool's) has at most one
    attachment."""
    rows = execute(
        f"SELECT c.id, {_CODE_NAMES}, pr.profile_id "
        "FROM (SELECT code_id FROM attachment GROUP BY code_id HAVING count(*) > 1) shared "
        f"JOIN code c ON c.id = shared.code_id {_CODE_JOINS}"
        "JOIN attachment a ON a.code_id = c.id LEFT JOIN profile pr ON pr.id = a.profile_id "
        "WHERE c.promotion_id IS NULL OR p.redeem_code_limit = 1 ORDER BY c.id, a.id"
    )
    holders_of: dict[int, tuple[str, list[str]]] = {}
    for code_id, project, promotion, code, profile_id in rows:
        _, profiles = holders_of.setdefault(code_id, (_code(project, promotion, code), []))
        profiles.append(repr(profile_id))
    return [
        Breach(SINGLE_USE_CODE_SHARED, where,
               f"single-use, attached to {len(profiles)} profiles: {', '.join(profiles)}")
        for where, profiles in holders_of.values()
    ]


# Each reference the database may not enforce (PostgreSQL has no foreign keys
# on code): (table, its name for a row, column, the table it points into).
_REFERENCES = (
    ("redemption", "public_id", "code_id", "code"),
    ("redemption", "public_id", "profile_id", "profile"),
    ("redemption", "public_id", "promotion_id", "promotion"),
    ("attachment", "id", "code_id", "code"),
    ("attachment", "id", "profile_id", "profile"),
    ("attachment", "id", "promotion_id", "promotion"),
    ("promotion_usage", "id", "promotion_id", "promotion"),
    ("promotion_usage", "id", "profile_id", "profile"),
    ("code", "code", "project_id", "project"),
    ("code", "code", "promotion_id", "promotion"),
    ("code", "code", "holder_id", "profile"),
    ("code", "code", "issued_for_id", "promotion"),
)


def references() -> list[Breach]:
    """No redemption, attachment, usage or code row points at a row that is not there."""
    out = []
    for table, name, column, target in _REFERENCES:
        rows = execute(
            f"SELECT t.{name}, t.{column} FROM {table} t WHERE t.{column} IS NOT NULL "
            f"AND NOT EXISTS (SELECT 1 FROM {target} x WHERE x.id = t.{column}) ORDER BY t.id"
        )
        label = "redemption" if table == "redemption" else f"{table} row" if name == "id" else table
        out += [
            Breach(MISSING_REFERENCE, f"{label} {row_name!r}",
                   f"{column} {missing} names no {target}")
            for row_name, missing in rows
        ]
    return out


def retired_attachments() -> list[Breach]:
    """No code is attached after it was retired."""
    rows = execute(
        f"SELECT {_CODE_NAMES}, pr.profile_id, a.attach_time, c.retire_time "
        f"FROM attachment a JOIN code c ON c.id = a.code_id {_CODE_JOINS}"
        "LEFT JOIN profile pr ON pr.id = a.profile_id "
        "WHERE c.retire_time IS NOT NULL AND a.attach_time > c.retire_time ORDER BY a.id"
    )
    return [
        Breach(ATTACHED_AFTER_RETIRE, f"{_code(project, promotion, code)} profile_id {who!r}",
               f"attached at {attached}Z, retired at {retired}Z")
        for project, promotion, code, who, attached, retired in rows
    ]


CHECKS: Iterable[Callable[[], list[Breach]]] = (
    code_counts,
    promotion_counts,
    usage_counts,
    user_limits,
    code_limits,
    holders,
    single_use_codes,
    references,
    retired_attachments,
)
