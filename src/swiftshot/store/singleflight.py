"""Single-flight: identical requests in flight at once share one generation.

The first caller's ``fn()`` runs as a task of its own; callers that arrive with the same key
while it runs wait on that task (through ``asyncio.shield``, so one client hanging up does not
cancel the work others wait for). When *every* waiter has gone, nobody wants the result any
more, so the task is cancelled and the capacity it held is freed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from swiftshot import telemetry

T = TypeVar("T")


@dataclass
class _Call(Generic[T]):
    task: asyncio.Future[T]
    waiters: int = 0


class SingleFlight:
    def __init__(self) -> None:
        self._calls: dict[str, _Call[Any]] = {}

    def inflight(self) -> int:
        """Distinct keys being computed now."""
        return len(self._calls)

    async def do(self, key: str, fn: Callable[[], Awaitable[T]],
                 on_join: Callable[[], object] | None = None) -> tuple[T, bool]:
        """``(result, shared)``: shared is True when this caller joined another's call.

        ``on_join`` runs when this caller joins a call already in flight (before waiting): the
        place to pass on what the joiner needs that the first caller did not ask for, such as
        a higher priority.
        """
        call = self._calls.get(key)
        shared = call is not None
        if call is None:
            call = _Call(asyncio.ensure_future(fn()))
            self._calls[key] = call
            call.task.add_done_callback(lambda t, c=call: self._finished(key, c))
        else:
            telemetry.COALESCED.inc()
            if on_join is not None:
                on_join()
        call.waiters += 1
        try:
            return await asyncio.shield(call.task), shared
        finally:
            call.waiters -= 1
            if call.waiters == 0 and not call.task.done():
                # Everyone who wanted this has gone. Forget the key now, not when the task
                # finishes cancelling, so a newcomer starts fresh instead of joining a corpse.
                self._forget(key, call)
                call.task.cancel()

    def _forget(self, key: str, call: _Call[Any]) -> None:
        if self._calls.get(key) is call:
            del self._calls[key]

    def _finished(self, key: str, call: _Call[Any]) -> None:
        self._forget(key, call)
        if not call.task.cancelled():
            call.task.exception()  # mark retrieved: every waiter may have left before it failed
