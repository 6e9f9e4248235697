"""The worker with the fake engine: batching, failure isolation, cancellation, drain, deadlines."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest
from PIL import Image

from swiftshot import telemetry
from swiftshot.config import Settings
from swiftshot.engines.base import EngineError, FakeEngine, StepCallback, check_cancel
from swiftshot.runtime.worker import Rejected, Result, Worker
from swiftshot.spec import RenderSpec


def spec(prompt: str = "white marble", size: int = 64) -> RenderSpec:
    return RenderSpec(engine="fake", prompt=prompt, width=size, height=size).normalized()


class GatedEngine(FakeEngine):
    """FakeEngine whose batches wait for ``gate`` (the test decides when inference ends)."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.steps_done: list[int] = []

    def run(self, specs: Sequence[RenderSpec], on_step: StepCallback | None = None) -> list[Image.Image]:
        with self._lock:
            self.calls.append(list(specs))
        self.entered.set()
        done = 0
        try:
            for i in range(1, self.steps + 1):
                if not self.gate.wait(10):
                    raise EngineError("test gate never opened")
                check_cancel(on_step, i, self.steps)
                done = i
        finally:
            self.steps_done.append(done)
        if self.fail_when is not None and any(self.fail_when(s) for s in specs):
            raise EngineError("fake engine failure")
        return [self._image(s) for s in specs]


def prompts_seen(engine: FakeEngine) -> list[str]:
    return [s.prompt for call in engine.calls for s in call]


async def wait_until(cond, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.001)


@pytest.fixture
def worker_settings(tmp_path) -> Settings:
    s = Settings(data_dir=tmp_path / "var")
    s.scheduler.max_batch_size = 4
    s.scheduler.max_wait_ms = 2.0
    s.server.warmup_shapes = [(64, 64)]
    return s


async def started(engine, settings, **kw) -> Worker:
    w = Worker(engine, settings, capacity_hint_s=0.001, **kw)
    await w.start()
    return w


async def test_start_loads_and_warms_up_in_the_inference_thread(worker_settings):
    engine = FakeEngine()
    w = Worker(engine, worker_settings)
    assert not w.ready
    await w.start()
    try:
        assert w.ready and engine.loaded and engine.warmed == [(64, 64)]
    finally:
        await w.stop()


async def test_concurrent_same_size_requests_share_engine_calls(worker_settings):
    engine = FakeEngine(delay_s=0.002)
    w = await started(engine, worker_settings)
    batches_before = telemetry.BATCH_SIZE._sum.get()
    gens_before = telemetry.GENERATIONS.labels(engine="fake")._value.get()
    try:
        specs = [spec(f"prompt {i}") for i in range(20)]
        results = await asyncio.gather(*(w.submit(s) for s in specs))
    finally:
        await w.stop()
    assert len(engine.calls) < 20
    assert all(1 <= len(c) <= 4 for c in engine.calls)
    assert sorted(prompts_seen(engine)) == sorted(s.prompt for s in specs)
    for s, r in zip(specs, results, strict=True):
        assert isinstance(r, Result)
        # Each caller gets the image of its own spec, not a neighbour's from the batch.
        assert r.image.tobytes() == FakeEngine._image(s).tobytes()
        assert 1 <= r.batch_size <= 4 and r.queue_s >= 0 and r.infer_s >= 0
    assert telemetry.BATCH_SIZE._sum.get() - batches_before == 20
    assert telemetry.GENERATIONS.labels(engine="fake")._value.get() - gens_before == 20
    assert telemetry.QUEUE_DEPTH.labels(priority="standard")._value.get() == 0


async def test_different_batch_keys_never_share_a_call(worker_settings):
    engine = FakeEngine()
    w = await started(engine, worker_settings)
    try:
        await asyncio.gather(*(w.submit(spec(f"p{i}", size=64 if i % 2 else 128))
                               for i in range(8)))
    finally:
        await w.stop()
    for call in engine.calls:
        assert len({(s.width, s.height) for s in call}) == 1


