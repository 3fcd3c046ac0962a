"""A server killed (SIGKILL) at random moments under a mixed workload, and restarted on the
same database, loses nothing a client saw succeed and breaks no invariant, on SQLite and
PostgreSQL.

Client threads activate codes with request ids (retrying, with the same id, every call
whose outcome the kill hid), hand out pool codes, roll redemptions back and import codes,
while the main thread kills and restarts the server. Afterwards `promo-server check` must
pass and the server must agree with what the clients saw.

``PROMO_CRASH_ROUNDS`` sets how many kills (default 3); ``PROMO_CRASH_SEED`` replays a
failure's choices of operations and kill delays (thread timing still varies).
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import grpc
import pytest

from promo.v1 import code_pb2 as pb
from promo.v1 import code_pb2_grpc, profile_pb2, promotion_pb2, promotion_pb2_grpc
from tests.conftest import bearer
from tests.processes import check, create_project, free_port, serving

ROUNDS = int(os.environ.get("PROMO_CRASH_ROUNDS", "3"))
THREADS = 6
PROFILES = [f"u{i}" for i in range(8)]
LIMITED = "limited"  # codes redeem twice, a profile 4 times, 25 in all
DRAIN = "drain"  # single-use codes handed out by AttachCode, then the global pool's
CODE_LIMIT, USER_LIMIT, TOTAL_LIMIT = 2, 4, 25
# A call the server refused: it changed nothing.
REFUSED = {grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.RESOURCE_EXHAUSTED,
           grpc.StatusCode.ABORTED, grpc.StatusCode.NOT_FOUND}
# A call whose outcome the kill hid: it may or may not have happened.
UNKNOWN = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
           grpc.StatusCode.CANCELLED}
CALL_SECONDS = 5
# Reconnect quickly after a restart: gRPC's default backoff waits a second and more.
CHANNEL_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 50),
                   ("grpc.min_reconnect_backoff_ms", 50),
                   ("grpc.max_reconnect_backoff_ms", 200)]

T = TypeVar("T")


class Unknown(Exception):
    """The call's outcome is unknown: the server died, or was down, while it ran."""


@dataclass
class Seen:
    """What the clients saw, all threads together."""

    redeemed: dict[str, pb.Redemption] = field(default_factory=dict)  # request_id: first seen
    pending: dict[str, tuple[str, str]] = field(default_factory=dict)  # request_id: code, who
    rolled_back: set[str] = field(default_factory=set)  # redemption ids
    rollbacks_pending: set[str] = field(default_factory=set)
    handed: list[tuple[str, str]] = field(default_factory=list)  # (code, profile)
    imported: set[str] = field(default_factory=set)
    retried: int = 0  # activations repeated with the request_id of one the kill hid
    unexpected: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Client:
    """One client thread's calls: each returns its response, None if refused, or raises
    Unknown."""

    def __init__(self, target: str, key: str) -> None:
        self.channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        self.codes = code_pb2_grpc.CodeServiceStub(self.channel)
        self.promotions = promotion_pb2_grpc.PromotionServiceStub(self.channel)
        self.metadata = bearer(key)

    def call(self, method: Callable[..., T], request: object) -> T | None:
        try:
            return method(request, metadata=self.metadata, timeout=CALL_SECONDS,
                          wait_for_ready=True)
        except grpc.RpcError as error:
            if error.code() in REFUSED:
                return None
            if error.code() in UNKNOWN:
                raise Unknown from error
            raise

    def activate(self, code: str, who: str, request_id: str) -> pb.Redemption | None:
        return self.call(self.codes.ActivateCode, pb.ActivateCodeRequest(
            code=code, profile=profile_pb2.ProfileRef(profile_id=who), request_id=request_id,
            cart=pb.Cart(currency="USD", items=[
                pb.CartItem(sku="shirt", quantity=1, unit_price="30.00")])))

    def attach(self, who: str) -> pb.Attachment | None:
        return self.call(self.codes.AttachCode, pb.AttachCodeRequest(
            promotion=DRAIN, profile=profile_pb2.ProfileRef(profile_id=who)))

    def roll_back(self, redemption_id: str) -> pb.Redemption | None:
        return self.call(self.codes.RollbackRedemption,
                         pb.RollbackRedemptionRequest(redemption_id=redemption_id))

    def import_codes(self, promotion: str, codes: list[str]) -> pb.ImportCodesResponse | None:
        def requests() -> Iterator[pb.ImportCodesRequest]:
            yield pb.ImportCodesRequest(spec=pb.ImportCodesRequest.Spec(
                promotion=promotion, mode=pb.ImportCodesRequest.Spec.APPEND))
            yield pb.ImportCodesRequest(chunk="".join(f"{c}\n" for c in codes).encode())

        return self.call(self.codes.ImportCodes, requests())

    def promotion(self, external_id: str, **limits: int) -> promotion_pb2.Promotion | None:
        return self.call(self.promotions.CreatePromotion, promotion_pb2.CreatePromotionRequest(
            promotion=promotion_pb2.Promotion(
                external_id=external_id, name={"en-US": external_id},
                discount=promotion_pb2.Discount(percent="10"), **limits)))


