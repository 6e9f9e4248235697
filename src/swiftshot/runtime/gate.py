"""Admission for work past a cache hit: a bounded count of requests doing CPU work at once.

The engine queue has its own admission (the scheduler's estimated wait against the deadline),
but a miss also costs a master encode, a delivery miss an AVIF/WebP encode, an upload a decode
and a cutout — all on the same cores and GIL as the event loop. Queued without bound in thread
pools, that backlog made every request wait seconds under overload, cache hits included. The
gate bounds it: past ``capacity`` a request is refused at once (503 ``overloaded`` with
Retry-After, which costs microseconds), and a share is kept for realtime requests so a flood of
standard or batch work cannot lock them out. Cache hits never pass through it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from swiftshot import telemetry
from swiftshot.runtime.worker import Rejected

_HELD: ContextVar[bool] = ContextVar("swiftshot_gate_held", default=False)
"""Set while the current request holds a place: nested holds (a route's upload decode around
the service's miss, a task started from it) take no second one."""

WORK_PER_CORE = 8
"""Default capacity per CPU core when ``server.max_work`` is unset."""


def default_capacity(cores: int | None = None) -> int:
    return WORK_PER_CORE * max(1, cores or os.cpu_count() or 1)


class WorkGate:
    """Counts admitted work; ``enter`` refuses past capacity, ``leave`` frees a place."""

    def __init__(self, capacity: int, realtime_reserve: float = 0.25,
                 retry_after_s: float = 1.0) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1; got {capacity}")
        if not 0 <= realtime_reserve < 1:
            raise ValueError(f"realtime_reserve must be in [0, 1); got {realtime_reserve}")
        self.capacity = capacity
        # Everyone else stops here; realtime may use the rest. At least one place is held
        # back when a reserve is asked for at all, however small the capacity.
        reserved = max(1, round(capacity * realtime_reserve)) if realtime_reserve else 0
        self.shared_limit = max(1, capacity - reserved) if capacity > 1 else capacity
        self.retry_after_s = retry_after_s
        self.in_use = 0

    def limit_for(self, priority: str) -> int:
        return self.capacity if priority == "realtime" else self.shared_limit

    def enter(self, priority: str) -> None:
        """Take a place or raise :class:`Rejected` (503 ``overloaded``); pair with ``leave``."""
        limit = self.limit_for(priority)
        if self.in_use >= limit:
            telemetry.REJECTED.labels(reason="overloaded").inc()
            raise Rejected(503, "overloaded", self.retry_after_s,
                           f"the server is at capacity ({limit} {priority} requests doing work "
                           f"past the cache); retry after {self.retry_after_s:g}s")
        self.in_use += 1

    def leave(self) -> None:
        self.in_use -= 1

    @contextmanager
    def hold(self, priority: str) -> Iterator[None]:
        """One place for the block, unless this request holds one already."""
        if _HELD.get():
            yield
            return
        self.enter(priority)
        token = _HELD.set(True)
        try:
            yield
        finally:
            _HELD.reset(token)
            self.leave()
