"""Per-tenant token buckets: ``rate_per_s`` tokens a second, at most ``burst`` saved up."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBuckets:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # tenant → (tokens, last refill)
        self._lock = threading.Lock()

    def take(self, tenant: str, rate_per_s: float, burst: int, cost: float = 1.0) -> float:
        """Take ``cost`` tokens: 0.0 when allowed, else the seconds until they would be there.

        A refused request takes nothing, so a client that backs off as told gets through.
        """
        if cost > burst:
            # more than the bucket can ever hold: say how long a full bucket takes, not forever
            return burst / rate_per_s
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(tenant, (float(burst), now))
            tokens = min(float(burst), tokens + (now - last) * rate_per_s)
            if tokens >= cost:
                self._buckets[tenant] = (tokens - cost, now)
                return 0.0
            self._buckets[tenant] = (tokens, now)
            return (cost - tokens) / rate_per_s
