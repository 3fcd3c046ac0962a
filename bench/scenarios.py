"""What is measured. A scenario prepares what its calls need, then returns a call starter.

Adding a row to the table is one function taking a ``Target`` and returning a
``StartCall``, plus one ``Scenario`` in ``SCENARIOS``. Each scenario runs on a
fresh database with one project, whose admin key is in ``target.metadata``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from bench.load import StartCall
from bench.servers import ECHO_METHOD
from promo.v1 import promotion_pb2, promotion_pb2_grpc

ECHO_PAYLOAD = b"x" * 64


@dataclass(frozen=True)
class Target:
    """A connected channel, and what every call passes along."""

    channel: grpc.Channel
    metadata: tuple[tuple[str, str], ...]
    timeout: float


@dataclass(frozen=True)
class Scenario:
    name: str
    prepare: Callable[[Target], StartCall]


def echo(target: Target) -> StartCall:
    call = target.channel.unary_unary(ECHO_METHOD)  # no (de)serializers: raw bytes
    return lambda: call.future(ECHO_PAYLOAD, timeout=target.timeout)


def get_promotion(target: Target) -> StartCall:
    stub = promotion_pb2_grpc.PromotionServiceStub(target.channel)
    created = stub.CreatePromotion(
        create_request("bench-get"), metadata=target.metadata, timeout=target.timeout
    )
    request = promotion_pb2.GetPromotionRequest(external_id=created.external_id)
    return lambda: stub.GetPromotion.future(
        request, metadata=target.metadata, timeout=target.timeout
    )


def create_promotion(target: Target) -> StartCall:
    stub = promotion_pb2_grpc.PromotionServiceStub(target.channel)
    numbers = itertools.count(1)
    return lambda: stub.CreatePromotion.future(
        create_request(f"bench-{next(numbers)}"), metadata=target.metadata, timeout=target.timeout
    )


def create_request(external_id: str) -> promotion_pb2.CreatePromotionRequest:
    """A promotion like examples/promotion.json: a discount, limits, a bonus, a condition."""
    return promotion_pb2.CreatePromotionRequest(
        promotion=promotion_pb2.Promotion(
            external_id=external_id,
            name={"en-US": "Bench sale", "de-DE": "Bench-Rabatt"},
            redeem_total_limit=1000,
            redeem_user_limit=1,
            redeem_code_limit=1,
            discount=promotion_pb2.Discount(percent="15.00"),
            bonus=[promotion_pb2.BonusItem(sku="tote-bag", quantity=1)],
            price_conditions=[
                promotion_pb2.PriceCondition(operator=promotion_pb2.GE, value="20.00")
            ],
        )
    )


# The baseline every other row is compared with; it runs against the echo server.
ECHO = Scenario("echo", echo)
# Rows against the promo server, in table order; each runs on every backend.
SCENARIOS = (
    Scenario("GetPromotion", get_promotion),
    Scenario("CreatePromotion", create_promotion),
)
