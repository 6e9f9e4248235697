"""A miss's master encode never waits behind slow variant encodes (they have separate threads)."""

from __future__ import annotations

import asyncio
import threading

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
