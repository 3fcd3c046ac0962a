"""A promotion's redemption count, wherever it is kept: on PostgreSQL, a promotion with
no total limit counts its activations in shares, not in its row (RedemptionShare).

Callers see one count either way, a limit set later sees every redemption made
before it, and rolling back gives a use back, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import psycopg2
import pytest
from google.protobuf import field_mask_pb2

from promo.v1 import code_pb2 as pb
from promo.v1 import code_pb2_grpc, promotion_pb2, promotion_pb2_grpc
from tests.conftest import Project, Running, bearer
from tests.processes import check
from tests.test_lifecycle import Api, in_parallel, reasons, set_limit


@pytest.fixture
def api(running: Running, project: Project) -> Iterator[Api]:
    with running.channel() as channel:
        yield Api(code_pb2_grpc.CodeServiceStub(channel),
                  promotion_pb2_grpc.PromotionServiceStub(channel), project.admin_key)


def count_of(api: Api, external_id: str) -> int:
    promotion = api.promotions.GetPromotion(
        promotion_pb2.GetPromotionRequest(external_id=external_id), metadata=bearer(api.key))
    return promotion.redemption_count


def set_total_limit(api: Api, external_id: str, limit: int | None) -> None:
    set_limit(api, external_id, "redeem_total_limit", limit)


def shares_of(db_url: str, external_id: str) -> int:
    """How many share rows hold the promotion's count (always none on SQLite)."""
    if not db_url.startswith("postgres"):
        return 0
    conn = psycopg2.connect(db_url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM redemption_share s JOIN promotion p ON p.id = s.promotion_id "
                "WHERE p.external_id = %s", (external_id,))
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def test_activations_without_a_total_limit_are_counted_once_each(
    api: Api, running: Running
) -> None:
    promo = api.promotion("open")
    api.pool(promo, *[f"O-{i}" for i in range(40)])

    results = in_parallel([(lambda i=i: api.activate(f"O-{i}", f"u{i % 7}")) for i in range(40)])

    redeemed = [r for r in results if isinstance(r, pb.Redemption)]
    assert len(redeemed) == 40
    assert count_of(api, promo) == 40
    listed = api.promotions.ListPromotions(promotion_pb2.ListPromotionsRequest(),
                                           metadata=bearer(api.key)).promotions
    assert [p.redemption_count for p in listed] == [40]
    if running.db_url.startswith("postgres"):  # spread over shares, not in one row
        assert shares_of(running.db_url, promo) > 1

    api.codes.RollbackRedemption(pb.RollbackRedemptionRequest(redemption_id=redeemed[0].id),
                                 metadata=bearer(api.key))

    assert count_of(api, promo) == 39
    assert check(running.db_url)[0] == 0


def test_a_total_limit_set_later_counts_every_earlier_redemption(
    api: Api, running: Running
) -> None:
    promo = api.promotion("later")
    api.pool(promo, *[f"L-{i}" for i in range(80)])
    for i in range(10):
        api.activate(f"L-{i}", "ann")
    # More activations race the update that sets a limit (one no call can reach yet).
    results = in_parallel(
        [(lambda i=i: api.activate(f"L-{i}", f"u{i % 5}")) for i in range(10, 30)]
        + [lambda: set_total_limit(api, promo, 1000)]
    )
    before = 10 + sum(isinstance(r, pb.Redemption) for r in results)
    assert before == 30
    assert count_of(api, promo) == 30
    assert shares_of(running.db_url, promo) == 0  # moved into the row, which the limit reads

    set_total_limit(api, promo, before + 5)
    results = in_parallel([(lambda i=i: api.activate(f"L-{30 + i}", "v")) for i in range(20)])

    assert sum(isinstance(r, pb.Redemption) for r in results) == 5
    assert reasons(results) == ["TOTAL_LIMIT_REACHED"] * 15
    assert count_of(api, promo) == before + 5
    assert check(running.db_url)[0] == 0


def test_a_limit_lifted_then_set_again_still_counts_everything(
    api: Api, running: Running
) -> None:
    promo = api.promotion("again", redeem_total_limit=3)
    api.pool(promo, *[f"A-{i}" for i in range(10)])
    for i in range(2):
        api.activate(f"A-{i}", "ann")

    set_total_limit(api, promo, None)
    for i in range(2, 6):
        api.activate(f"A-{i}", "ann")
    assert count_of(api, promo) == 6

    set_total_limit(api, promo, 7)
    results = in_parallel([(lambda i=i: api.activate(f"A-{6 + i}", "bob")) for i in range(4)])

    assert sum(isinstance(r, pb.Redemption) for r in results) == 1
    assert count_of(api, promo) == 7
    assert check(running.db_url)[0] == 0


@pytest.mark.parametrize("limits", [{}, {"redeem_total_limit": 1_000_000}],
                         ids=["in-shares", "total-limit"])
def test_activations_rollbacks_and_updates_of_one_promotion_do_not_deadlock(
    api: Api, running: Running, limits: dict[str, int]
) -> None:
    """A rollback locks the promotion's row and the code's in the order an activation
    of that promotion does: against the other order, behind an UpdatePromotion
    waiting for one of them, the three deadlocked on PostgreSQL. Now every call is
    answered, and counted once."""
    promo = api.promotion("busy", **limits)
    codes = [f"B-{i}" for i in range(6)]
    api.pool(promo, *codes)
    stop = time.monotonic() + 3.0
    unexpected: list[str] = []

    def activating(number: int) -> None:
        while time.monotonic() < stop:
            try:
                done = api.activate(codes[number % len(codes)], f"u{number}")
            except grpc.RpcError as error:
                # With a total limit the version is checked as the row is counted: under
                # updates every few milliseconds an activation may give up, by design.
                if not (limits and error.code() == grpc.StatusCode.ABORTED):
                    unexpected.append(f"{error.code().name}: {error.details()}")
                continue
            try:
                api.codes.RollbackRedemption(pb.RollbackRedemptionRequest(redemption_id=done.id),
                                             metadata=bearer(api.key))
            except grpc.RpcError as error:
                unexpected.append(f"{error.code().name}: {error.details()}")

    def updating() -> None:
        threshold = 0
        while time.monotonic() < stop:
            threshold = 1 - threshold
            try:
                api.promotions.UpdatePromotion(
                    promotion_pb2.UpdatePromotionRequest(
                        promotion=promotion_pb2.Promotion(external_id=promo,
                                                          low_stock_threshold=threshold),
                        update_mask=field_mask_pb2.FieldMask(paths=["low_stock_threshold"])),
                    metadata=bearer(api.key))
            except grpc.RpcError as error:
                unexpected.append(f"{error.code().name}: {error.details()}")

    in_parallel([*(lambda i=i: activating(i) for i in range(8)), updating, updating])

    assert unexpected == []
    assert count_of(api, promo) == 0  # every use given back
    assert check(running.db_url)[0] == 0
