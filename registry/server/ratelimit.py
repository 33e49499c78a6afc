"""Token-bucket rate limits, per API token and per client address.

Buckets live in each replica's memory: with N replicas a client gets at most N times the
configured rate. That bounds abuse (brute force, floods) without a shared store on every request;
correctness never depends on it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

MAX_KEYS = 100_000


class TokenBuckets:
    def __init__(
        self, rate: float, burst: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Spend one token for ``key``: 0.0 when allowed, else the seconds until one is due."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                wait = 0.0
            else:
                self._buckets[key] = (tokens, now)
                wait = (1 - tokens) / self.rate
            while len(self._buckets) > MAX_KEYS:
                self._buckets.popitem(last=False)
        return wait