async def test_engine_failure_fails_only_the_request_at_fault(worker_settings):
    engine = GatedEngine(fail_when=lambda s: s.prompt == "boom")
    w = await started(engine, worker_settings)
    try:
        engine.gate.clear()
        blocker = asyncio.create_task(w.submit(spec("first")))
        await wait_until(engine.entered.is_set)
        # These three queue behind the blocker and then run as one batch, which fails; each
        # is then rerun alone, so only the request at fault fails.
        doomed = [asyncio.create_task(w.submit(spec(p))) for p in ("boom", "ok-1", "ok-2")]
        other_size = asyncio.create_task(w.submit(spec("elsewhere", size=128)))
        await wait_until(lambda: w.depth()["standard"] == 4)
        engine.gate.set()
        assert isinstance(await blocker, Result)
        outcomes = await asyncio.gather(*doomed, return_exceptions=True)
        assert isinstance(outcomes[0], EngineError), outcomes
        assert all(isinstance(o, Result) for o in outcomes[1:]), outcomes
        assert isinstance(await other_size, Result)
        # The worker carries on: the next batch succeeds.
        r = await w.submit(spec("after the failure"))
        assert r.image.size == (64, 64)
    finally:
        await w.stop()
    calls = [[s.prompt for s in c] for c in engine.calls]
    assert ["boom", "ok-1", "ok-2"] in calls and ["ok-1"] in calls and ["boom"] in calls


async def test_cancelled_queued_request_never_reaches_the_engine(worker_settings):
    engine = GatedEngine()
    w = await started(engine, worker_settings)
    try:
        engine.gate.clear()
        running = asyncio.create_task(w.submit(spec("running")))
        await wait_until(engine.entered.is_set)
        queued = asyncio.create_task(w.submit(spec("abandoned")))
        await wait_until(lambda: w.depth()["standard"] == 1)
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        assert w.depth()["standard"] == 0  # out of the queue at once
        engine.gate.set()
        await running
        await w.submit(spec("next"))
    finally:
        await w.stop()
    assert "abandoned" not in prompts_seen(engine)
    assert prompts_seen(engine) == ["running", "next"]


async def test_two_hundred_abandoned_requests_free_capacity(worker_settings):
    worker_settings.scheduler.queue_limit = {"realtime": 8, "standard": 200, "batch": 8,
                                             "prefetch": 8}
    engine = GatedEngine()
    w = await started(engine, worker_settings)
    try:
        engine.gate.clear()
        first = asyncio.create_task(w.submit(spec("in the engine")))
        await wait_until(engine.entered.is_set)
        abandoned = [asyncio.create_task(w.submit(spec(f"gone {i}"))) for i in range(200)]
        await wait_until(lambda: w.depth()["standard"] == 200)
        with pytest.raises(Rejected) as full:
            await w.submit(spec("one too many"))
        assert full.value.status == 429 and full.value.reason == "queue_full"
        assert full.value.retry_after_s > 0
        for t in abandoned:
            t.cancel()
        await asyncio.gather(*abandoned, return_exceptions=True)
        assert w.depth()["standard"] == 0
        nxt = asyncio.create_task(w.submit(spec("the next request")))
        await wait_until(lambda: w.depth()["standard"] == 1)
        engine.gate.set()
        await first
        r = await nxt
    finally:
        await w.stop()
    assert r.batch_size == 1
    # The engine ran exactly the request it was running and the next one: none of the 200.
    assert [[s.prompt for s in c] for c in engine.calls] == [["in the engine"], ["the next request"]]


async def test_cancelling_every_request_of_a_running_batch_stops_the_engine(worker_settings):
    engine = GatedEngine(steps=1000)
    w = await started(engine, worker_settings)
    try:
        engine.gate.clear()
        tasks = [asyncio.create_task(w.submit(spec(f"doomed {i}"))) for i in range(2)]
        await wait_until(engine.entered.is_set)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        engine.gate.set()
        engine.steps = 1
        r = await w.submit(spec("after"))
        assert isinstance(r, Result)
    finally:
        await w.stop()
    assert engine.steps_done[0] < 1000  # stopped between steps, not run to the end


