"""A miss's master encode never waits behind slow variant encodes (they have separate threads),
and the prefetcher's encodes run at idle CPU priority without holding up a request."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from swiftshot.delivery import codecs
from swiftshot.engines import FakeEngine
from swiftshot.service import Service
from swiftshot.spec import RenderSpec


async def test_master_encode_is_not_queued_behind_variant_encodes(settings, monkeypatch):
    release = threading.Event()
    entered = threading.Semaphore(0)
    real_encode = codecs.encode

    def slow_encode(*args, **kwargs):
        entered.release()
        release.wait(10)
        return real_encode(*args, **kwargs)

    svc = Service(settings, engine=FakeEngine())
    await svc.start()
    try:
        first = await svc.render(RenderSpec(engine="fake", prompt="a", width=64, height=64))
        monkeypatch.setattr(codecs, "encode", slow_encode)
        variants = [asyncio.ensure_future(svc.variant(first.key, fmt, None))
                    for fmt in ("webp", "jpeg")]
        loop = asyncio.get_running_loop()
        for _ in variants:  # both encode threads are now busy
            assert await loop.run_in_executor(None, entered.acquire, True, 5)
        second = await asyncio.wait_for(
            svc.render(RenderSpec(engine="fake", prompt="b", width=64, height=64)), 5)
        assert second.cache == "miss" and second.master
        assert not any(v.done() for v in variants)
        release.set()
        assert all(await asyncio.gather(*variants))
    finally:
        release.set()
        await svc.stop()


def _policy() -> int:
    return os.sched_getscheduler(0)


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
async def test_prefetch_encodes_run_at_idle_cpu_priority(settings, monkeypatch):
    """The prefetcher's encodes run on a SCHED_IDLE thread, a request's at normal priority."""
    seen: dict[str, int] = {}
    real_encode = codecs.encode

    def encode(image, fmt, *args, **kwargs):
        seen[fmt] = _policy()
        return real_encode(image, fmt, *args, **kwargs)

    svc = Service(settings, engine=FakeEngine())
    await svc.start()
    try:
        first = await svc.render(RenderSpec(engine="fake", prompt="a", width=64, height=64))
        monkeypatch.setattr(codecs, "encode", encode)
        assert await svc.variant(first.key, "webp", None, priority="prefetch")
        assert await svc.variant(first.key, "jpeg", None)
    finally:
        await svc.stop()
    assert seen == {"webp": os.SCHED_IDLE, "jpeg": os.SCHED_OTHER}


async def test_a_request_does_not_wait_on_a_prefetch_encode(settings, monkeypatch):
    """A request for a variant the prefetcher is encoding (on its idle-priority thread, which
    may wait for a core as long as the server is busy) encodes it itself instead of joining."""
    release = threading.Event()
    calls: list[str] = []
    real_encode = codecs.encode

    def encode(*args, **kwargs):
        calls.append(threading.current_thread().name)
        if len(calls) == 1:  # the prefetch's: held until the request has its answer
            release.wait(10)
        return real_encode(*args, **kwargs)

    svc = Service(settings, engine=FakeEngine())
    await svc.start()
    try:
        first = await svc.render(RenderSpec(engine="fake", prompt="a", width=64, height=64))
        monkeypatch.setattr(codecs, "encode", encode)
        prefetch = asyncio.ensure_future(svc.variant(first.key, "webp", None, priority="prefetch"))
        while not calls:
            await asyncio.sleep(0.01)
        outcome: list[str] = []
        data = await asyncio.wait_for(svc.variant(first.key, "webp", None, outcome=outcome), 5)
        assert data and outcome == ["miss"]
        assert not prefetch.done()
        release.set()
        assert await prefetch == data
        # the request's encode is the one kept in flight and cached: a later ask hits
        assert await svc.variant(first.key, "webp", None, outcome=(later := [])) == data
        assert later == ["memory"]
        assert not svc._encoding  # noqa: SLF001 - both encodes' bookkeeping is gone
    finally:
        release.set()
        await svc.stop()
    assert calls[0].startswith("swiftshot-prefetch") and calls[1].startswith("swiftshot-encode")
