"""Engines that gain nothing from batching (they render a batch's items in turn) are not held
in the batching window, and get one item per call; engines that gain keep the window."""

from __future__ import annotations

import asyncio

import pytest

from swiftshot.config import SchedulerSettings
from swiftshot.engines.base import FakeEngine
from swiftshot.engines.studio import StudioEngine
from swiftshot.runtime.scheduler import Scheduler
from swiftshot.spec import RenderSpec
from tests.runtime.test_scheduler import Clock, make, submit_all
from tests.runtime.test_worker import started


def spec(prompt: str, size: int = 64) -> RenderSpec:
    return RenderSpec(engine="fake", prompt=prompt, width=size, height=size).normalized()


def test_engine_without_batch_gain_is_dispatched_at_once_one_item_at_a_time():
    clock = Clock()
    s = Scheduler(SchedulerSettings(max_batch_size=8, max_wait_ms=50.0), clock=clock,
                  capacity_hint_s=0.001, batch_gain=False)
    items = [make(clock, key="A") for _ in range(3)]
    submit_all(s, items)
    assert s.dispatch_delay() == 0.0
    assert [len(s.next_batch()) for _ in range(3)] == [1, 1, 1]


def test_engine_with_batch_gain_still_waits_for_company():
    clock = Clock()
    s = Scheduler(SchedulerSettings(max_batch_size=8, max_wait_ms=50.0), clock=clock,
                  capacity_hint_s=0.001, max_batch_size=2)
    submit_all(s, [make(clock, key="A")])
    assert s.dispatch_delay() == pytest.approx(0.050)
    submit_all(s, [make(clock, key="A"), make(clock, key="A")])
    assert s.dispatch_delay() == 0.0  # the engine's own cap (2) is reached
    assert len(s.next_batch()) == 2


class NoGainEngine(FakeEngine):
    batch_gain = False


async def test_worker_sends_a_no_gain_engine_one_item_per_call(worker_settings):
    worker_settings.scheduler.max_wait_ms = 10_000.0  # would hold a lone request for 10 s
    engine = NoGainEngine()
    w = await started(engine, worker_settings)
    try:
        await asyncio.wait_for(w.submit(spec("alone")), 5.0)  # no 10 s batching window
        await asyncio.gather(*(w.submit(spec(f"p{i}")) for i in range(4)))
    finally:
        await w.stop()
    assert [len(c) for c in engine.calls] == [1] * 5


def test_studio_declares_no_batch_gain():
    assert StudioEngine.batch_gain is False


@pytest.fixture
def worker_settings(tmp_path):
    from swiftshot.config import Settings

    s = Settings(data_dir=tmp_path / "var")
    s.scheduler.max_batch_size = 4
    s.scheduler.max_wait_ms = 2.0
    s.server.warmup_shapes = [(64, 64)]
    return s
