"""The work gate: bounded work past a cache hit, a realtime reserve, deadlines for every wait."""

from __future__ import annotations

import asyncio

import pytest

from swiftshot.runtime.gate import WorkGate, default_capacity
from swiftshot.runtime.worker import Rejected
from swiftshot.service import Service
from swiftshot.spec import RenderSpec
from tests.runtime.test_worker import GatedEngine, wait_until


def spec(prompt: str, size: int = 64) -> RenderSpec:
    return RenderSpec(engine="fake", prompt=prompt, width=size, height=size, seed=1)


# -- the gate alone ---------------------------------------------------------------------------

def test_refuses_past_capacity_and_frees_on_leave():
    g = WorkGate(4, realtime_reserve=0.25, retry_after_s=2.0)
    for _ in range(3):
        g.enter("standard")
    with pytest.raises(Rejected) as e:
        g.enter("batch")
    assert (e.value.status, e.value.reason, e.value.retry_after_s) == (503, "overloaded", 2.0)
    assert "capacity" in e.value.message
    g.enter("realtime")  # the reserved place
    with pytest.raises(Rejected):
        g.enter("realtime")
    g.leave()
    g.leave()
    g.enter("standard")
    assert g.in_use == 3


def test_hold_frees_its_place_when_the_work_fails_and_nests_without_a_second():
    g = WorkGate(2, realtime_reserve=0.5)
    with pytest.raises(ValueError), g.hold("standard"):
        with g.hold("standard"):  # same request: no second place
            assert g.in_use == 1
        raise ValueError("boom")
    assert g.in_use == 0


def test_a_reserve_keeps_at_least_one_place_and_capacity_scales_with_cores():
    assert WorkGate(3, realtime_reserve=0.01).shared_limit == 2
    assert WorkGate(3, realtime_reserve=0.0).shared_limit == 3
    assert default_capacity(2) == 2 * default_capacity(1)
    with pytest.raises(ValueError):
        WorkGate(0)


# -- in the service ---------------------------------------------------------------------------

@pytest.fixture
def gated_settings(tmp_path):
    from swiftshot.config import Settings

    s = Settings(data_dir=tmp_path / "var")
    s.scheduler.max_batch_size = 1
    s.scheduler.max_wait_ms = 0.0
    s.server.warmup_shapes = [(64, 64)]
    s.server.max_work = 2
    s.server.realtime_reserve = 0.5
    return s


@pytest.fixture
async def svc(gated_settings):
    engine = GatedEngine()
    service = Service(gated_settings, engine=engine)
    await service.start()
    try:
        yield service
    finally:
        engine.gate.set()
        await service.drain(1.0)
        await service.stop()


async def test_standard_misses_are_refused_past_capacity_while_realtime_gets_the_reserve(svc):
    engine: GatedEngine = svc.engine
    await svc.render(spec("warm"))  # cached: a hit later
    engine.gate.clear()
    first = asyncio.ensure_future(svc.render(spec("first")))
    await wait_until(lambda: svc.gate.in_use == 1)
    with pytest.raises(Rejected) as e:
        await svc.render(spec("second"))
    assert e.value.reason == "overloaded" and e.value.status == 503
    urgent = asyncio.ensure_future(svc.render(spec("urgent"), priority="realtime"))
    await wait_until(lambda: svc.gate.in_use == 2)
    with pytest.raises(Rejected):
        await svc.render(spec("too many"), priority="realtime")
    # a cache hit is never gated
    hit = await svc.render(spec("warm"), priority="batch")
    assert hit.cache == "memory"
    engine.gate.set()
    done = await asyncio.gather(first, urgent)
    assert [r.cache for r in done] == ["miss", "miss"]
    assert svc.gate.in_use == 0


async def test_a_failed_render_frees_its_place(gated_settings):
    from swiftshot.engines import FakeEngine
    from swiftshot.engines.base import EngineError

    service = Service(gated_settings, engine=FakeEngine(fail_when=lambda s: "bad" in s.prompt))
    await service.start()
    try:
        for _ in range(3):  # more than capacity: each failure must give its place back
            with pytest.raises(EngineError):
                await service.render(spec("bad"))
        assert service.gate.in_use == 0
        assert (await service.render(spec("good"))).cache == "miss"
    finally:
        await service.drain(1.0)
        await service.stop()


async def test_a_coalesced_waiter_past_its_deadline_gets_503_while_the_leader_completes(svc):
    engine: GatedEngine = svc.engine
    engine.gate.clear()
    leader = asyncio.ensure_future(svc.render(spec("popular")))
    await wait_until(lambda: engine.entered.is_set())
    with pytest.raises(Rejected) as e:
        await svc.render(spec("popular"), priority="realtime", deadline_s=0.05)
    assert (e.value.status, e.value.reason) == (503, "deadline")
    assert e.value.retry_after_s > 0
    engine.gate.set()
    r = await leader
    assert r.cache == "miss"
    assert (await svc.render(spec("popular"))).cache == "memory"
    assert svc.gate.in_use == 0


async def test_a_leader_past_its_deadline_gets_503_and_its_render_is_still_cached(svc):
    engine: GatedEngine = svc.engine
    engine.gate.clear()
    late = asyncio.ensure_future(svc.render(spec("late"), deadline_s=0.5))
    await wait_until(lambda: engine.entered.is_set())  # running, not refused in the queue
    with pytest.raises(Rejected) as e:
        await late
    assert e.value.reason == "deadline"
    engine.gate.set()
    await wait_until(lambda: svc.gate.in_use == 0)
    assert (await svc.render(spec("late"))).cache in ("memory", "coalesced")


async def test_a_variant_encode_of_a_cached_master_is_gated_but_a_cached_variant_is_not(svc):
    r = await svc.render(spec("shoe"))
    await svc.variant(r.key, "webp", 80)  # cached now
    svc.gate.enter("standard")
    try:
        assert svc.gate.in_use == svc.gate.shared_limit
        with pytest.raises(Rejected):
            await svc.variant(r.key, "avif", 60)
        assert await svc.variant(r.key, "webp", 80)  # a hit needs no place
        assert await svc.variant(r.key, "avif", 60, priority="realtime")
    finally:
        svc.gate.leave()
    assert svc.gate.in_use == 0
