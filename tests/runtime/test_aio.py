"""wait_event: the stop() paths of the worker, jobs runner and drain rely on it."""

from __future__ import annotations

import asyncio

import pytest

from swiftshot.runtime.aio import post, wait_event


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


def test_post_from_a_thread_after_the_loop_closed_is_false_not_an_exception():
    import threading

    loop = asyncio.new_event_loop()
    seen: list[int] = []
    assert post(loop, seen.append, 1) is True
    loop.run_until_complete(asyncio.sleep(0))
    assert seen == [1]
    loop.close()
    results: list[bool] = []
    t = threading.Thread(target=lambda: results.append(post(loop, seen.append, 2)))
    t.start()
    t.join()
    assert results == [False] and seen == [1]
