"""What is measured. A scenario prepares what its calls need, then returns a call starter.

Adding a row to the table is one function taking a ``Target`` and returning a
``StartCall``, plus one ``Scenario`` in ``SCENARIOS``. Each scenario runs on a
fresh database with one project, whose admin key is in ``target.metadata``,
served by ``processes`` servers; calls spread round-robin over their channels.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import grpc

from bench.load import StartCall
from bench.report import Goal
from bench.servers import ECHO_METHOD
from promo.v1 import (
    code_pb2,
    code_pb2_grpc,
    profile_pb2,
    profile_pb2_grpc,
    promotion_pb2,
    promotion_pb2_grpc,
)

_LOGGER = logging.getLogger(__name__)
StubT = TypeVar("StubT")

ECHO_PAYLOAD = b"x" * 64


@dataclass(frozen=True)
class Target:
    """Connected channels (one per server), and what every call passes along."""

    channels: tuple[grpc.Channel, ...]
    metadata: tuple[tuple[str, str], ...]
    timeout: float
    seconds: float  # how long calls will be started for, warm-up included

    @property
    def channel(self) -> grpc.Channel:
        """The first server's channel: the one that prepares."""
        return self.channels[0]


@dataclass(frozen=True)
class Scenario:
    name: str
    prepare: Callable[[Target], StartCall]
    processes: int = 1  # promo server processes, all on the scenario's database
    goal: Goal | None = None


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


# Redeeming: a promotion of 10% off and no limits, a cart of two lines.
REDEEM_PROMOTION = "bench-redeem"
REDEEM_CART = code_pb2.Cart(currency="USD", items=[
    code_pb2.CartItem(sku="shirt", quantity=2, unit_price="25.00"),
    code_pb2.CartItem(sku="socks", quantity=3, unit_price="4.50"),
])
PROFILES = 1000
# ActivateCode redeems a fresh code per call: the pool holds this many per second of calls,
# several times what one client reaches here. Should a run get through them all, it starts
# over; with no code limit a second redemption succeeds as the first did.
CODES_PER_SECOND = 10_000
CHUNK_BYTES = 64 * 1024
# ImportCodes: fresh codes per call (one chunk), appended to one promotion's pool.
IMPORT_PROMOTION = "bench-import"
IMPORT_BATCH = 1000
# Profiles created before the clock starts, this many calls at a time.
PREPARE_IN_FLIGHT = 32


def validate_code(target: Target) -> StartCall:
    """ValidateCode of one code, by one stored profile, for the cart."""
    _prepare_redeem(target, ["BENCH-VALIDATE"], 1)
    request = code_pb2.ValidateCodeRequest(
        code="BENCH-VALIDATE", profile=_profile(0), cart=REDEEM_CART
    )
    checked = code_pb2_grpc.CodeServiceStub(target.channel).ValidateCode(
        request, metadata=target.metadata, timeout=target.timeout
    )
    if not checked.valid:
        raise RuntimeError(f"the bench's ValidateCode is refused: {checked.reason}")
    stubs = _round_robin(target, code_pb2_grpc.CodeServiceStub)
    return lambda: next(stubs).ValidateCode.future(
        request, metadata=target.metadata, timeout=target.timeout
    )


def activate_code(target: Target) -> StartCall:
    """ActivateCode of a fresh pool code per call, a fresh request_id, one of PROFILES."""
    count = math.ceil(CODES_PER_SECOND * target.seconds)
    codes = [f"BENCH-{number:08d}" for number in range(count)]
    _prepare_redeem(target, codes, PROFILES)
    stubs = _round_robin(target, code_pb2_grpc.CodeServiceStub)
    numbers = itertools.count()

    def start() -> grpc.Future:
        number = next(numbers)
        if number == count:
            _LOGGER.warning("every pool code redeemed once: starting over codes=%d", count)
        request = code_pb2.ActivateCodeRequest(
            code=codes[number % count], profile=_profile(number % PROFILES),
            cart=REDEEM_CART, request_id=f"bench-{number}",
        )
        return next(stubs).ActivateCode.future(
            request, metadata=target.metadata, timeout=target.timeout
        )

    return start


