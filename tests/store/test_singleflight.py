"""SingleFlight: one generation per key in flight, shared by every identical request."""

from __future__ import annotations

import asyncio

import pytest

from swiftshot import telemetry
from swiftshot.store.singleflight import SingleFlight


async def test_fifty_identical_calls_run_fn_once():
    sf = SingleFlight()
    runs = 0
    release = asyncio.Event()

    async def fn() -> str:
        nonlocal runs
        runs += 1
        await release.wait()
        return "image-bytes"

    before = telemetry.COALESCED._value.get()
    tasks = [asyncio.create_task(sf.do("key", fn)) for _ in range(50)]
    await asyncio.sleep(0)
    assert sf.inflight() == 1
    release.set()
    results = await asyncio.gather(*tasks)
    assert runs == 1
    assert all(value == "image-bytes" for value, _ in results)
    assert sum(shared for _, shared in results) == 49
    assert results[0] == ("image-bytes", False)  # the first caller did the work
    assert telemetry.COALESCED._value.get() - before == 49
    assert sf.inflight() == 0


async def test_different_keys_do_not_share():
    sf = SingleFlight()
    calls: list[str] = []

    def make(k: str):
        async def fn() -> str:
            calls.append(k)
            await asyncio.sleep(0.001)
            return k
        return fn

    out = await asyncio.gather(sf.do("a", make("a")), sf.do("b", make("b")))
    assert out == [("a", False), ("b", False)]
    assert sorted(calls) == ["a", "b"]


async def test_a_cancelled_waiter_does_not_cancel_the_others():
    sf = SingleFlight()
    release = asyncio.Event()
    started = asyncio.Event()

    async def fn() -> int:
        started.set()
        await release.wait()
        return 42

    first = asyncio.create_task(sf.do("k", fn))
    second = asyncio.create_task(sf.do("k", fn))
    await started.wait()
    first.cancel()  # the caller who started the work goes away
    with pytest.raises(asyncio.CancelledError):
        await first
    release.set()
    assert await second == (42, True)


async def test_all_waiters_cancelled_cancels_the_work():
    sf = SingleFlight()
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def fn() -> int:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return 1

    waiters = [asyncio.create_task(sf.do("k", fn)) for _ in range(3)]
    await started.wait()
    for w in waiters[:2]:
        w.cancel()
    await asyncio.sleep(0.01)
    assert not cancelled.is_set(), "one waiter is left: the work must go on"
    waiters[2].cancel()
    await asyncio.wait_for(cancelled.wait(), 5)
    assert sf.inflight() == 0
    # A newcomer after the abandonment starts fresh work rather than joining the dead task.
    started.clear()

    async def quick() -> int:
        return 7

    assert await sf.do("k", quick) == (7, False)


async def test_exception_reaches_every_waiter():
    sf = SingleFlight()
    release = asyncio.Event()
    runs = 0

    async def fn() -> int:
        nonlocal runs
        runs += 1
        await release.wait()
        raise RuntimeError("engine exploded")

    tasks = [asyncio.create_task(sf.do("k", fn)) for _ in range(5)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert runs == 1
    assert all(isinstance(r, RuntimeError) and str(r) == "engine exploded" for r in results)
    assert sf.inflight() == 0

    async def ok() -> int:
        return 1

    assert await sf.do("k", ok) == (1, False)  # a failure is not cached


async def test_a_caller_past_its_timeout_stops_waiting_but_the_work_goes_on():
    """The deadline ends one caller's wait with ``expired()``; the work is not cancelled, not
    even when the only other waiter then leaves (its result is wanted by the cache)."""
    sf = SingleFlight()
    release = asyncio.Event()
    finished = asyncio.Event()

    async def fn() -> int:
        await release.wait()
        finished.set()
        return 5

    with pytest.raises(LookupError, match="late"):
        await sf.do("k", fn, timeout_s=0.01, expired=lambda: LookupError("late"))
    other = asyncio.create_task(sf.do("k", fn))
    await asyncio.sleep(0.01)
    other.cancel()
    await asyncio.gather(other, return_exceptions=True)
    await asyncio.sleep(0.01)
    assert sf.inflight() == 1, "the work was dropped when its last waiter left"
    release.set()
    await asyncio.wait_for(finished.wait(), 5)
    await asyncio.sleep(0)
    assert sf.inflight() == 0
    with pytest.raises(TimeoutError):  # without expired(): TimeoutError
        await sf.do("k", lambda: asyncio.sleep(0.05), timeout_s=0.01)
    await asyncio.sleep(0.06)
    assert sf.inflight() == 0


async def test_no_key_runs_alone_and_a_hang_up_cancels_it():
    sf = SingleFlight()
    runs = 0
    cancelled = asyncio.Event()

    async def fn() -> int:
        nonlocal runs
        runs += 1
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return 1

    tasks = [asyncio.create_task(sf.do(None, fn)) for _ in range(2)]
    await asyncio.sleep(0.01)
    assert runs == 2 and sf.inflight() == 0  # not shared, not registered
    tasks[0].cancel()
    await asyncio.wait_for(cancelled.wait(), 5)
    assert not tasks[1].done()
    tasks[1].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
