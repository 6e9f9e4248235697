"""CPU-heavy request work that is not an engine render, in processes of its own.

The remove.bg-compatible upload route (``POST /v1.0/removebg``) decodes a photo, cuts it out,
composes and encodes the answer: tens of milliseconds of CPU per request, most of it Python
holding the GIL. Run in a thread of the front (as before, and still with the ``inline``
executor), that work shares the front's one GIL with the event loop, so under load every await
of every other request — a realtime request's cache look-up, its result's way back from the
engine worker, its HTTP answer — waited behind it: a profile of the front at 1.5× load (py-spy,
docs/PERFORMANCE.md "Realtime isolation: ...") found a third of the front's samples in the
cutout. With the ``process`` and ``ray`` executors the engines already run outside the front;
this puts the upload route's work there too (``server.cpu_processes``).

The pool is a ``spawn`` :class:`~concurrent.futures.ProcessPoolExecutor`, started (and warmed:
each child imports the ops and configures the segmenter once) with the service, stopped and
joined with it. A child that dies fails its request with 503 ``worker_lost`` (Retry-After) and
the pool is replaced for the next one; nothing hangs.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from swiftshot import telemetry
from swiftshot.config import Settings
from swiftshot.runtime.worker import Rejected

log = logging.getLogger(__name__)

_CHILD_SETTINGS: Settings | None = None


def child_settings() -> Settings:
    """The server's settings, in a child of the pool (set by its initializer)."""
    if _CHILD_SETTINGS is None:
        raise RuntimeError("not in a swiftshot CPU process")
    return _CHILD_SETTINGS


def _init(settings_json: dict[str, Any]) -> None:
    import signal

    global _CHILD_SETTINGS
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the front drains; Ctrl-C is its business
    _CHILD_SETTINGS = Settings(**settings_json)
    if _CHILD_SETTINGS.server.cpu_nice:
        # Below the front and the engine workers' realtime renders (server.cpu_nice), as the
        # workers' lowered thread runs the other classes' renders; set before this child starts
        # any thread, so the threads it starts (OpenCV's pool) inherit it (Linux: per thread).
        from swiftshot.runtime.process import _lower_this_thread

        _lower_this_thread(_CHILD_SETTINGS.server.cpu_nice)
    from swiftshot import pipeline
    from swiftshot.ops import cutout  # noqa: F401 - imported once here, not on the first request

    pipeline.configure(_CHILD_SETTINGS.ops)


def _ready() -> int:
    return os.getpid()


def processes_for(settings: Settings) -> int:
    """``server.cpu_processes``, or its default: none with the ``inline`` executor (everything
    in one process, as tests and the CLI want), else one per core, at most 4."""
    n = settings.server.cpu_processes
    if n is not None:
        return n
    if settings.engine.executor == "inline":
        return 0
    return max(1, min(4, os.cpu_count() or 1))


class CpuProcesses:
    """``run(fn, *args)``: ``fn(*args)`` in a child process, or in a thread when there are none
    (``processes == 0``). ``fn`` and its arguments and result must pickle; ``fn`` is a
    module-level function that may call :func:`child_settings`."""

    def __init__(self, settings: Settings, processes: int | None = None) -> None:
        self.settings = settings
        self.processes = processes_for(settings) if processes is None else processes
        self._pool: ProcessPoolExecutor | None = None
        self.replaced = 0
        """Pools replaced after a child died."""

    @property
    def enabled(self) -> bool:
        return self.processes > 0

    def _start(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.processes, mp_context=mp.get_context("spawn"), initializer=_init,
                initargs=(self.settings.model_dump(mode="json"),))
        return self._pool

    def start(self) -> None:
        """Start the children now and let each warm up in the background (not awaited)."""
        if self.enabled:
            pool = self._start()
            for _ in range(self.processes):
                pool.submit(_ready)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if not self.enabled:
            return await asyncio.to_thread(fn, *args)
        pool = self._start()
        try:
            future = pool.submit(fn, *args)
        except BrokenProcessPool:  # a child died earlier: this request has not started
            self._replace(pool)
            pool = self._start()
            future = pool.submit(fn, *args)
        try:
            return await asyncio.wrap_future(future)
        except BrokenProcessPool:
            log.error("a CPU process died; its request fails and the pool is replaced")
            self._replace(pool)
            raise Rejected(503, "worker_lost", 1.0,
                           "the process working on this request died; retry after 1s") from None

    def _replace(self, pool: ProcessPoolExecutor) -> None:
        if self._pool is pool:
            self._pool = None
            self.replaced += 1
            telemetry.CPU_POOL_REPLACED.inc()
            pool.shutdown(wait=False, cancel_futures=True)

    def shutdown(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
