"""The defence against guessing codes: a token bucket per API key, spent by unknown codes.

ValidateCode and ActivateCode answer NOT_FOUND for a code that does not exist,
so a key could try codes until one is served. Each NOT_FOUND answer takes a
token from the key's bucket, which fills again at ``per_second`` tokens a
second up to ``burst``. While the bucket is empty, the key's ValidateCode and
ActivateCode calls are refused before any code is looked up, known codes too:
a refused miss beside a served hit would still tell codes apart. Known codes
take no token, so traffic that misses less often than the bucket fills is never
slowed.

The buckets live in the process (``serve --workers N``: one set per worker).
Only authenticated keys get one, and a bucket that is full again is forgotten,
so memory follows the keys that missed lately.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from promo_server import metrics
from promo_server.config import Settings, SettingsError
from promo_server.domain.errors import ResourceExhausted

TOO_MANY_UNKNOWN_CODES = "TOO_MANY_UNKNOWN_CODES"


class GuessThrottle:
    """Token buckets by key id; ``burst`` or ``per_second`` 0 turns the defence off."""

    def __init__(
        self, burst: int, per_second: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if burst < 0 or per_second < 0:
            raise ValueError("burst and per_second must be 0 or more")
        self.burst = burst
        self.per_second = per_second
        self.enabled = burst > 0 and per_second > 0
        self._clock = clock
        # key id -> (tokens, when they were counted); absent: a full bucket.
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()
        self._swept = clock()

    def admit(self, key_id: str, project_id: int) -> None:
        """Refuses the call (RESOURCE_EXHAUSTED, with when to retry) while the key's bucket
        is empty."""
        wait = self.wait(key_id)
        if wait > 0:
            metrics.record_guess_throttled(project_id)
            raise ResourceExhausted(
                f"too many unknown codes from this API key: retry in {wait:.1f} s",
                reason=TOO_MANY_UNKNOWN_CODES,
                retry_delay=wait,
            )

    def wait(self, key_id: str) -> float:
        """Seconds until the key's bucket holds a token again: 0 while it holds one."""
        # Most keys have no bucket (a full one): they pass without taking the lock.
        if key_id not in self._buckets:
            return 0.0
        with self._lock:
            bucket = self._buckets.get(key_id)
            if bucket is None:
                return 0.0
            tokens = self._tokens(bucket, self._clock())
        return 0.0 if tokens >= 1 else (1 - tokens) / self.per_second

    def miss(self, key_id: str) -> None:
        """The key asked for a code that does not exist: one token less."""
        if not self.enabled:
            return
        with self._lock:
            now = self._clock()
            self._sweep(now)
            bucket = self._buckets.get(key_id)
            tokens = self.burst if bucket is None else self._tokens(bucket, now)
            # Calls admitted together may miss together: the bucket stops at empty.
            self._buckets[key_id] = (max(tokens - 1, 0.0), now)

    def tracked(self) -> int:
        """How many keys have a bucket that is not full (or was not when last swept)."""
        return len(self._buckets)

    def _tokens(self, bucket: tuple[float, float], now: float) -> float:
        tokens, counted = bucket
        return min(self.burst, tokens + (now - counted) * self.per_second)

    def _sweep(self, now: float) -> None:
        """Forgets the full buckets, at most once in the time an empty one takes to fill."""
        if now - self._swept < self.burst / self.per_second:
            return
        self._swept = now
        full = [key for key, bucket in self._buckets.items()
                if self._tokens(bucket, now) >= self.burst]
        for key in full:
            del self._buckets[key]


def from_settings(settings: Settings) -> GuessThrottle:
    """The throttle the settings ask for; a SettingsError names the variable to fix."""
    if settings.guess_burst < 0:
        raise SettingsError(f"PROMO_GUESS_BURST must be 0 or more, not {settings.guess_burst}")
    if not (math.isfinite(settings.guess_per_second) and settings.guess_per_second >= 0):
        raise SettingsError(
            f"PROMO_GUESS_PER_SECOND must be a number, 0 or more, not {settings.guess_per_second}"
        )
    return GuessThrottle(settings.guess_burst, settings.guess_per_second)
