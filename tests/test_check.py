"""`promo-server check`, on SQLite and PostgreSQL: a database after real activity passes,
and each invariant, broken on purpose by hand-written SQL, is reported by name."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator

import psycopg2
import pytest

from promo.v1 import code_pb2 as pb
from promo.v1 import code_pb2_grpc, promotion_pb2_grpc
from tests.conftest import Running, bearer
from tests.processes import check
from tests.test_lifecycle import Api


def tamper(db_url: str, *statements: str) -> None:
    """Runs SQL behind the server's back, with foreign keys unchecked."""
    if db_url.startswith("sqlite"):
        sqlite = sqlite3.connect(db_url.removeprefix("sqlite:///"))  # foreign_keys off
        try:
            for statement in statements:
                sqlite.execute(statement)
            sqlite.commit()
        finally:
            sqlite.close()
        return
    postgres = psycopg2.connect(db_url)
    try:
        with postgres, postgres.cursor() as cursor:
            cursor.execute("SET session_replication_role = replica")  # no foreign-key triggers
            for statement in statements:
                cursor.execute(statement)
    finally:
        postgres.close()


def import_codes(api: Api, promotion: str, codes: list[str], replace: bool = False) -> None:
    mode = pb.ImportCodesRequest.Spec.REPLACE if replace else pb.ImportCodesRequest.Spec.APPEND
    api.codes.ImportCodes(
        iter([pb.ImportCodesRequest(spec=pb.ImportCodesRequest.Spec(promotion=promotion,
                                                                    mode=mode)),
              pb.ImportCodesRequest(chunk="".join(f"{c}\n" for c in codes).encode())]),
        metadata=bearer(api.key),
    )


@pytest.fixture
def busy(running: Running) -> Iterator[str]:
    """A database after imports, attaches, activations, a retry and a rollback; its URL.

    Project "shop": "single" (single-use codes, 2 per profile, 5 in all) with S-1 held
    and redeemed by ann, S-2 held by bob, redeemed and rolled back, S-3 and S-4
    retired; "multi" (3 per code) with M-1 attached to and redeemed by ann and bob,
    M-2 redeemed by ann; the global pool's G-1 issued for "single" to ann and
    redeemed, G-2 redeemed by cid.
    """
    project = running.new_project("shop")
    with running.channel() as channel:
        api = Api(code_pb2_grpc.CodeServiceStub(channel),
                  promotion_pb2_grpc.PromotionServiceStub(channel), project.admin_key)
        api.promotion("single", redeem_code_limit=1, redeem_user_limit=2, redeem_total_limit=5)
        api.promotion("multi", redeem_code_limit=3)
        import_codes(api, "single", ["S-1", "S-2", "S-3", "S-4"])
        import_codes(api, "multi", ["M-1", "M-2"])
        import_codes(api, "", ["G-1", "G-2"])
        assert api.attach("ann", "single").code == "S-1"
        assert api.attach("bob", "single").code == "S-2"
        api.attach("ann", "single", "G-1")
        api.attach("ann", "multi", "M-1")
        api.attach("bob", "multi", "M-1")
        first = api.activate("S-1", "ann", request_id="order-1")
        assert api.activate("S-1", "ann", request_id="order-1").id == first.id
        rolled = api.activate("S-2", "bob")
        api.codes.RollbackRedemption(pb.RollbackRedemptionRequest(redemption_id=rolled.id),
                                     metadata=bearer(api.key))
        api.activate("M-1", "ann")
        api.activate("M-1", "bob")
        api.activate("M-2", "ann")
        api.activate("G-1", "ann")
        api.activate("G-2", "cid")
        import_codes(api, "single", ["S-9"], replace=True)  # retires S-3 and S-4
        assert api.code("S-3").retired
    yield running.db_url


def breaches(db_url: str, kind: str) -> list[str]:
    """The lines `check` printed about breaches of one kind; it must have exited 1."""
    status, lines = check(db_url)
    assert status == 1, lines
    assert re.fullmatch(r"\d+ breaches: checked \d+ codes, \d+ redemptions, \d+ attachments",
                        lines[-1]), lines
    return [line.removeprefix(f"{kind}: ") for line in lines if line.startswith(f"{kind}: ")]


def profile(name: str) -> str:
    return f"(SELECT id FROM profile WHERE profile_id = '{name}')"