async def test_one_cancelled_request_does_not_stop_its_batch(worker_settings):
    engine = GatedEngine(steps=3)
    w = await started(engine, worker_settings)
    try:
        engine.gate.clear()
        leaving = asyncio.create_task(w.submit(spec("leaving")))
        staying = asyncio.create_task(w.submit(spec("staying")))
        await wait_until(engine.entered.is_set)
        assert [s.prompt for s in engine.calls[0]] == ["leaving", "staying"]
        leaving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leaving
        engine.gate.set()
        r = await staying
    finally:
        await w.stop()
    assert r.batch_size == 2
    assert engine.steps_done == [3]


async def test_deadline_passing_in_the_queue_is_a_503_not_a_silent_timeout(worker_settings):
    engine = GatedEngine()
    w = await started(engine, worker_settings)
    before = telemetry.REJECTED.labels(reason="deadline")._value.get()
    try:
        engine.gate.clear()
        running = asyncio.create_task(w.submit(spec("slow")))
        await wait_until(engine.entered.is_set)
        with pytest.raises(Rejected) as e:
            await w.submit(spec("impatient"), priority="realtime", deadline_s=0.05)
        assert e.value.status == 503 and e.value.reason == "deadline"
        assert e.value.retry_after_s > 0 and "deadline" in e.value.message
        engine.gate.set()
        await running
    finally:
        await w.stop()
    assert "impatient" not in prompts_seen(engine)
    assert telemetry.REJECTED.labels(reason="deadline")._value.get() - before == 1


async def test_admission_refusal_raises_rejected_with_retry_after(worker_settings):
    engine = GatedEngine()
    w = Worker(engine, worker_settings, capacity_hint_s=1.0)  # 1 s per item, measured
    await w.start()
    try:
        engine.gate.clear()
        running = asyncio.create_task(w.submit(spec("slow")))
        await wait_until(engine.entered.is_set)
        with pytest.raises(Rejected) as e:
            await w.submit(spec("hurried"), deadline_s=0.5)
        assert e.value.status == 429 and e.value.reason == "deadline"
        assert e.value.retry_after_s >= 1.0
        engine.gate.set()
        await running
    finally:
        await w.stop()


async def test_drain_waits_for_in_flight_work_then_refuses(worker_settings):
    engine = GatedEngine()
    w = await started(engine, worker_settings)
    try:
        engine.gate.clear()
        running = asyncio.create_task(w.submit(spec("running")))
        await wait_until(engine.entered.is_set)
        queued = asyncio.create_task(w.submit(spec("queued", size=128)))
        await wait_until(lambda: w.depth()["standard"] == 1)
        drain = asyncio.create_task(w.drain(timeout_s=10))
        await asyncio.sleep(0.02)
        assert not drain.done(), "drain returned while work was still in flight"
        with pytest.raises(Rejected) as e:
            await w.submit(spec("late"))
        assert e.value.status == 503 and e.value.reason == "draining"
        engine.gate.set()
        await drain
        assert running.done() and queued.done()
        assert isinstance(running.result(), Result) and isinstance(queued.result(), Result)
        with pytest.raises(Rejected) as e2:
            await w.submit(spec("after drain"))
        assert e2.value.status == 503
    finally:
        await w.stop()
    assert prompts_seen(engine) == ["running", "queued"]


async def test_drain_gives_up_after_its_timeout(worker_settings):
    engine = GatedEngine()
    w = await started(engine, worker_settings)
    engine.gate.clear()
    running = asyncio.create_task(w.submit(spec("stuck")))
    await wait_until(engine.entered.is_set)
    await asyncio.wait_for(w.drain(timeout_s=0.05), 5)
    assert not running.done()
    engine.gate.set()
    await running
    await w.stop()


