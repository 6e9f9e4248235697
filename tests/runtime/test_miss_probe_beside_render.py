"""A plain miss asks the disk tier while its render runs, not before sending it (issue 8,
thirteenth session: the disk tier's SQLite probe cost 130-170 µs of a lone miss's way in on
a front idle for a few milliseconds). What a user sees is unchanged: a master the disk tier
holds is still answered as a disk hit — before the render ends (which is then stopped), after
it ends, or when the render fails — and a request that cannot start at once, or whose master
an engine worker stored (its metadata in memory), still asks the disk first.

A stub executor that holds every batch until the test answers it; a real disk tier."""

from __future__ import annotations

import asyncio
import threading

import pytest

from swiftshot import telemetry
from swiftshot.config import Settings
from swiftshot.engines.base import EngineError
from swiftshot.service import Service
from swiftshot.spec import RenderSpec
from swiftshot.store.tiers import DiskTier
from tests.runtime.test_miss_turns import HeldExecutor as _Held


def HeldExecutor(events: list[str]) -> _Held:  # noqa: N802 - reads as the class it makes
    """test_miss_turns' held executor: one slot, sends written to ``events``."""
    return _Held(events, slots=1, master=b"rendered" * 8)


def spec(prompt: str) -> RenderSpec:
    return RenderSpec(engine="fake", prompt=prompt, width=64, height=64, seed=1)


@pytest.fixture
async def svc(tmp_path, monkeypatch):
    s = Settings(data_dir=tmp_path / "var")
    s.scheduler.max_batch_size = 1
    s.scheduler.max_wait_ms = 0.0
    s.server.warmup_shapes = []
    s.prefetch.enabled = False
    events: list[str] = []
    ex = HeldExecutor(events)
    service = Service(s, executor=ex)
    disk = service.cache.tiers[1]
    assert isinstance(disk, DiskTier)
    probe = disk.probe

    def probed(key: str):
        events.append("probe")
        return probe(key)

    monkeypatch.setattr(disk, "probe", probed)
    await service.start()
    try:
        yield service, ex, events
    finally:
        await service.stop()


async def _until(cond, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.001)


def _on_disk(service: Service, s: RenderSpec, master: bytes) -> str:
    """Put ``s``'s master on the disk tier only (as a restart, or the memory tier's eviction,
    leaves it); its key."""
    _, key = service.normalise_and_key(s)
    service.cache.tiers[1].put(key, master)
    assert service.cache.tiers[0].get(key) is None
    return key


def _overtaken() -> float:
    return telemetry.RENDERS_OVERTAKEN._value.get()


async def test_a_plain_miss_is_sent_to_the_engine_before_the_disk_tier_is_asked(svc):
    service, ex, events = svc
    task = asyncio.ensure_future(service.render(spec("a plain miss")))
    await _until(lambda: len(ex.held) == 1 and "probe" in events)
    assert events == ["sent", "probe"]
    ex.answer()
    r = await task
    assert r.cache == "miss" and r.master == b"rendered" * 8
    assert (await service.render(spec("a plain miss"))).cache == "memory"


async def test_a_master_on_disk_is_answered_as_a_disk_hit_and_its_render_stopped(svc):
    service, ex, events = svc
    before = _overtaken()
    key = _on_disk(service, spec("kept on disk"), b"from disk" * 8)
    r = await asyncio.wait_for(service.render(spec("kept on disk")), 10)
    assert (r.cache, r.key, r.master) == ("disk", key, b"from disk" * 8)
    assert [b.items[0].id for b, _ in ex.held] == ex.aborted  # the render was told to stop
    assert _overtaken() == before + 1
    assert service.cache.tiers[0].get(key) == b"from disk" * 8  # promoted, as a disk hit is
    await _until(lambda: service.gate.in_use == 0)


