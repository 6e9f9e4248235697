"""wait_event: the stop() paths of the worker, jobs runner and drain rely on it."""

from __future__ import annotations

import asyncio

import pytest

from swiftshot.runtime.aio import wait_event


async def test_wait_never_swallows_a_cancel_that_races_the_event():
    # stop() cancels loops while finishing work sets their wake event; with asyncio.wait_for
    # on 3.11 that cancel could be lost and shutdown hung forever (cpython gh-86296).
    event = asyncio.Event()
    task = asyncio.create_task(wait_event(event, 10))
    await asyncio.sleep(0)
    event.set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_says_whether_the_event_came():
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 0.01) is True