async def test_stop_resolves_every_queued_future(worker_settings):
    engine = GatedEngine()
    w = await started(engine, worker_settings)
    engine.gate.clear()
    running = asyncio.create_task(w.submit(spec("running")))
    await wait_until(engine.entered.is_set)
    queued = [asyncio.create_task(w.submit(spec(f"q{i}"))) for i in range(5)]
    await wait_until(lambda: w.depth()["standard"] == 5)
    await w.stop()
    engine.gate.set()
    outcomes = await asyncio.wait_for(asyncio.gather(*queued, running, return_exceptions=True), 5)
    # Queued and running callers alike get an answer they can retry on, not a hang or a
    # cancellation they did not ask for.
    assert all(isinstance(o, Rejected) and o.status == 503 for o in outcomes), outcomes
    assert "q0" not in prompts_seen(engine)
    await wait_until(lambda: engine.steps_done)
    assert engine.steps_done == [0]  # the running batch stopped at its next step


async def test_products_are_handed_to_run_batch(worker_settings):
    seen: list[dict] = []

    def run_batch(engine, specs, on_step=None, *, products=None):
        seen.append(dict(products or {}))
        return list(engine.run(specs, on_step))

    product = Image.new("RGBA", (8, 8), (255, 0, 0, 255))
    w = await started(FakeEngine(), worker_settings, run_batch=run_batch)
    try:
        await w.submit(spec("with product"), products={"a" * 64: product})
    finally:
        await w.stop()
    assert seen == [{"a" * 64: product}]


async def test_a_run_batch_without_products_still_works(worker_settings):
    calls = 0

    def run_batch(engine, specs, on_step=None):
        nonlocal calls
        calls += 1
        return list(engine.run(specs, on_step))

    w = await started(FakeEngine(), worker_settings, run_batch=run_batch)
    try:
        r = await w.submit(spec("plain"))
    finally:
        await w.stop()
    assert calls == 1 and r.image.size == (64, 64)


async def test_wrong_image_count_fails_the_batch_with_a_clear_error(worker_settings):
    def run_batch(engine, specs, on_step=None):
        return list(engine.run(specs, on_step))[:-1]

    w = await started(FakeEngine(), worker_settings, run_batch=run_batch)
    try:
        with pytest.raises(EngineError, match="returned 0 images for 1 specs"):
            await w.submit(spec("x"))
    finally:
        await w.stop()


async def test_bad_arguments_are_named(worker_settings):
    w = Worker(FakeEngine(), worker_settings)
    with pytest.raises(ValueError, match="priority must be one of"):
        await w.submit(spec(), priority="urgent")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="deadline_s must be > 0"):
        await w.submit(spec(), deadline_s=0)
    await w.stop()


def _fail_next_batch_once(w) -> list[int]:
    """Make the worker's scheduler raise once from ``next_batch``; the list records it."""
    real = w.scheduler.next_batch
    failures: list[int] = []

    def flaky():
        if not failures:
            failures.append(1)
            raise RuntimeError("scheduler bug")
        return real()

    w.scheduler.next_batch = flaky  # type: ignore[method-assign]
    return failures


async def test_an_error_in_the_immediate_start_does_not_fail_the_request(worker_settings, caplog):
    # no batching window: submit itself starts the batch (Worker._start_due), so the
    # scheduler's error is raised there first; it must not reach the caller (seen flaky in a
    # full run before _start_due caught it)
    worker_settings.scheduler.max_wait_ms = 0.0
    w = await started(FakeEngine(), worker_settings)
    failures = _fail_next_batch_once(w)
    try:
        r = await asyncio.wait_for(w.submit(spec("still served")), 30)
    finally:
        await w.stop()
    assert failures == [1] and r.image.size == (64, 64)
    assert any("immediate start" in rec.getMessage() for rec in caplog.records)


async def test_dispatch_loop_survives_an_unexpected_error(worker_settings, caplog):
    engine = FakeEngine()
    w = await started(engine, worker_settings)
    failures = _fail_next_batch_once(w)
    try:
        r = await asyncio.wait_for(w.submit(spec("still served")), 5)
    finally:
        await w.stop()
    assert failures == [1] and r.image.size == (64, 64)
    assert any("dispatch loop failed" in rec.getMessage() for rec in caplog.records)
