"""Two server processes on one database, SQLite and PostgreSQL: limits still hold and no
pool code is handed out twice."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from promo.v1 import code_pb2 as pb
from promo.v1 import code_pb2_grpc, promotion_pb2, promotion_pb2_grpc
from tests.conftest import bearer
from tests.processes import create_project, serving
from tests.test_lifecycle import Api, in_parallel, reasons


@pytest.fixture
def apis(db_url: str) -> Iterator[tuple[Api, Api]]:
    """One client per server process, both on the test's database."""
    key = create_project(db_url)
    with serving(db_url) as (_, first), serving(db_url) as (_, second), \
            grpc.insecure_channel(first) as one, grpc.insecure_channel(second) as two:
        yield tuple(  # type: ignore[misc]
            Api(code_pb2_grpc.CodeServiceStub(channel),
                promotion_pb2_grpc.PromotionServiceStub(channel), key)
            for channel in (one, two)
        )


def test_two_processes_never_exceed_the_limits(apis: tuple[Api, Api]) -> None:
    one, two = apis
    promo = one.promotion("shared", redeem_code_limit=3, redeem_user_limit=2,
                          redeem_total_limit=9)
    one.pool(promo, *[f"C-{i}" for i in range(6)])

    results = in_parallel([
        (lambda i=i: (one, two)[i % 2].activate(f"C-{i % 6}", f"u{i % 5}"))
        for i in range(60)
    ])

    assert sum(isinstance(r, pb.Redemption) for r in results) == 9
    assert set(reasons(results)) <= {"CODE_LIMIT_REACHED", "USER_LIMIT_REACHED",
                                     "TOTAL_LIMIT_REACHED"}
    counted = [one.code(f"C-{i}").redemption_count for i in range(6)]
    assert sum(counted) == 9 and max(counted) <= 3
    total = one.promotions.GetPromotion(
        promotion_pb2.GetPromotionRequest(external_id=promo), metadata=bearer(one.key))
    assert total.redemption_count == 9


def test_two_processes_hand_each_pool_code_out_once(apis: tuple[Api, Api]) -> None:
    one, two = apis
    promo = one.promotion("drain", redeem_code_limit=1)
    one.pool(promo, *[f"D-{i}" for i in range(20)])
    one.pool("", *[f"G-{i}" for i in range(10)])

    results = in_parallel([
        (lambda i=i: (one, two)[i % 2].attach(f"u{i}", promo)) for i in range(36)
    ])

    handed = [r.code for r in results if isinstance(r, pb.Attachment)]
    assert len(handed) == len(set(handed)) == 30
    assert reasons(results) == ["POOL_EMPTY"] * 6


def test_the_same_request_id_on_two_processes_redeems_once(apis: tuple[Api, Api]) -> None:
    one, two = apis
    promo = one.promotion("p")
    one.pool(promo, "SAME-1")

    results = in_parallel([
        (lambda i=i: (one, two)[i % 2].activate("SAME-1", "ann", request_id="order-9"))
        for i in range(16)
    ])

    assert len({r.id for r in results if isinstance(r, pb.Redemption)}) == 1
    assert one.code("SAME-1").redemption_count == 1


def test_two_processes_count_every_redemption_of_a_promotion_without_limits(
    apis: tuple[Api, Api]
) -> None:
    # On PostgreSQL these count in the promotion's shares, not in its row.
    one, two = apis
    promo = one.promotion("open")
    one.pool(promo, *[f"O-{i}" for i in range(40)])

    results = in_parallel([
        (lambda i=i: (one, two)[i % 2].activate(f"O-{i}", f"u{i % 3}")) for i in range(40)
    ])

    assert sum(isinstance(r, pb.Redemption) for r in results) == 40
    for api in (one, two):
        counted = api.promotions.GetPromotion(
            promotion_pb2.GetPromotionRequest(external_id=promo), metadata=bearer(api.key))
        assert counted.redemption_count == 40
