"""Small asyncio helpers shared by the runtime and the API."""

from __future__ import annotations

import asyncio


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
