"""``make soak``: a long mixed workload against one server process, on each database.

For ``--minutes`` per backend, ``--in-flight`` client threads keep calling,
each picking its next call by weight: ValidateCode, ActivateCode (of a code it
was handed, or of a shared one), AttachCode (hand-out from a single-use pool),
RollbackRedemption, ListRedemptions / ListCodes, and ImportCodes that keep
the pool stocked. Then the server stops and ``promo-server check`` runs on the
database. The report: calls per second, p50 / p99 by call, answers by status
(refusals a caller should expect apart from the unexpected ones), the server's
resident memory over time, and the check's verdict. It passes when nothing
unexpected was answered, memory stayed flat and the check found no breach.
"""

from __future__ import annotations

import argparse
import collections
import io
import itertools
import logging
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import grpc

from bench import servers
from bench.databases import BACKENDS, OPENERS, Unavailable
from promo import errors
from promo.client import PromoClient

_LOGGER = logging.getLogger(__name__)

DEFAULT_MINUTES = 10.0
DEFAULT_IN_FLIGHT = 32
RSS_SAMPLE_SECONDS = 5.0
# Memory is flat when the last quarter's median is at most this much over the second
# quarter's (the first quarter is warm-up: caches filling, pools of connections opening).
FLAT_RSS_RATIO = 1.2
SHARED = "soak-shared"  # no limits: any profile redeems its codes again and again
SINGLE = "soak-single"  # single-use codes, five per profile, handed out by AttachCode
SHARED_CODES = 1000
PROFILES = 500
IMPORT_BATCH = 200
KEPT = 5000  # handed-out codes and redemption ids kept for later calls, at most
CART = {"currency": "USD", "items": [{"sku": "shirt", "quantity": 2, "unit_price": "25.00"}]}
# Refusals the workload runs into by design; any other error is unexpected.
EXPECTED = frozenset({"POOL_EMPTY", "USER_LIMIT_REACHED", "CODE_LIMIT_REACHED"})


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies_ms: dict[str, list[float]] = field(
        default_factory=lambda: collections.defaultdict(list)
    )
    answers: collections.Counter[str] = field(default_factory=collections.Counter)
    unexpected: collections.Counter[str] = field(default_factory=collections.Counter)
    first_unexpected: dict[str, str] = field(default_factory=dict)

    def record(self, call: str, elapsed_ms: float, error: errors.PromoError | None) -> None:
        with self.lock:
            self.latencies_ms[call].append(elapsed_ms)
            if error is None:
                self.answers["OK"] += 1
                return
            answer = f"{error.code.name} {error.reason}".strip()
            self.answers[answer] += 1
            if error.reason not in EXPECTED:
                self.unexpected[answer] += 1
                self.first_unexpected.setdefault(answer, f"{call}: {error}")


class Workload:
    """The calls, and what they leave for later calls (handed-out codes, redemptions)."""

    def __init__(self, client: PromoClient, seed: int) -> None:
        self.client = client
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.held: collections.deque[tuple[str, str]] = collections.deque(maxlen=KEPT)
        self.redeemed: collections.deque[str] = collections.deque(maxlen=KEPT)
        self.batches = itertools.count()
        self.calls: list[tuple[str, Callable[[], None], int]] = [
            ("ValidateCode", self.validate, 35),
            ("ActivateCode", self.activate, 25),
            ("AttachCode", self.attach, 15),
            ("List", self.list, 10),
            ("ImportCodes", self.import_codes, 8),
            ("RollbackRedemption", self.roll_back, 7),
        ]

    def prepare(self) -> None:
        for external_id, limits in ((SHARED, {}), (SINGLE, {"redeem_code_limit": 1,
                                                            "redeem_user_limit": 5})):
            self.client.create_promotion({"external_id": external_id, "name": {"en-US": "Soak"},
                                          "discount": {"percent": "10"}, **limits})
        self._import(SHARED, (f"SHARED-{n:05d}" for n in range(SHARED_CODES)))
        for _ in range(5):
            self.import_codes()

    def pick(self) -> tuple[str, Callable[[], None]]:
        with self.lock:
            name, call, _ = self.random.choices(
                self.calls, weights=[weight for *_, weight in self.calls]
            )[0]
        return name, call

    def _profile(self) -> str:
        with self.lock:
            return f"soak-user-{self.random.randrange(PROFILES)}"

    def _shared_code(self) -> str:
        with self.lock:
            return f"SHARED-{self.random.randrange(SHARED_CODES):05d}"

    def validate(self) -> None:
        self.client.validate_code(self._shared_code(), self._profile(), CART)

    def activate(self) -> None:
        with self.lock:
            held = self.held.popleft() if self.held else None
        code, profile = held or (self._shared_code(), self._profile())
        redeemed = self.client.activate_code(code, profile, CART)
        with self.lock:
            self.redeemed.append(redeemed.id)

    def attach(self) -> None:
        profile = self._profile()
        attached = self.client.attach_code(profile, SINGLE)
        with self.lock:
            self.held.append((attached.code, profile))

    def roll_back(self) -> None:
        with self.lock:
            redemption = self.redeemed.popleft() if self.redeemed else None
        if redemption is None:
            self.validate()
            return
        self.client.rollback_redemption(redemption, reason="soak")

    def list(self) -> None:
        if self.random.random() < 0.5:
            self.client.list_redemptions(promotion=SHARED, page_size=50)
        else:
            self.client.list_codes(promotion=SINGLE, page_size=50)

    def import_codes(self) -> None:
        first = next(self.batches) * IMPORT_BATCH
        self._import(SINGLE, (f"SINGLE-{n:08d}" for n in range(first, first + IMPORT_BATCH)))

    def _import(self, promotion: str, codes: Iterator[str]) -> None:
        self.client.import_csv(io.BytesIO("".join(f"{c}\n" for c in codes).encode()),
                               promotion, mode="append")