class Workload(threading.Thread):
    """A client thread: random calls until told to stop, recording what it saw."""

    def __init__(self, number: int, client: Client, seen: Seen, seed: int,
                 stopping: threading.Event) -> None:
        super().__init__(name=f"client-{number}", daemon=True)
        self.number = number
        self.client = client
        self.seen = seen
        self.rng = random.Random(seed)
        self.stopping = stopping
        self.calls = itertools.count()
        self.held: list[tuple[str, str]] = []  # drained codes this thread was handed

    def run(self) -> None:
        operations = [self.activate] * 5 + [self.attach] * 2 + [self.roll_back] * 2 + [
            self.import_codes]
        while not self.stopping.is_set():
            operation = self.rng.choice(operations)
            try:
                operation()
            except Unknown:
                time.sleep(0.02)  # the server is down: let it come back
            except Exception as error:  # the test reports it: a dead thread would hide it
                with self.seen.lock:
                    self.seen.unexpected.append(f"{operation.__name__}: {error!r}")

    def activate(self) -> None:
        with self.seen.lock:
            pending = sorted(self.seen.pending.items())
        if pending and self.rng.random() < 0.5:
            request_id, (code, who) = self.rng.choice(pending)
            with self.seen.lock:
                self.seen.retried += 1
        else:
            request_id = f"c{self.number}-{next(self.calls)}"
            if self.held and self.rng.random() < 0.5:
                code, who = self.rng.choice(self.held)
            else:
                code = f"L-{self.rng.randrange(10)}"
                who = self.rng.choice(PROFILES)
        activate(self.client, self.seen, code, who, request_id)

    def attach(self) -> None:
        who = self.rng.choice(PROFILES)
        attachment = self.client.attach(who)
        if attachment is not None:
            self.held.append((attachment.code, who))
            with self.seen.lock:
                self.seen.handed.append((attachment.code, who))

    def roll_back(self) -> None:
        with self.seen.lock:
            live = sorted(r.id for r in self.seen.redeemed.values()
                          if r.id not in self.seen.rolled_back)
            pending = sorted(self.seen.rollbacks_pending)
        choices = pending or live
        if not choices:
            return
        roll_back(self.client, self.seen, self.rng.choice(choices))

    def import_codes(self) -> None:
        batch = next(self.calls)
        promotion, prefix = self.rng.choice([(LIMITED, "L"), (DRAIN, "D")])
        codes = [f"{prefix}-c{self.number}-{batch}-{i}" for i in range(5)]
        if self.client.import_codes(promotion, codes) is not None:
            with self.seen.lock:
                self.seen.imported.update(codes)


def activate(client: Client, seen: Seen, code: str, who: str, request_id: str,
             *, settling: bool = False) -> None:
    """Activates, recording the redemption; a request stays pending until it succeeds,
    or, once nothing else runs, is refused (a call that timed out may still commit)."""
    with seen.lock:
        seen.pending[request_id] = (code, who)
    try:
        redemption = client.activate(code, who, request_id)
    except Unknown:
        with seen.lock:
            seen.pending[request_id] = (code, who)
        raise
    with seen.lock:
        if redemption is None:
            if settling:
                seen.pending.pop(request_id, None)
            return
        seen.pending.pop(request_id, None)
        first = seen.redeemed.setdefault(request_id, redemption)
        if first.id != redemption.id:
            seen.unexpected.append(f"request_id {request_id} redeemed as {first.id} "
                                   f"and as {redemption.id}")


def roll_back(client: Client, seen: Seen, redemption_id: str) -> None:
    with seen.lock:
        seen.rollbacks_pending.add(redemption_id)
    done = client.roll_back(redemption_id)  # Unknown: stays pending
    with seen.lock:
        seen.rollbacks_pending.discard(redemption_id)
        # Refused: already rolled back, by this call before a kill hid its answer or by
        # another thread's.
        seen.rolled_back.add(redemption_id)
        if done is not None and done.state != pb.Redemption.ROLLED_BACK:
            seen.unexpected.append(f"rollback of {redemption_id} returned {done.state}")


def redemptions(client: Client) -> list[pb.Redemption]:
    out: list[pb.Redemption] = []
    token = ""
    while True:
        page = client.codes.ListRedemptions(
            pb.ListRedemptionsRequest(page_size=1000, page_token=token),
            metadata=client.metadata)
        out += page.redemptions
        token = page.next_page_token
        if not token:
            return out


def codes_of(client: Client, promotion: str) -> list[pb.Code]:
    out: list[pb.Code] = []
    token = ""
    while True:
        page = client.codes.ListCodes(
            pb.ListCodesRequest(promotion=promotion, page_size=1000, page_token=token),
            metadata=client.metadata)
        out += page.codes
        token = page.next_page_token
        if not token:
            return out


