"""Admission for work past a cache hit: a bounded count of requests doing CPU work at once.

The engine queue has its own admission (the scheduler's estimated wait against the deadline),
but a miss also costs a master encode, a delivery miss an AVIF/WebP encode, an upload a decode
and a cutout — all on the same cores and GIL as the event loop. Queued without bound in thread
pools, that backlog made every request wait seconds under overload, cache hits included. The
gate bounds it: past ``capacity`` a request is refused at once (503 ``overloaded`` with
Retry-After, which costs microseconds), and a share is kept for realtime requests so a flood of
standard or batch work cannot lock them out. Cache hits never pass through it.

Pressure. A bounded count does not see the front itself running short of CPU: the event loop
then takes longer and longer to come round, and every await of every request (the cache look-up
of a miss, the worker's result, the answer's write) waits one more turn of it — under 1.5×
load that, not the engine queue, was most of a realtime miss's time (docs/PERFORMANCE.md). So
:class:`LoopLag` measures how late the loop runs a short timer (a moving average), and past
``server.shed_lag_ms`` the gate refuses new batch and prefetch work past the cache, past twice
that standard work too (503 ``overloaded`` with Retry-After), until the loop catches up.
Realtime work is never refused for lag, and cache hits never pass the gate: what is shed is
the lower classes' misses and encodes, the front's costliest requests.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
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


LAG_INTERVAL_S = 0.02
"""How often :class:`LoopLag` measures (50 wake-ups a second: a few hundredths of a ms each)."""
LAG_ALPHA = 0.25
"""Weight of the newest sample in the moving average (about the last 4 samples)."""

SHED_LEVELS: dict[str, int] = {"realtime": 99, "standard": 2, "batch": 1, "prefetch": 1}
"""Pressure level (1: lag ≥ ``shed_lag_ms``, 2: ≥ twice it) from which a class is shed."""


class LoopLag:
    """How late the event loop runs a timer, as a moving average (seconds).

    A task sleeps ``interval_s`` again and again; how much later than asked it wakes is the
    time the loop took to come round to it — on a saturated front, the wait every await of
    every request pays. ``sample`` takes one measurement (the task's, or a test's)."""

    def __init__(self, interval_s: float = LAG_INTERVAL_S, alpha: float = LAG_ALPHA) -> None:
        self.interval_s = interval_s
        self.alpha = alpha
        self.lag_s = 0.0
        self._task: asyncio.Task[None] | None = None
        self._hist = telemetry.LOOP_LAG

    def sample(self, lag_s: float) -> None:
        lag_s = max(0.0, lag_s)
        self.lag_s += self.alpha * (lag_s - self.lag_s)
        self._hist.observe(lag_s)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(self.interval_s)
            self.sample(loop.time() - t - self.interval_s)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(),
                                                                name="swiftshot-loop-lag")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass


class WorkGate:
    """Counts admitted work; ``enter`` refuses past capacity (or, with a ``lag`` and
    ``shed_lag_s``, lower classes while the event loop runs late); ``leave`` frees a place."""

    def __init__(self, capacity: int, realtime_reserve: float = 0.25,
                 retry_after_s: float = 1.0, *, lag: Callable[[], float] | None = None,
                 shed_lag_s: float | None = None) -> None:
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
        if shed_lag_s is not None and not shed_lag_s > 0:
            raise ValueError(f"shed_lag_s must be > 0 (or None: off); got {shed_lag_s}")
        self.lag = lag
        """The event loop's lag now (seconds), e.g. ``LoopLag``'s; None: no shedding."""
        self.shed_lag_s = shed_lag_s
        self.shed: dict[str, int] = {}
        """Refusals for lag, by class."""

    def pressure(self) -> int:
        """0: the loop keeps up; 1: lag ≥ ``shed_lag_s`` (batch, prefetch shed); 2: ≥ twice
        it (standard too)."""
        if self.lag is None or self.shed_lag_s is None:
            return 0
        lag = self.lag()
        return 2 if lag >= 2 * self.shed_lag_s else 1 if lag >= self.shed_lag_s else 0

    def limit_for(self, priority: str) -> int:
        return self.capacity if priority == "realtime" else self.shared_limit

    def enter(self, priority: str) -> None:
        """Take a place or raise :class:`Rejected` (503 ``overloaded``); pair with ``leave``."""
        if self.shed_lag_s is not None and self.pressure() >= SHED_LEVELS.get(priority, 1):
            self.shed[priority] = self.shed.get(priority, 0) + 1
            telemetry.REJECTED.labels(reason="overloaded_lag").inc()
            raise Rejected(503, "overloaded", self.retry_after_s,
                           f"the server is short of CPU (its event loop runs "
                           f"{1000 * (self.lag() if self.lag else 0):.0f} ms late) and keeps it "
                           f"for realtime work; {priority} work past the cache is refused for "
                           f"now; retry after {self.retry_after_s:g}s")
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