def import_codes(target: Target) -> StartCall:
    """ImportCodes (APPEND) of IMPORT_BATCH fresh codes per call into one promotion's pool."""
    promotions = promotion_pb2_grpc.PromotionServiceStub(target.channel)
    promotions.CreatePromotion(create_request(IMPORT_PROMOTION), metadata=target.metadata,
                               timeout=target.timeout)
    spec = code_pb2.ImportCodesRequest.Spec(
        promotion=IMPORT_PROMOTION, mode=code_pb2.ImportCodesRequest.Spec.APPEND
    )
    stubs = _round_robin(target, code_pb2_grpc.CodeServiceStub)
    batches = itertools.count()

    def start() -> grpc.Future:
        first = next(batches) * IMPORT_BATCH
        csv = "".join(f"IMP-{n:09d}\n" for n in range(first, first + IMPORT_BATCH))
        requests = [code_pb2.ImportCodesRequest(spec=spec),
                    code_pb2.ImportCodesRequest(chunk=csv.encode("ascii"))]
        return next(stubs).ImportCodes.future(
            iter(requests), metadata=target.metadata, timeout=target.timeout
        )

    return start


def _prepare_redeem(target: Target, codes: list[str], profiles: int) -> None:
    """The promotion, its pool of ``codes``, and ``profiles`` stored profiles."""
    began = time.perf_counter()
    promotions = promotion_pb2_grpc.PromotionServiceStub(target.channel)
    promotions.CreatePromotion(
        promotion_pb2.CreatePromotionRequest(promotion=promotion_pb2.Promotion(
            external_id=REDEEM_PROMOTION, name={"en-US": "Bench redeem"},
            discount=promotion_pb2.Discount(percent="10.00"),
        )),
        metadata=target.metadata, timeout=target.timeout,
    )
    csv = "".join(f"{code}\n" for code in codes).encode("ascii")
    spec = code_pb2.ImportCodesRequest.Spec(
        promotion=REDEEM_PROMOTION, mode=code_pb2.ImportCodesRequest.Spec.APPEND
    )
    imported = code_pb2_grpc.CodeServiceStub(target.channel).ImportCodes(
        iter([code_pb2.ImportCodesRequest(spec=spec),
              *(code_pb2.ImportCodesRequest(chunk=csv[i:i + CHUNK_BYTES])
                for i in range(0, len(csv), CHUNK_BYTES))]),
        metadata=target.metadata, timeout=target.timeout,
    ).imported
    if imported != len(codes):
        raise RuntimeError(f"imported {imported:,} of the bench's {len(codes):,} codes")
    import_seconds = time.perf_counter() - began
    stub = profile_pb2_grpc.ProfileServiceStub(target.channel)
    for first in range(0, profiles, PREPARE_IN_FLIGHT):
        pending = [
            stub.UpsertProfile.future(
                profile_pb2.UpsertProfileRequest(
                    profile=profile_pb2.Profile(profile_id=_profile_id(number))
                ),
                metadata=target.metadata, timeout=target.timeout,
            )
            for number in range(first, min(first + PREPARE_IN_FLIGHT, profiles))
        ]
        for future in pending:
            future.result()
    _LOGGER.info("redeem prepared codes=%d profiles=%d import_seconds=%.1f seconds=%.1f",
                 len(codes), profiles, import_seconds, time.perf_counter() - began)


def _profile_id(number: int) -> str:
    return f"bench-user-{number}"


def _profile(number: int) -> profile_pb2.ProfileRef:
    return profile_pb2.ProfileRef(profile_id=_profile_id(number))


def _round_robin(target: Target, stub: Callable[[grpc.Channel], StubT]) -> Iterator[StubT]:
    """One stub per server, taken in turn."""
    return itertools.cycle([stub(channel) for channel in target.channels])


# The baseline every other row is compared with; it runs against the echo server.
ECHO = Scenario("echo", echo)
# Targets, as ratios to the echo rate of the same run.
ACTIVATE_GOAL = Goal(min_ratio=0.6, max_p99_ms=30.0)
VALIDATE_GOAL = Goal(min_ratio=0.7)
# Rows against the promo server, in table order; each runs on every backend.
SCENARIOS = (
    Scenario("GetPromotion", get_promotion),
    Scenario("CreatePromotion", create_promotion),
    Scenario("ValidateCode", validate_code, goal=VALIDATE_GOAL),
    Scenario("ActivateCode", activate_code, goal=ACTIVATE_GOAL),
    Scenario("ValidateCode", validate_code, processes=2, goal=VALIDATE_GOAL),
    Scenario("ActivateCode", activate_code, processes=2, goal=ACTIVATE_GOAL),
    Scenario(f"ImportCodes x{IMPORT_BATCH}", import_codes),
    Scenario(f"ImportCodes x{IMPORT_BATCH}", import_codes, processes=2),
)