async def test_a_render_that_ends_before_the_disk_read_still_answers_the_disk_hit(
        svc, monkeypatch):
    service, ex, events = svc
    _on_disk(service, spec("slow disk"), b"from disk" * 8)
    cache = service.cache
    read = cache._get_blocking
    gate = threading.Event()

    def slow_read(key: str):
        gate.wait(10)
        return read(key)

    monkeypatch.setattr(cache, "_get_blocking", slow_read)
    task = asyncio.ensure_future(service.render(spec("slow disk")))
    await _until(lambda: len(ex.held) == 1 and "probe" in events)
    ex.answer()  # the render is done first ...
    for _ in range(5):
        await asyncio.sleep(0)
    assert not task.done()  # ... and waits for the read under way
    gate.set()
    r = await asyncio.wait_for(task, 10)
    assert (r.cache, r.master) == ("disk", b"from disk" * 8)


async def test_a_failed_render_still_serves_the_master_on_disk(svc, monkeypatch):
    service, ex, events = svc
    _on_disk(service, spec("engine fails"), b"from disk" * 8)
    cache = service.cache
    read = cache._get_blocking
    gate = threading.Event()
    monkeypatch.setattr(cache, "_get_blocking", lambda key: (gate.wait(10), read(key))[1])
    task = asyncio.ensure_future(service.render(spec("engine fails")))
    await _until(lambda: len(ex.held) == 1 and "probe" in events)
    ex.answer(error=EngineError("the engine failed"))
    for _ in range(5):
        await asyncio.sleep(0)
    gate.set()
    r = await asyncio.wait_for(task, 10)
    assert (r.cache, r.master) == ("disk", b"from disk" * 8)


async def test_a_failed_render_of_a_true_miss_still_fails(svc):
    service, ex, events = svc
    task = asyncio.ensure_future(service.render(spec("nowhere")))
    await _until(lambda: len(ex.held) == 1)
    ex.answer(error=EngineError("the engine failed"))
    with pytest.raises(EngineError):
        await task


async def test_a_repeat_whose_metadata_is_in_memory_asks_the_disk_first(svc):
    """An engine worker stores a miss's master on disk and the front keeps its metadata in
    memory: the next request for it is a disk hit, asked before anything is sent."""
    service, ex, events = svc
    key = _on_disk(service, spec("stored by a worker"), b"from disk" * 8)
    service.cache.tiers[0].put(key + ":meta", b"{}")
    r = await service.render(spec("stored by a worker"))
    assert (r.cache, r.master) == ("disk", b"from disk" * 8)
    assert events == ["probe"] and ex.held == []


async def test_a_request_that_would_queue_asks_the_disk_first(svc):
    """With the only slot busy, a disk hit is answered without queueing behind it."""
    service, ex, events = svc
    busy = asyncio.ensure_future(service.render(spec("busy")))
    await _until(lambda: len(ex.held) == 1 and events == ["sent", "probe"])
    _on_disk(service, spec("on disk, slot busy"), b"from disk" * 8)
    r = await asyncio.wait_for(service.render(spec("on disk, slot busy")), 10)
    assert (r.cache, r.master) == ("disk", b"from disk" * 8)
    assert events == ["sent", "probe", "probe"] and len(ex.held) == 1
    ex.answer()
    assert (await busy).cache == "miss"


async def test_after_a_restart_a_master_on_disk_is_asked_first_and_no_render_is_sent(tmp_path):
    """The masters on disk when the server starts are disk hits: no render is sent for them
    (a render sent and stopped would cost the engine for nothing after every restart)."""
    s = Settings(data_dir=tmp_path / "var")
    s.server.warmup_shapes = []
    s.prefetch.enabled = False
    first = Service(s, executor=HeldExecutor([]))
    _, key = first.normalise_and_key(spec("before the restart"))
    first.cache.tiers[1].put(key, b"from disk" * 8)
    first.cache.tiers[1].put(key + ":meta", b"{}")
    first.cache.tiers[1].put(key + ".webp-q80", b"variant")
    first.cache.close()
    events: list[str] = []
    ex = HeldExecutor(events)
    service = Service(s, executor=ex)
    await service.start()
    try:
        assert service._on_disk_at_start == {key}
        r = await asyncio.wait_for(service.render(spec("before the restart")), 10)
        assert (r.cache, r.master) == ("disk", b"from disk" * 8) and ex.held == []
    finally:
        await service.stop()
