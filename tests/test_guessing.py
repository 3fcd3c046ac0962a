"""The code-guessing defence: a key that asks for too many unknown codes is refused a while.

Through a real in-process server with a tiny bucket, on SQLite and PostgreSQL; the
bucket arithmetic with an injected clock.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from prometheus_client import REGISTRY

from promo.v1 import code_pb2 as pb
from promo.v1 import code_pb2_grpc, profile_pb2, promotion_pb2, promotion_pb2_grpc
from promo_server.api.throttle import GuessThrottle
from promo_server.app import create_server
from promo_server.config import Settings, SettingsError
from promo_server.store import projects
from promo_server.store.db import database
from tests.conftest import Project, Running, bearer
from tests.rpc import error_reason, refused

NOT_FOUND = grpc.StatusCode.NOT_FOUND
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
BURST = 3
PER_SECOND = 2.0  # an empty bucket has a token back within half a second
PROFILE = profile_pb2.ProfileRef(profile_id="ann")
CART = pb.Cart(currency="USD", items=[pb.CartItem(sku="shirt", quantity=1, unit_price="50.00")])


@dataclass
class Caller:
    stub: code_pb2_grpc.CodeServiceStub
    key: str

    def validate(self, code: str) -> pb.ValidateCodeResponse:
        return self.stub.ValidateCode(pb.ValidateCodeRequest(code=code, profile=PROFILE, cart=CART),
                                      metadata=bearer(self.key), timeout=20)

    def activate(self, code: str) -> pb.Redemption:
        return self.stub.ActivateCode(pb.ActivateCodeRequest(code=code, profile=PROFILE, cart=CART),
                                      metadata=bearer(self.key), timeout=20)


@dataclass
class Guarded:
    project: Project
    guesser: Caller  # a redeem key
    other: Caller  # another redeem key of the same project


@pytest.fixture
def guarded(db_url: str) -> Iterator[Guarded]:
    """A server whose keys may ask for BURST unknown codes, then PER_SECOND a second;
    its project has a shared promotion with the code KNOWN-1."""
    settings = Settings(database_url=db_url, listen="127.0.0.1:0",
                        guess_burst=BURST, guess_per_second=PER_SECOND)
    server, port = create_server("127.0.0.1:0", db_url, settings)
    server.start()
    running = Running(f"127.0.0.1:{port}", db_url, server)
    project = running.new_project()
    database.connect(reuse_if_open=True)
    try:
        other_key = projects.create_key(str(project.id), "redeem")
    finally:
        database.close()
    with running.channel() as channel:
        promotions = promotion_pb2_grpc.PromotionServiceStub(channel)
        promotions.CreatePromotion(promotion_pb2.CreatePromotionRequest(
            promotion=promotion_pb2.Promotion(external_id="shared", name={"en-US": "Shared"},
                                              discount=promotion_pb2.Discount(percent="10"))),
            metadata=bearer(project.admin_key))
        stub = code_pb2_grpc.CodeServiceStub(channel)
        stub.ImportCodes(iter([
            pb.ImportCodesRequest(spec=pb.ImportCodesRequest.Spec(promotion="shared")),
            pb.ImportCodesRequest(chunk=b"KNOWN-1\n"),
        ]), metadata=bearer(project.admin_key))
        yield Guarded(project, Caller(stub, project.redeem_key), Caller(stub, other_key))
    server.stop(None).wait()


def retry_delay(error: grpc.RpcError) -> float:
    """The RetryInfo delay of an error, in seconds."""
    status = rpc_status.from_call(error)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.ToMilliseconds() / 1000
    raise AssertionError("the error carries no RetryInfo")


def throttled_count(project: Project) -> float:
    return REGISTRY.get_sample_value(
        "promo_guess_throttled_total", {"project": str(project.id)}
    ) or 0.0


def flood(caller: Caller) -> tuple[int, grpc.RpcError]:
    """Unknown codes until the key is refused: (how many were answered NOT_FOUND, the refusal)."""
    for number in range(100):
        try:
            caller.validate(f"GUESS-{number}")
        except grpc.RpcError as error:
            if error.code() == EXHAUSTED:
                return number, error
            assert error.code() == NOT_FOUND, error.details()
    raise AssertionError("100 unknown codes and never refused")


def test_a_flood_of_unknown_codes_is_refused_then_even_known_codes_until_the_delay(
    guarded: Guarded,
) -> None:
    before = throttled_count(guarded.project)

    missed, refusal = flood(guarded.guesser)

    assert missed >= BURST
    assert error_reason(refusal) == ("promo.v1", "TOO_MANY_UNKNOWN_CODES")
    delay = retry_delay(refusal)
    assert 0 < delay <= 1 / PER_SECOND
    for call in (guarded.guesser.validate, guarded.guesser.activate):
        known = refused(functools.partial(call, "KNOWN-1"), EXHAUSTED)
        assert error_reason(known)[1] == "TOO_MANY_UNKNOWN_CODES"
    assert throttled_count(guarded.project) == before + 3

    time.sleep(retry_delay(known))

    assert guarded.guesser.validate("KNOWN-1").valid
    assert guarded.guesser.activate("KNOWN-1").code == "KNOWN-1"


def test_activate_counts_unknown_codes_too(guarded: Guarded) -> None:
    for number in range(BURST):
        refused(functools.partial(guarded.guesser.activate, f"GUESS-{number}"), NOT_FOUND)

    error = refused(lambda: guarded.guesser.activate("GUESS-X"), EXHAUSTED)
    assert error_reason(error)[1] == "TOO_MANY_UNKNOWN_CODES"


def test_another_key_is_not_affected(guarded: Guarded) -> None:
    flood(guarded.guesser)

    assert guarded.other.validate("KNOWN-1").valid
    refused(lambda: guarded.other.validate("GUESS-0"), NOT_FOUND)


def test_known_codes_at_volume_are_never_refused(guarded: Guarded) -> None:
    before = throttled_count(guarded.project)

    answers = [guarded.guesser.validate("KNOWN-1") for _ in range(20 * BURST)]

    assert all(answer.valid for answer in answers)
    assert throttled_count(guarded.project) == before


def test_settings_refuse_a_negative_bucket(db_url: str) -> None:
    for given, variable in (({"guess_burst": -1}, "PROMO_GUESS_BURST"),
                            ({"guess_per_second": -0.5}, "PROMO_GUESS_PER_SECOND")):
        settings = Settings(database_url=db_url, listen="127.0.0.1:0", **given)
        with pytest.raises(SettingsError, match=variable):
            create_server("127.0.0.1:0", db_url, settings)


# The bucket, with a clock the test moves.


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_tokens_come_back_at_the_rate() -> None:
    clock = Clock()
    throttle = GuessThrottle(burst=2, per_second=0.5, clock=clock)
    throttle.miss("k")
    throttle.miss("k")

    assert throttle.wait("k") == pytest.approx(2.0)
    clock.now += 1.5
    assert throttle.wait("k") == pytest.approx(0.5)
    clock.now += 0.5
    assert throttle.wait("k") == 0
    throttle.miss("k")
    assert throttle.wait("k") == pytest.approx(2.0)


def test_a_miss_rate_under_the_refill_rate_never_empties_the_bucket() -> None:
    clock = Clock()
    throttle = GuessThrottle(burst=5, per_second=1.0, clock=clock)

    for _ in range(10_000):
        assert throttle.wait("k") == 0
        throttle.miss("k")
        clock.now += 1.0


def test_full_buckets_are_forgotten() -> None:
    clock = Clock()
    throttle = GuessThrottle(burst=4, per_second=2.0, clock=clock)
    for number in range(1000):
        throttle.miss(f"key-{number}")
    assert throttle.tracked() == 1000

    clock.now += 2.0  # 4 tokens back at 2 a second: every bucket is full
    throttle.miss("late")

    assert throttle.tracked() == 1
    assert throttle.wait("key-0") == 0


@pytest.mark.parametrize("burst, per_second", [(0, 1.0), (5, 0.0)])
def test_zero_turns_the_defence_off(burst: int, per_second: float) -> None:
    throttle = GuessThrottle(burst=burst, per_second=per_second, clock=Clock())

    for _ in range(100):
        throttle.miss("k")

    assert throttle.wait("k") == 0
    throttle.admit("k", 1)