def promotion(name: str) -> str:
    return f"(SELECT id FROM promotion WHERE external_id = '{name}')"


def test_a_database_after_real_activity_passes(busy: str) -> None:
    assert check(busy) == (0, ["ok: checked 9 codes, 7 redemptions, 5 attachments"])


def test_a_code_counter_off_its_redemptions_or_attachments(busy: str) -> None:
    tamper(busy, "UPDATE code SET redemption_count = redemption_count + 1 WHERE code = 'M-2'",
           "UPDATE code SET attachment_count = 0 WHERE code = 'S-1'")

    assert breaches(busy, "CODE_REDEMPTION_COUNT") == [
        "project 'shop' promotion 'multi' code 'M-2': redemption_count 2, live redemptions 1"
    ]
    assert breaches(busy, "CODE_ATTACHMENT_COUNT") == [
        "project 'shop' promotion 'single' code 'S-1': attachment_count 0, attachments 1"
    ]


def test_a_promotion_counter_off_its_redemptions(busy: str) -> None:
    # On PostgreSQL, "multi" (no total limit) counts in shares: its row holds none of the 3.
    tamper(busy, "UPDATE promotion SET redemption_count = redemption_count + 4 "
                 "WHERE external_id = 'multi'")

    assert breaches(busy, "PROMOTION_REDEMPTION_COUNT") == [
        "project 'shop' promotion 'multi': redemption_count 7, live redemptions 3"
    ]


def test_a_count_in_shares_of_a_promotion_with_a_total_limit(busy: str) -> None:
    # Its limit is checked against its row alone: a share would go unseen.
    tamper(
        busy,
        "UPDATE promotion SET redemption_count = redemption_count - 1 "
        "WHERE external_id = 'single'",
        "INSERT INTO redemption_share (promotion_id, share, redemption_count) "
        f"VALUES ({promotion('single')}, 3, 1)",
    )

    assert breaches(busy, "LIMITED_PROMOTION_SHARES") == [
        "project 'shop' promotion 'single': "
        "1 of its redemptions counted in shares, unseen by its limit"
    ]
    assert breaches(busy, "PROMOTION_REDEMPTION_COUNT") == []


def test_a_profile_counter_off_its_redemptions_or_missing(busy: str) -> None:
    tamper(
        busy,
        "UPDATE promotion_usage SET redemption_count = 0 "
        f"WHERE promotion_id = {promotion('multi')} AND profile_id = {profile('ann')}",
        f"DELETE FROM promotion_usage WHERE profile_id = {profile('bob')}",
    )

    assert breaches(busy, "USAGE_REDEMPTION_COUNT") == [
        "project 'shop' promotion 'multi' profile_id 'ann': "
        "promotion_usage redemption_count 0, live redemptions 2",
        "project 'shop' promotion 'multi' profile_id 'bob': "
        "promotion_usage redemption_count missing, live redemptions 1",
    ]


def test_a_holder_without_its_attachment(busy: str) -> None:
    tamper(busy, f"UPDATE code SET holder_id = {profile('bob')} WHERE code = 'S-1'")

    assert breaches(busy, "HOLDER_NOT_SOLE_ATTACHMENT") == [
        "project 'shop' promotion 'single' code 'S-1': "
        "held by profile_id 'bob', attached 1 times, none to the holder"
    ]


def test_a_single_use_code_attached_twice(busy: str) -> None:
    tamper(
        busy,
        "INSERT INTO attachment (project_id, code_id, profile_id, promotion_id, attach_time) "
        f"SELECT project_id, id, {profile('cid')}, {promotion('single')}, create_time "
        "FROM code WHERE code IN ('S-1', 'G-1')",
    )

    assert breaches(busy, "SINGLE_USE_CODE_SHARED") == [
        "project 'shop' promotion 'single' code 'S-1': "
        "single-use, attached to 2 profiles: 'ann', 'cid'",
        "project 'shop' global pool code 'G-1': single-use, attached to 2 profiles: 'ann', 'cid'",
    ]


