"""Bounded memory for uploaded photos: a byte budget for decoded pixels across requests, and
giving freed memory back to the OS.

Why: a 7000x7000 PNG of 157 KB decodes to ~200 MB and its working copies (alpha, float arrays
of the cutout, composites) to several times that; eight at once took a server to 5.6 GB, and
glibc kept 4.9 GB of it afterwards (freed chunks stay in per-thread arenas).

* :class:`MemoryBudget`: before a photo is decoded, its cost is estimated from the header
  (:func:`estimate_bytes`) and reserved; past the budget the request waits its turn (FIFO) up to
  its deadline, then gets 503 ``memory_busy`` with Retry-After. A photo whose cost alone passes
  the whole budget is admitted only when nothing else holds any (never refused outright: the
  pixel limit already bounds it), so the budget is never over-committed by more than one photo.
* :func:`tune_malloc`: a fixed mmap threshold, so large blocks (Pillow's 16 MB image blocks,
  numpy arrays) are mmapped and go back to the OS when freed instead of staying in an arena;
  :func:`trim` (``malloc_trim``) after a big request returns what the heap still holds.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import ctypes.util
import gc
import logging
import time
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING

from swiftshot.errors import ServiceError

if TYPE_CHECKING:
    from swiftshot.config import LimitsSettings

log = logging.getLogger("swiftshot.memory")

BYTES_PER_PIXEL = 4
"""Pillow holds RGB and RGBA alike in 4 bytes a pixel."""
DECODE_COPIES = 2
"""The decoded frame plus one converted copy (mode, orientation, ICC) alive at once."""
WORK_COPIES = 6
"""Working copies at the working size: alpha, float matte, composite, shadow, encode buffer."""


def estimate_bytes(width: int, height: int, work_side: int) -> int:
    """Peak bytes one photo of ``width`` x ``height`` costs: the full decode (once, then it is
    reduced to ``work_side`` on the long side) plus the working copies at that size."""
    full = width * height * BYTES_PER_PIXEL * DECODE_COPIES
    scale = min(1.0, work_side / max(width, height, 1))
    work = int(width * scale) * int(height * scale) * BYTES_PER_PIXEL * WORK_COPIES
    return full + work


class MemoryBusy(ServiceError):
    """The budget stayed full for as long as the request could wait (503 + Retry-After)."""

    status = 503
    code = "memory_busy"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message, retry_after=retry_after_s)


class MemoryBudget:
    """Bytes of decoded pixels that requests may hold at once (FIFO admission)."""

    def __init__(self, budget_bytes: int, *, max_wait_s: float = 30.0,
                 retry_after_s: float = 2.0) -> None:
        self.budget = budget_bytes
        self.max_wait_s = max_wait_s
        self.retry_after_s = retry_after_s
        self.in_use = 0
        self.peak = 0
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    def _fits(self, n: int) -> bool:
        return self.in_use == 0 or self.in_use + n <= self.budget

    @contextlib.asynccontextmanager
    async def reserve(self, n: int, deadline_s: float | None = None) -> AsyncIterator[None]:
        """Hold ``n`` bytes of the budget for the block; wait (FIFO) until they fit, at most
        ``deadline_s`` (or ``max_wait_s``), else raise :class:`MemoryBusy`."""
        if self.budget <= 0 or n <= 0:
            yield
            return
        if not self._waiters and self._fits(n):
            self._take(n)
        else:
            await self._wait(n, deadline_s)
        try:
            yield
        finally:
            self._release(n)

    def _take(self, n: int) -> None:
        self.in_use += n
        self.peak = max(self.peak, self.in_use)

    async def _wait(self, n: int, deadline_s: float | None) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (n, fut)
        self._waiters.append(entry)
        wait = self.max_wait_s if deadline_s is None else min(deadline_s, self.max_wait_s)
        t0 = time.monotonic()
        try:
            await asyncio.wait_for(asyncio.shield(fut), wait)
        except (TimeoutError, asyncio.CancelledError) as e:
            if fut.done() and not fut.cancelled():
                self._release(n)  # granted just as we gave up: hand it on
            else:
                fut.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)
            self._wake()
            if isinstance(e, asyncio.CancelledError):
                raise
            from swiftshot import telemetry

            telemetry.REJECTED.labels("memory_busy").inc()
            raise MemoryBusy(f"the server's memory budget for decoded photos "
                             f"({self.budget // 2**20} MiB) stayed full for "
                             f"{time.monotonic() - t0:.1f} s; retry shortly",
                             self.retry_after_s) from None

    def _release(self, n: int) -> None:
        self.in_use -= n
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            n, fut = self._waiters[0]
            if fut.done():
                self._waiters.popleft()
                continue
            if not self._fits(n):
                return
            self._waiters.popleft()
            self._take(n)
            fut.set_result(None)


_BUDGETS: dict[tuple[int, float], MemoryBudget] = {}
TRIM_MIN_BYTES = 64 * 1024 * 1024
"""A reservation this big, once released, schedules a ``malloc_trim``."""


def budget_for(limits: LimitsSettings) -> MemoryBudget:
    """The process's budget for these limits (one per process: routes and jobs share it)."""
    key = (limits.memory_budget_bytes, limits.memory_wait_s)
    found = _BUDGETS.get(key)
    if found is None:
        found = _BUDGETS[key] = MemoryBudget(limits.memory_budget_bytes,
                                             max_wait_s=limits.memory_wait_s)
    return found


