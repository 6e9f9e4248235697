"""Single-flight: identical requests in flight at once share one generation.

The first caller's ``fn()`` runs as a task of its own, so that one caller hanging up does not
cancel the work the others wait for. Every caller, the first included, waits on a future of
its own, which that task resolves itself as its last step: the result reaches each caller in
one wake-up, with no task and no ``asyncio.shield`` between them (each cost the miss path a
turn of the event loop on the way in and on the way out; docs/PERFORMANCE.md, sixth pass).

When *every* waiter has gone, nobody wants the result any more, so the task is cancelled and
the capacity it held is freed. A caller's ``timeout_s`` (its deadline) ends only its own wait:
it gets ``expired()``'s exception, and the work goes on to the end for the others and the
cache, whoever leaves afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

from swiftshot import telemetry

T = TypeVar("T")


class _Call(Generic[T]):
    __slots__ = ("task", "waiters", "kept", "finished")

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None
        self.waiters: list[asyncio.Future[T]] = []
        """One future per caller waiting now."""
        self.kept = 0
        """Callers whose deadline passed: they wait no more, but the work is never cancelled
        for want of waiters after one (its result is cached for the next asker)."""
        self.finished = False


class SingleFlight:
    def __init__(self) -> None:
        self._calls: dict[Hashable, _Call[Any]] = {}

    def inflight(self) -> int:
        """Distinct keys being computed now."""
        return len(self._calls)

    async def do(self, key: Hashable | None, fn: Callable[[], Awaitable[T]],
                 on_join: Callable[[], object] | None = None, *,
                 timeout_s: float | None = None,
                 expired: Callable[[], BaseException] | None = None) -> tuple[T, bool]:
        """``(result, shared)``: shared is True when this caller joined another's call.

        ``key`` None runs ``fn`` for this caller alone (no sharing), with the same deadline
        and hang-up semantics. ``on_join`` runs when this caller joins a call already in
        flight (before waiting): the place to pass on what the joiner needs that the first
        caller did not ask for, such as a higher priority. ``timeout_s``: this caller stops
        waiting then and gets ``expired()`` raised (``TimeoutError`` without it); the work
        goes on.
        """
        call = self._calls.get(key) if key is not None else None
        shared = call is not None
        if call is None:
            call = _Call()
            call.task = asyncio.get_running_loop().create_task(self._run(key, call, fn))
            if key is not None:
                self._calls[key] = call
        else:
            telemetry.COALESCED.inc()
            if on_join is not None:
                on_join()
        return await self._wait(key, call, timeout_s, expired), shared

    async def _wait(self, key: Hashable | None, call: _Call[T], timeout_s: float | None,
                    expired: Callable[[], BaseException] | None) -> T:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[T] = loop.create_future()
        call.waiters.append(waiter)
        timer = None if timeout_s is None else \
            loop.call_later(timeout_s, self._expire, call, waiter, expired)
        try:
            return await waiter
        finally:
            if timer is not None:
                timer.cancel()
            call.waiters.remove(waiter)
            if waiter.done() and not waiter.cancelled():
                waiter.exception()  # this caller may be cancelled just after it was resolved
            if not call.waiters and not call.kept and not call.finished:
                # Everyone who wanted this has gone. Forget the key now, not when the task
                # finishes cancelling, so a newcomer starts fresh instead of joining a corpse.
                self._forget(key, call)
                assert call.task is not None
                call.task.cancel()

    @staticmethod
    def _expire(call: _Call[Any], waiter: asyncio.Future[Any],
                expired: Callable[[], BaseException] | None) -> None:
        if waiter.done():
            return
        call.kept += 1
        waiter.set_exception(expired() if expired is not None else TimeoutError())

    async def _run(self, key: Hashable | None, call: _Call[T],
                   fn: Callable[[], Awaitable[T]]) -> None:
        try:
            result = await fn()  # called here: a task cancelled before it starts leaves none
        except BaseException as e:
            self._end(key, call)
            for w in call.waiters:
                if not w.done():
                    if isinstance(e, asyncio.CancelledError):
                        w.cancel()
                    else:
                        w.set_exception(e)
            if not isinstance(e, Exception):
                raise  # cancelled (every waiter left, or the loop is closing)
            # else: every waiter has it; the task itself ends quietly (nobody awaits it)
        else:
            self._end(key, call)
            for w in call.waiters:
                if not w.done():
                    w.set_result(result)

    def _end(self, key: Hashable | None, call: _Call[Any]) -> None:
        call.finished = True
        self._forget(key, call)

    def _forget(self, key: Hashable | None, call: _Call[Any]) -> None:
        if key is not None and self._calls.get(key) is call:
            del self._calls[key]