def test_a_limit_lowered_below_the_redemptions_shows_as_exceeded(busy: str) -> None:
    tamper(busy, "UPDATE promotion SET redeem_code_limit = 1, redeem_user_limit = 1, "
                 "redeem_total_limit = 2 WHERE external_id = 'multi'")

    assert breaches(busy, "CODE_LIMIT_EXCEEDED") == [
        "project 'shop' promotion 'multi' code 'M-1': 2 live redemptions, limit 1"
    ]
    assert breaches(busy, "USER_LIMIT_EXCEEDED") == [
        "project 'shop' promotion 'multi' profile_id 'ann': 2 live redemptions, "
        "redeem_user_limit 1"
    ]
    assert breaches(busy, "TOTAL_LIMIT_EXCEEDED") == [
        "project 'shop' promotion 'multi': 3 live redemptions, redeem_total_limit 2"
    ]


def test_a_global_pool_code_redeemed_twice_exceeds_its_limit(busy: str) -> None:
    tamper(
        busy,
        "INSERT INTO redemption (public_id, project_id, code_id, promotion_id, profile_id, "
        "request_id, state, reward, create_time, rollback_reason) "
        f"SELECT 'forged-1', project_id, id, NULL, {profile('ann')}, NULL, 'REDEEMED', '{{}}', "
        "create_time, '' FROM code WHERE code = 'G-2'",
        "UPDATE code SET redemption_count = 2 WHERE code = 'G-2'",
    )

    assert breaches(busy, "CODE_LIMIT_EXCEEDED") == [
        "project 'shop' global pool code 'G-2': 2 live redemptions, limit 1"
    ]


def test_rows_pointing_at_missing_rows(busy: str) -> None:
    bob = query(busy, "SELECT id FROM profile WHERE profile_id = 'bob'")[0][0]
    tamper(busy, "DELETE FROM profile WHERE profile_id = 'bob'",
           "UPDATE code SET promotion_id = 999999 WHERE code = 'S-9'")

    missing = [line.partition(": ") for line in breaches(busy, "MISSING_REFERENCE")]
    rows = sorted((where if where.startswith("code") else where.split(" ")[0], problem)
                  for where, _, problem in missing)
    gone = f"profile_id {bob} names no profile"
    assert rows == [
        ("attachment", gone), ("attachment", gone),  # of S-2 and M-1
        ("code 'S-2'", f"holder_id {bob} names no profile"),
        ("code 'S-9'", "promotion_id 999999 names no promotion"),
        ("promotion_usage", gone), ("promotion_usage", gone),  # of single and multi
        ("redemption", gone), ("redemption", gone),  # of S-2 (rolled back) and M-1
    ]


def test_a_code_attached_after_it_was_retired(busy: str) -> None:
    tamper(busy, "UPDATE code SET retire_time = '2001-02-03 04:05:06' WHERE code = 'M-1'")

    assert [line.partition(": ")[0] for line in breaches(busy, "ATTACHED_AFTER_RETIRE")] == [
        "project 'shop' promotion 'multi' code 'M-1' profile_id 'ann'",
        "project 'shop' promotion 'multi' code 'M-1' profile_id 'bob'",
    ]


def test_many_breaches_of_a_kind_are_counted_after_the_first_twenty(busy: str) -> None:
    tamper(
        busy,
        "INSERT INTO code (project_id, promotion_id, code, code_key, active, attachment_count, "
        "redemption_count, create_time) "
        "SELECT project_id, promotion_id, code || '-' || n, lower(code) || '-' || n, TRUE, 0, 1, "
        "create_time FROM code, (SELECT 1 AS n UNION SELECT 2 UNION SELECT 3) AS copies "
        "WHERE code_key LIKE 's-%' OR code_key LIKE 'm-%' OR code_key LIKE 'g-%'",
    )

    listed = breaches(busy, "CODE_REDEMPTION_COUNT")  # 9 codes copied 3 times: 27
    assert len(listed) == 21
    assert listed[-1] == "and 7 more"
    assert check(busy)[1][-1] == "27 breaches: checked 36 codes, 7 redemptions, 5 attachments"


def query(db_url: str, sql: str) -> list[tuple[object, ...]]:
    if db_url.startswith("sqlite"):
        sqlite = sqlite3.connect(db_url.removeprefix("sqlite:///"))
        try:
            return sqlite.execute(sql).fetchall()
        finally:
            sqlite.close()
    postgres = psycopg2.connect(db_url)
    try:
        with postgres.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchall()
    finally:
        postgres.close()
