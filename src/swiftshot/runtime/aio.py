"""Small asyncio helpers shared by the runtime and the API."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def wait_event(event: asyncio.Event, timeout_s: float | None) -> bool:
    """Until ``event`` is set (True) or ``timeout_s`` passes (False).

    Not ``asyncio.wait_for``: on Python 3.11 it can swallow a cancellation that arrives just as
    the event is set (cpython gh-86296). Our ``stop()`` methods set events while cancelling the
    loops that wait on them, so with ``wait_for`` such a loop could never end.
    """
    waiter = asyncio.ensure_future(event.wait())
    try:
        done, _ = await asyncio.wait({waiter}, timeout=timeout_s)
        return bool(done)
    finally:
        waiter.cancel()


def post(loop: asyncio.AbstractEventLoop, fn: Callable[..., object], *args: object) -> bool:
    """``loop.call_soon_threadsafe(fn, *args)`` from a worker thread; False when the loop has
    closed (its owner is gone: a cancelled request whose render still runs in a thread, an
    executor that was never stopped). Such a thread has nobody to tell and must end quietly
    rather than raise in the thread."""
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        return False
    return True
