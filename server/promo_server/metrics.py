"""Prometheus metrics, and the stock watcher that counts the pools and warns on low stock.

The counters and the histogram are module-level objects in prometheus_client's
default registry, which also carries the process's own metrics (CPU, memory,
open files): one process serves one server. Recording a call costs a cached
look-up and a locked add, about 2 µs, and no database query.

The pools' gauges come from the stock watcher, not from a query at scrape
time. Counting available codes costs in proportion to the codes, so one
grouped count over every pool runs on a thread of its own every
``PROMO_STOCK_CHECK_SECONDS``, however many scrapers ask how often. The same
check notices a pool falling under its low-stock threshold and logs it, with
or without a metrics endpoint; codes also become unavailable by merely
expiring, which no call would notice.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from promo_server.config import parse_address
from promo_server.domain.promotions import is_low_stock
from promo_server.store import promotions
from promo_server.store.db import database, utcnow

_LOGGER = logging.getLogger(__name__)

# From a validation in process (0.05 ms) to a large import (minutes).
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
)

CALLS = Counter(
    "promo_rpc_calls", "promo.v1 calls handled, by method and status code", ("method", "code")
)
LATENCY = Histogram(
    "promo_rpc_duration_seconds",
    "Time to handle a promo.v1 call, from its arrival to its status, by method",
    ("method",),
    buckets=LATENCY_BUCKETS,
)
REDEMPTIONS = Counter(
    "promo_redemptions",
    "Codes redeemed by ActivateCode (a repeated request_id is not counted again)",
    ("project",),
)
ROLLBACKS = Counter("promo_rollbacks", "Redemptions rolled back", ("project",))
GUESS_THROTTLED = Counter(
    "promo_guess_throttled",
    "ValidateCode and ActivateCode calls refused because their key asked for too many "
    "unknown codes",
    ("project",),
)
CODES_IMPORTED = Counter(
    "promo_codes_imported",
    "Codes added to pools, by ImportCodes (source=import) or GenerateCodes (source=generate)",
    ("project", "source"),
)


@functools.cache
def _calls(method: str, code: str) -> Counter:
    return CALLS.labels(method, code)


@functools.cache
def _latency(method: str) -> Histogram:
    return LATENCY.labels(method)


def record_call(method: str, code: str, seconds: float) -> None:
    """One handled call: its method, its status code's name ("OK", "NOT_FOUND") and duration."""
    _calls(method, code).inc()
    _latency(method).observe(seconds)


@functools.cache
def _redemptions(project_id: int) -> Counter:
    return REDEMPTIONS.labels(str(project_id))


def record_redemption(project_id: int) -> None:
    _redemptions(project_id).inc()


def record_rollback(project_id: int) -> None:
    ROLLBACKS.labels(str(project_id)).inc()


def record_guess_throttled(project_id: int) -> None:
    GUESS_THROTTLED.labels(str(project_id)).inc()


def record_codes_added(project_id: int, source: str, count: int) -> None:
    """``count`` new codes in a pool of the project, by "import" or "generate"."""
    CODES_IMPORTED.labels(str(project_id), source).inc(count)


class _PoolGauges:
    """The pools' gauges, as the stock watcher last found them."""

    def __init__(self) -> None:
        # One tuple, replaced whole: a scrape sees one check or the next, never a mix.
        self._last: tuple[Sequence[promotions.PoolStock], float | None] = ((), None)

    def publish(self, pools: Sequence[promotions.PoolStock], at: float | None) -> None:
        self._last = (tuple(pools), at)

    def describe(self) -> Iterable[Metric]:
        return self._families((), None)

    def collect(self) -> Iterable[Metric]:
        return self._families(*self._last)

    @staticmethod
    def _families(pools: Sequence[promotions.PoolStock], at: float | None) -> list[Metric]:
        labels = ("project", "promotion")
        available = GaugeMetricFamily(
            "promo_pool_available_codes",
            "Codes a pool can still hand out (promotion=\"\": the project's global pool)",
            labels=labels,
        )
        threshold = GaugeMetricFamily(
            "promo_pool_low_stock_threshold",
            "A pool's low-stock threshold, for the pools that have one",
            labels=labels,
        )
        low = GaugeMetricFamily(
            "promo_pool_low_stock",
            "1 while a pool's available codes are under its low-stock threshold, else 0",
            labels=labels,
        )
        for pool in pools:
            names = [str(pool.project_id), pool.external_id]
            available.add_metric(names, pool.available)
            if pool.threshold is not None:
                threshold.add_metric(names, pool.threshold)
                low.add_metric(names, int(is_low_stock(pool.available, pool.threshold)))
        checked = GaugeMetricFamily(
            "promo_pool_stock_check_time_seconds",
            "When the pools were last counted (Unix time)",
        )
        if at is not None:
            checked.add_metric([], at)
        return [available, threshold, low, checked]


_POOL_GAUGES = _PoolGauges()
REGISTRY.register(_POOL_GAUGES)


class StockWatcher:
    """Counts every pool's available codes every ``interval`` seconds (0: never), on a
    thread of its own.

    Publishes the counts as gauges, and logs a warning when a pool falls under
    its low-stock threshold: once, until it is back at or over the threshold.
    The first check runs at start, so pools already low are reported then.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._low: set[tuple[int, int | None]] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stock-watcher", daemon=True)

    def start(self) -> None:
        """Starts counting, unless the interval is 0 (never count)."""
        if self.interval:
            self._thread.start()

    def stop(self) -> None:
        """Stops the thread, after the check it may be running."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()
        _POOL_GAUGES.publish((), None)

    def check(self) -> list[promotions.PoolStock]:
        """Counts the pools now, publishes the counts and logs the crossings of thresholds."""
        with self._lock:
            database.connect(reuse_if_open=True)
            try:
                pools = promotions.pool_stock(utcnow())
            finally:
                database.close()
            self._log_crossings(pools)
            _POOL_GAUGES.publish(pools, time.time())
        return pools

    def _run(self) -> None:
        while True:
            try:
                self.check()
            except Exception as error:  # the database away or busy: try again next time
                _LOGGER.warning("pool stock check failed error=%s", error)
            if self._stopping.wait(self.interval):
                return

    def _log_crossings(self, pools: Iterable[promotions.PoolStock]) -> None:
        low: set[tuple[int, int | None]] = set()
        for pool in pools:
            key = (pool.project_id, pool.promotion_id)
            if is_low_stock(pool.available, pool.threshold):
                low.add(key)
                if key not in self._low:
                    _LOGGER.warning(
                        "pool low on codes project=%s promotion=%s available=%d threshold=%s",
                        pool.project_id, pool.external_id, pool.available, pool.threshold,
                    )
            elif key in self._low:
                _LOGGER.info(
                    "pool no longer low on codes project=%s promotion=%s available=%d "
                    "threshold=%s",
                    pool.project_id, pool.external_id, pool.available, pool.threshold,
                )
        self._low = low


class MetricsEndpoint:
    """Serves /metrics over HTTP on ``address`` (port 0: any free one), on threads of its own."""

    def __init__(self, address: str) -> None:
        host, port = parse_address(address)
        try:
            served: tuple[WSGIServer, threading.Thread] = start_http_server(port, host)
        except OSError as error:
            raise OSError(f"cannot serve metrics on {address}: {error.strerror}") from None
        self._httpd, self._thread = served
        self.host = host
        self.port: int = self._httpd.server_port

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()