@dataclass
class Soaked:
    backend: str
    seconds: float
    tally: Tally
    rss_mib: list[float]
    check_code: int
    check_output: str

    @property
    def calls(self) -> int:
        return sum(self.tally.answers.values())

    @property
    def flat(self) -> bool:
        if len(self.rss_mib) < 8:
            return True  # too short a run to tell
        quarter = len(self.rss_mib) // 4
        second = statistics.median(self.rss_mib[quarter:2 * quarter])
        last = statistics.median(self.rss_mib[-quarter:])
        return last <= second * FLAT_RSS_RATIO

    @property
    def passed(self) -> bool:
        return not self.tally.unexpected and self.flat and self.check_code == 0


def soak(backend: str, db_url: str, minutes: float, in_flight: int, seed: int) -> Soaked:
    with servers.promo_server(db_url) as running:
        client = PromoClient(running.address, running.api_key, channels=4, timeout=30)
        workload = Workload(client, seed)
        workload.prepare()
        tally = Tally()
        rss: list[float] = []
        stop = threading.Event()

        def caller() -> None:
            while not stop.is_set():
                name, call = workload.pick()
                started = time.perf_counter()
                failure = None
                try:
                    call()
                except errors.PromoError as error:
                    failure = error
                tally.record(name, (time.perf_counter() - started) * 1000, failure)

        threads = [threading.Thread(target=caller, name=f"soak-{n}") for n in range(in_flight)]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        deadline = began + minutes * 60
        while (left := deadline - time.perf_counter()) > 0:
            rss.append(_rss_mib(running.pid))
            _LOGGER.info("soaking backend=%s calls=%d rss_mib=%.1f left_seconds=%.0f",
                         backend, sum(tally.answers.values()), rss[-1], left)
            time.sleep(min(RSS_SAMPLE_SECONDS, left))
        stop.set()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - began
        client.close()
    checked = subprocess.run(
        [sys.executable, "-m", "promo_server.main", "check", "--db", db_url],
        capture_output=True, text=True, timeout=600,
    )
    # Its verdict is on stdout; stderr holds its log.
    return Soaked(backend, seconds, tally, rss, checked.returncode,
                  checked.stdout.strip() or checked.stderr.strip())


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def report(run: Soaked) -> str:
    tally = run.tally
    lines = [
        f"== {run.backend}: {run.calls:,} calls in {run.seconds:.0f} s "
        f"({run.calls / run.seconds:.0f}/s) -- {'PASSED' if run.passed else 'FAILED'}",
        f"{'call':<20} {'calls':>9} {'p50 ms':>8} {'p99 ms':>8}",
    ]
    for call, latencies in sorted(tally.latencies_ms.items()):
        p50, p99 = _percentiles(latencies)
        lines.append(f"{call:<20} {len(latencies):>9,} {p50:>8.1f} {p99:>8.1f}")
    lines.append("answers: " + ", ".join(f"{a} {n:,}" for a, n in tally.answers.most_common()))
    if tally.unexpected:
        lines.append("UNEXPECTED: " + "; ".join(
            f"{a} x{n:,} (first: {tally.first_unexpected[a]})"
            for a, n in tally.unexpected.most_common()))
    else:
        lines.append("unexpected answers: none")
    if run.rss_mib:
        lines.append(
            f"server RSS MiB: first {run.rss_mib[0]:.1f}, max {max(run.rss_mib):.1f}, "
            f"last {run.rss_mib[-1]:.1f} over {len(run.rss_mib)} samples -- "
            f"{'flat' if run.flat else 'GROWING'}"
        )
    verdict = "clean" if run.check_code == 0 else f"BREACHED (exit {run.check_code})"
    shown = run.check_output.splitlines()
    lines.append(f"promo-server check: {verdict}")
    lines += [f"  {line}" for line in (shown[-1:] if run.check_code == 0 else shown[:40])]
    return "\n".join(lines)


def _percentiles(latencies: list[float]) -> tuple[float, float]:
    if len(latencies) < 2:
        only = latencies[0] if latencies else 0.0
        return only, only
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return cuts[49], cuts[98]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=DEFAULT_MINUTES,
                        help="how long each backend is soaked (default %(default)s)")
    parser.add_argument("--in-flight", type=int, default=DEFAULT_IN_FLIGHT,
                        help="client threads calling at once (default %(default)s)")
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help=f"comma-separated, of {','.join(BACKENDS)} (default: all)")
    parser.add_argument("--seed", type=int, default=None,
                        help="the workload's random seed (default: a new one, printed)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    print(f"soak seed {seed}")
    passed = True
    for backend in (name.strip() for name in args.backends.split(",") if name.strip()):
        try:
            with OPENERS[backend]() as new_database:
                run = soak(backend, new_database(), args.minutes, args.in_flight, seed)
        except Unavailable as error:
            print(f"!!! {error}")
            passed = False
            continue
        except grpc.RpcError as error:
            print(f"!!! {backend}: the workload could not start: {error}")
            passed = False
            continue
        print(report(run), flush=True)
        passed = passed and run.passed
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