def photo_cost(data: bytes, limits: LimitsSettings) -> int:
    """Estimated peak bytes of decoding and working on ``data`` (0 when its header is bad:
    the decode itself then refuses it with the precise error)."""
    from swiftshot.inputs import InputError, peek_size

    try:
        w, h = peek_size(data, limits)
    except InputError:
        return 0
    return estimate_bytes(w, h, limits.max_work_side)


@contextlib.asynccontextmanager
async def admit_photos(photos: Iterable[bytes], limits: LimitsSettings,
                       deadline_s: float | None = None) -> AsyncIterator[None]:
    """Hold the memory budget for decoding and working on ``photos`` for the block (wait, or
    :class:`MemoryBusy`); afterwards, a big reservation gives freed pages back to the OS."""
    cost = sum(photo_cost(d, limits) for d in photos)
    budget = budget_for(limits)
    async with budget.reserve(cost, deadline_s):
        yield
    if cost >= TRIM_MIN_BYTES:
        _schedule_trim()


_trim_pending = False


def _schedule_trim(delay_s: float = 0.5) -> None:
    """One ``malloc_trim`` in a thread shortly after (the caller's images are freed by then)."""
    global _trim_pending
    if _trim_pending or _LIBC is None:
        return
    _trim_pending = True
    loop = asyncio.get_running_loop()

    def run() -> None:
        global _trim_pending
        _trim_pending = False
        # Images caught in reference cycles (an exception's traceback holding a frame that
        # holds pixels) wait for the cyclic collector; collect them before trimming.
        gc.collect()
        loop.run_in_executor(None, trim)

    loop.call_later(delay_s, run)


# -- glibc -------------------------------------------------------------------------------------

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim  # noqa: B018 - glibc only
        libc.mallopt  # noqa: B018
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _libc()


def tune_malloc(mmap_threshold: int = 1 << 20) -> bool:
    """Serve allocations of ``mmap_threshold`` bytes and more with mmap, always (glibc raises
    the threshold on its own after the first big free, up to 32 MB, which puts Pillow's 16 MB
    blocks in arenas that keep their pages). Returns whether it was applied (glibc only)."""
    if _LIBC is None:
        return False
    ok = bool(_LIBC.mallopt(_M_MMAP_THRESHOLD, mmap_threshold))
    ok = bool(_LIBC.mallopt(_M_TRIM_THRESHOLD, 4 * mmap_threshold)) and ok
    return ok


def trim() -> bool:
    """Give the heap's free pages back to the OS (glibc ``malloc_trim(0)``)."""
    if _LIBC is None:
        return False
    return bool(_LIBC.malloc_trim(0))
