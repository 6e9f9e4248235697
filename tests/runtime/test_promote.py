"""Promotion: a more urgent caller joining a queued generation raises it (no priority inversion
through single-flight)."""

from __future__ import annotations

import asyncio

import pytest

from swiftshot.service import Service
from swiftshot.spec import RenderSpec
from tests.runtime.test_scheduler import Clock, make, sched, submit_all
from tests.runtime.test_worker import GatedEngine, started, wait_until


def spec(prompt: str, size: int = 64) -> RenderSpec:
    return RenderSpec(engine="fake", prompt=prompt, width=size, height=size).normalized()


# -- scheduler ------------------------------------------------------------------------------

def test_promoted_batch_item_goes_before_queued_standard_work():
    clock = Clock()
    s = sched(clock, max_wait_ms=0.0)
    slow = make(clock, "batch", key="A")
    others = [make(clock, "standard", key=k) for k in ("B", "C")]
    submit_all(s, [slow, *others])
    assert s.promote(slow.id, "realtime", clock() + 0.5)
    assert [it.id for it in s.next_batch()] == [slow.id]
    assert s.depth()["realtime"] == 0 and s.depth()["batch"] == 0 and s.depth()["standard"] == 2


def test_without_promotion_the_batch_item_waits_behind_standard_work():
    clock = Clock()
    s = sched(clock, max_wait_ms=0.0)
    slow = make(clock, "batch", key="A")
    submit_all(s, [slow, make(clock, "standard", key="B")])
    assert s.next_batch()[0].id != slow.id


def test_promotion_never_demotes_and_keeps_the_first_askers_expiry():
    clock = Clock()
    s = sched(clock, max_wait_ms=0.0)
    item = make(clock, "standard", key="A", deadline_in=10.0)
    submit_all(s, [item])
    assert not s.promote(item.id, "batch", clock() + 60.0)  # later and lower: nothing better
    assert not s.promote(12345, "realtime", clock() + 1.0)  # not queued
    assert s.promote(item.id, "realtime", clock() + 1.0)
    assert (item.priority, item.deadline) == ("realtime", clock() + 1.0)
    clock.advance(5.0)  # past the joiner's deadline, not the first asker's
    batch = s.next_batch()
    assert [it.id for it in batch] == [item.id] and not s.expired()


def test_promoted_item_still_expires_at_the_first_askers_deadline():
    clock = Clock()
    s = sched(clock, max_wait_ms=0.0)
    item = make(clock, "batch", key="A", deadline_in=2.0)
    submit_all(s, [item])
    s.promote(item.id, "realtime", clock() + 1.0)
    clock.advance(3.0)
    assert s.next_batch() == [] and [it.id for it in s.expired()] == [item.id]


def test_promote_names_a_bad_priority():
    clock = Clock()
    s = sched(clock)
    item = make(clock)
    submit_all(s, [item])
    with pytest.raises(ValueError, match="priority must be one of"):
        s.promote(item.id, "urgent", clock() + 1.0)


# -- worker and service ---------------------------------------------------------------------

async def test_worker_promote_by_tag(worker_settings):
    engine = GatedEngine()
    w = await started(engine, worker_settings)
    try:
        engine.calls.clear()
        engine.gate.clear()
        blocker = asyncio.ensure_future(w.submit(spec("blocker", 72)))
        await wait_until(lambda: w.depth()["running"] == 1)
        slow = asyncio.ensure_future(w.submit(spec("slow", 80), "batch", tag="k"))
        rest = [asyncio.ensure_future(w.submit(spec(f"std{i}", 88 + 8 * i), "standard"))
                for i in range(2)]
        await wait_until(lambda: len(w.scheduler) == 3)
        assert not w.promote("unknown", "realtime")
        assert w.promote("k", "realtime")
        engine.gate.set()
        await asyncio.gather(blocker, slow, *rest)
    finally:
        await w.stop()
    assert [c[0].prompt for c in engine.calls] == ["blocker", "slow", "std0", "std1"]


async def _served_order(settings, joiner_priority: str | None) -> list[str]:
    engine = GatedEngine()
    svc = Service(settings, engine=engine)
    await svc.start()
    try:
        engine.calls.clear()
        engine.gate.clear()
        first = asyncio.ensure_future(svc.render(spec("blocker", 72)))
        await wait_until(lambda: svc.worker.depth()["running"] == 1)
        wanted = RenderSpec(engine="fake", prompt="popular", width=80, height=80)
        tasks = [asyncio.ensure_future(svc.render(wanted, priority="batch"))]
        tasks += [asyncio.ensure_future(svc.render(spec(f"std{i}", 88 + 8 * i)))
                  for i in range(2)]
        await wait_until(lambda: len(svc.worker.scheduler) == 3)
        if joiner_priority is not None:
            tasks.append(asyncio.ensure_future(svc.render(wanted, priority=joiner_priority)))
            await asyncio.sleep(0.01)
        engine.gate.set()
        results = await asyncio.gather(first, *tasks)
        if joiner_priority is not None:
            assert results[-1].cache == "coalesced"
        return [c[0].prompt for c in engine.calls]
    finally:
        await svc.drain(1.0)
        await svc.stop()


# std0 and std1 share a class and reach the queue through the (thread-hopping) cache look-up
# in either order, so only their place relative to "popular" is asserted.
def _by_class(order: list[str]) -> list[str]:
    return ["std" if p.startswith("std") else p for p in order]


async def test_realtime_joiner_is_served_before_queued_standard_work(worker_settings):
    order = await _served_order(worker_settings, "realtime")
    assert _by_class(order) == ["blocker", "popular", "std", "std"]


async def test_without_a_realtime_joiner_the_batch_request_waits_its_turn(worker_settings):
    order = await _served_order(worker_settings, None)
    assert _by_class(order) == ["blocker", "std", "std", "popular"]


@pytest.fixture
def worker_settings(tmp_path):
    from swiftshot.config import Settings

    s = Settings(data_dir=tmp_path / "var")
    s.scheduler.max_batch_size = 4
    s.scheduler.max_wait_ms = 2.0
    s.server.warmup_shapes = [(64, 64)]
    return s