def settle(client: Client, seen: Seen) -> None:
    """Retries every call whose outcome a kill hid, until each has one."""
    for request_id, (code, who) in sorted(seen.pending.items()):
        activate(client, seen, code, who, request_id, settling=True)
    for redemption_id in sorted(seen.rollbacks_pending):
        roll_back(client, seen, redemption_id)


def test_killed_servers_lose_nothing_a_client_saw(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `serving` pipes the server's log and reads it only at the end: a log line per
    # call would fill the pipe and stall the server.
    monkeypatch.setenv("PROMO_LOG_LEVEL", "WARNING")
    seed = int(os.environ.get("PROMO_CRASH_SEED", random.randrange(2**32)))
    clients: list[Client] = []
    try:
        run(db_url, random.Random(seed), clients)
    except BaseException as error:
        error.add_note(f"replay with PROMO_CRASH_SEED={seed} PROMO_CRASH_ROUNDS={ROUNDS}")
        raise
    finally:
        for client in clients:
            client.channel.close()


def run(db_url: str, rng: random.Random, clients: list[Client]) -> None:
    """Kills the server ROUNDS times under the workload, then compares and checks."""
    key = create_project(db_url)
    port = free_port()
    clients += [Client(f"127.0.0.1:{port}", key) for _ in range(THREADS)]
    seen, stopping = Seen(), threading.Event()
    with serving(db_url, port):
        setup = clients[0]
        assert setup.promotion(LIMITED, redeem_code_limit=CODE_LIMIT,
                               redeem_user_limit=USER_LIMIT, redeem_total_limit=TOTAL_LIMIT)
        assert setup.promotion(DRAIN, redeem_code_limit=1)
        for pool, prefix in ((LIMITED, "L"), (DRAIN, "D"), ("", "G")):
            assert setup.import_codes(pool, [f"{prefix}-{i}" for i in range(10)])
    workers = [Workload(i, client, seen, rng.randrange(2**32), stopping)
               for i, client in enumerate(clients)]
    for worker in workers:
        worker.start()
    for _ in range(ROUNDS):
        with serving(db_url, port) as (server, _):
            time.sleep(rng.uniform(0.3, 1.5))
            server.send_signal(signal.SIGKILL)
            server.wait(timeout=20)
    stopping.set()
    with serving(db_url, port):
        for worker in workers:
            worker.join(timeout=3 * CALL_SECONDS)
            assert not worker.is_alive()
        settle(clients[0], seen)
        assert not seen.pending and not seen.rollbacks_pending
        agree(clients[0], seen)
    status, lines = check(db_url)
    assert status == 0, lines


def agree(client: Client, seen: Seen) -> None:
    """The server holds what the clients saw, and no limit is exceeded."""
    assert not seen.unexpected, seen.unexpected
    assert seen.redeemed and seen.handed and seen.rolled_back and seen.retried, (
        "too little work to judge")
    stored = redemptions(client)
    by_id = {r.id: r for r in stored}
    for request_id, redemption in seen.redeemed.items():
        found = by_id.get(redemption.id)
        assert found is not None, f"redemption of {request_id} lost"
        assert found.request_id == request_id
        rolled = redemption.id in seen.rolled_back
        state = pb.Redemption.ROLLED_BACK if rolled else pb.Redemption.REDEEMED
        assert found.state == state, f"redemption of {request_id}"
    assert Counter(r.request_id for r in stored).most_common(1)[0][1] == 1, (
        "a request_id redeemed twice")
    assert len(stored) == len(seen.redeemed), "redemptions no client saw"

    live = [r for r in stored if r.state == pb.Redemption.REDEEMED]
    per_code = Counter(r.code for r in live)
    limited = [r for r in live if r.promotion == LIMITED]
    assert len(limited) <= TOTAL_LIMIT
    assert max(Counter(r.profile_id for r in limited).values(), default=0) <= USER_LIMIT
    for code in codes_of(client, LIMITED):
        assert code.redemption_count == per_code[code.code] <= CODE_LIMIT, code.code
    promotion = client.promotions.GetPromotion(
        promotion_pb2.GetPromotionRequest(external_id=LIMITED), metadata=client.metadata)
    assert promotion.redemption_count == len(limited)

    handed = [code for code, _ in seen.handed]
    assert len(handed) == len(set(handed)), "a pool code handed out twice"
    pooled = {c.code: c for c in codes_of(client, DRAIN) + codes_of(client, "")}
    for code, who in seen.handed:
        assert (pooled[code].profile_id, pooled[code].attachment_count) == (who, 1), code
        assert per_code[code] <= 1, code
    stored_codes = set(pooled) | {c.code for c in codes_of(client, LIMITED)}
    assert seen.imported <= stored_codes, "imported codes lost"
