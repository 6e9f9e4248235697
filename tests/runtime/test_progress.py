"""Progress events through the inline worker: queued, started, partial previews, in order."""

from __future__ import annotations

import asyncio

import pytest

from swiftshot.config import Settings
from swiftshot.engines.base import FakeEngine, preview_steps, wanted_previews
from swiftshot.engines.studio import StudioEngine
from swiftshot.runtime.progress import Fanout, Listener, Partial, Queued, Started
from swiftshot.runtime.worker import Worker
from swiftshot.spec import RenderSpec


@pytest.mark.parametrize(("n", "k", "want"), [
    (1, 3, set()), (4, 0, set()), (4, 1, {2}), (4, 2, {1, 3}), (4, 3, {1, 2, 3}),
    (4, 9, {1, 2, 3}), (2, 2, {1}), (10, 3, {2, 5, 8}),
])
def test_preview_steps_spread_and_never_the_last(n, k, want):
    assert preview_steps(n, k) == want


def test_wanted_previews_reads_the_callback():
    def cb(i, n, p):
        return None

    assert wanted_previews(None) == 0
    assert wanted_previews(cb) == 0
    cb.previews = 2  # type: ignore[attr-defined]
    assert wanted_previews(cb) == 2
    cb.previews = 7  # type: ignore[attr-defined]
    assert wanted_previews(cb) == 3


def test_listener_caps_and_numbers_partials():
    seen = []
    lst = Listener(seen.append, partials=2)
    img = FakeEngine._preview(RenderSpec(prompt="x", width=64, height=64), 1)
    for _ in range(4):
        lst.emit(Partial(9, img))
    assert [e.index for e in seen] == [0, 1]
    with pytest.raises(ValueError, match="between 0 and 3"):
        Listener(seen.append, partials=4)


def test_fanout_gives_each_member_its_own_numbering():
    a, b = [], []
    fan = Fanout([Listener(a.append, 1)])
    img = FakeEngine._preview(RenderSpec(prompt="x", width=64, height=64), 1)
    fan.emit(Partial(0, img))
    fan.add(Listener(b.append, 2))
    assert fan.partials == 2
    fan.emit(Started())
    fan.emit(Partial(0, img))
    assert [type(e).__name__ for e in a] == ["Partial", "Started"]
    assert [(type(e).__name__, getattr(e, "index", None)) for e in b] == [
        ("Started", None), ("Partial", 0)]


async def _events_of(engine, partials, spec, **kw):
    worker = Worker(engine, Settings())
    await worker.start()
    events = []
    try:
        result = await worker.submit(spec, listener=Listener(events.append, partials), **kw)
    finally:
        await worker.stop()
    return result, events


async def test_worker_emits_queued_started_then_the_previews_asked_for():
    engine = FakeEngine(steps=4)
    spec = RenderSpec(prompt="a", width=64, height=64, seed=1)
    result, events = await _events_of(engine, 2, spec)
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["Queued", "Started", "Partial", "Partial"]
    assert isinstance(events[0], Queued) and events[0].position == 0
    # the previews were made after steps 1 and 3 (the fake's grey level is the step)
    assert [e.image.getpixel((0, 0))[0] for e in events[2:]] == [16, 48]
    assert [e.index for e in events[2:]] == [0, 1]
    assert result.image.size == (64, 64)


async def test_no_preview_is_made_when_nobody_asks():
    calls = []

    class Counting(FakeEngine):
        @staticmethod
        def _preview(spec, step):
            calls.append(step)
            return FakeEngine._preview(spec, step)

    _, events = await _events_of(Counting(steps=4), 0, RenderSpec(prompt="a", width=64,
                                                                  height=64, seed=1))
    assert [type(e) for e in events] == [Queued, Started]
    assert calls == []


async def test_queued_position_counts_the_work_ahead():
    engine = FakeEngine(delay_s=0.2)
    worker = Worker(engine, Settings())
    await worker.start()
    seen: list = []
    try:
        specs = [RenderSpec(prompt=f"p{i}", width=64, height=64, seed=i) for i in range(3)]
        tasks = []
        for s in specs:
            tasks.append(asyncio.create_task(worker.submit(s, listener=Listener(seen.append))))
            await asyncio.sleep(0.02)
        await asyncio.gather(*tasks)
    finally:
        await worker.stop()
    positions = [e.position for e in seen if isinstance(e, Queued)]
    assert positions[0] == 0 and positions[-1] >= 1
    assert positions == sorted(positions)


def test_studio_coarse_preview_first_and_same_final():
    eng = StudioEngine()
    spec = RenderSpec(prompt="oak table, golden hour", width=512, height=384, seed=3)
    seen = []

    def cb(i, n, p):
        seen.append((i, n, p))

    cb.previews = 1  # type: ignore[attr-defined]
    (with_preview,) = eng.run([spec], cb)
    (plain,) = eng.run([spec])
    assert [(i, n) for i, n, _ in seen] == [(1, 2), (2, 2)]
    assert seen[0][2][0].size == (128, 96) and seen[1][2] is None
    assert with_preview.tobytes() == plain.tobytes()
