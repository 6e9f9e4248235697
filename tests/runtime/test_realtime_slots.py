"""Realtime isolation across executor slots: the reserved slot (``scheduler.realtime_slots``),
its loan to the other classes (``scheduler.lend_reserved_after_s``), and the dispatcher that
obeys them. The pure scheduler runs on a fake clock; the dispatcher runs against a fake
executor whose batches end when the test says so. Assertions are on order, slots and
counters, never on time."""

from __future__ import annotations

import asyncio
import dataclasses
import functools

import pytest

from swiftshot.config import SchedulerSettings, Settings
from swiftshot.engines.base import FakeEngine
from swiftshot.runtime.executor import (
    Batch,
    BatchResult,
    EngineInfo,
    Health,
    ItemResult,
    describe_engine,
)
from swiftshot.runtime.scheduler import Scheduler, WorkItem
from swiftshot.runtime.worker import Worker
from swiftshot.spec import RenderSpec
from tests.runtime.test_scheduler import Clock
from tests.runtime.test_scheduler import make as make_item
from tests.runtime.test_worker import wait_until


def make(clock: Clock, priority: str = "batch", key: str = "A") -> WorkItem:
    return make_item(clock, priority=priority, key=key)


# the dispatcher's batches run on real event loops: a generous wait for a loaded box
until = functools.partial(wait_until, timeout=30.0)


def sched(clock: Clock, slots: int = 2, **kw) -> Scheduler:
    # one item per batch and no batching window: the studio engine's shape
    base = {"max_batch_size": 1, "max_wait_ms": 0.0, "aging_ms": 60_000.0,
            "realtime_slots": 1, "lend_reserved_after_s": None}
    s = Scheduler(SchedulerSettings(**{**base, **kw}), clock=clock, capacity_hint_s=0.001)
    s.slots = slots
    return s


def submit(s: Scheduler, *items: WorkItem) -> None:
    for it in items:
        assert s.submit(it).accepted


def test_batch_work_never_takes_the_reserved_slot():
    clock = Clock()
    s = sched(clock)
    queued = [make(clock) for _ in range(5)]
    submit(s, *queued)
    first = s.next_batch()
    assert [it.id for it in first] == [queued[0].id]
    assert s.running_shared == 1 and s.shared_limit() == 1
    # a slot is free, but it is the reserved one: nothing else starts, and the dispatcher is
    # told to wait (None), not to poll
    assert s.next_batch() == []
    assert s.dispatch_delay() is None
    assert s.held_back == 2 and s.lent == 0  # next_batch and dispatch_delay each held it
    # a realtime arrival takes the reserved slot at once, ahead of four older batch items
    rt = make(clock, "realtime", key="B")
    submit(s, rt)
    assert s.dispatch_delay() == 0.0
    assert [it.id for it in s.next_batch()] == [rt.id]
    assert s.running == 2
    # the batch item ending frees the shared slot for the next batch item, in order
    s.record(1, 0.01, batch=first)
    assert [it.id for it in s.next_batch()] == [queued[1].id]


def test_realtime_does_not_wait_for_any_running_item_while_the_reserve_is_idle():
    clock = Clock()
    s = sched(clock, slots=4, realtime_slots=1)
    submit(s, *(make(clock, "standard") for _ in range(10)))
    running = [s.next_batch() for _ in range(3)]
    assert all(len(b) == 1 for b in running) and s.running_shared == 3
    assert s.next_batch() == []  # the fourth slot is kept
    rt = make(clock, "realtime")
    submit(s, rt)
    assert [it.id for it in s.next_batch()] == [rt.id]  # no record() needed first


def test_without_a_reserve_realtime_waits_for_one_running_item_and_jumps_the_queue():
    clock = Clock()
    s = sched(clock, realtime_slots=0)
    lower = [make(clock, p) for p in ("batch", "standard", "batch", "prefetch", "standard")]
    submit(s, *lower)
    a, b = s.next_batch(), s.next_batch()
    assert len(a) == len(b) == 1 and s.running_shared == 2  # every slot shared
    rt = make(clock, "realtime")
    submit(s, rt)
    # the dispatcher only asks when a slot is free: after exactly one running item ends
    s.record(1, 0.01, batch=a)
    assert [it.id for it in s.next_batch()] == [rt.id]
    assert s.held_back == 0


def test_a_batch_with_a_realtime_item_runs_in_the_reserved_slot():
    clock = Clock()
    s = sched(clock, max_batch_size=4, realtime_slots=1)
    rt = make(clock, "realtime", key="K")
    mates = [make(clock, "standard", key="K") for _ in range(2)]
    other = make(clock, "standard", key="L")
    submit(s, rt, *mates, other)
    first = s.next_batch()
    assert {it.id for it in first} == {rt.id, *(m.id for m in mates)}
    assert s.running_shared == 0  # realtime work: the shared slot is still free
    assert [it.id for it in s.next_batch()] == [other.id]
    assert s.running_shared == 1


def test_one_slot_keeps_no_reserve():
    clock = Clock()
    s = sched(clock, slots=1, realtime_slots=1)
    item = make(clock)
    submit(s, item)
    assert s.reserve() == 0
    assert [it.id for it in s.next_batch()] == [item.id]


def test_the_reserve_is_lent_when_configured_and_no_realtime_came():
    clock = Clock()
    s = sched(clock, lend_reserved_after_s=5.0)
    queued = [make(clock) for _ in range(6)]
    submit(s, *queued)
    # no realtime request yet: the reserve is lent, batch work takes both slots
    assert s.lending()
    first, second = s.next_batch(), s.next_batch()
    assert [first[0].id, second[0].id] == [queued[0].id, queued[1].id]
    assert s.lent == 1 and s.running_shared == 2
    # a realtime request ends the loan: the next free slot is its, ahead of the batch items
    rt = make(clock, "realtime")
    submit(s, rt)
    assert not s.lending()
    s.record(1, 0.01, batch=first)
    assert [it.id for it in s.next_batch()] == [rt.id]
    s.record(1, 0.01, batch=second)
    # the batch items are back on the shared slot only
    third = s.next_batch()
    assert [it.id for it in third] == [queued[2].id]
    assert s.running_shared == 1 and s.next_batch() == []
    delay = s.dispatch_delay()
    assert delay is not None and 4.9 < delay <= 5.0  # the dispatcher wakes when the loan begins
    # the loan comes back lend_reserved_after_s after that realtime arrival
    clock.advance(5.0)
    assert s.lending()
    assert [it.id for it in s.next_batch()] == [queued[3].id]
    assert s.lent == 2 and s.running_shared == 2


def test_never_lent_without_the_setting():
    clock = Clock()
    s = sched(clock, lend_reserved_after_s=None)
    submit(s, make(clock), make(clock))
    s.next_batch()
    clock.advance(10_000.0)
    assert not s.lending() and s.next_batch() == [] and s.dispatch_delay() is None


def test_admission_counts_lower_classes_on_the_shared_slots_only():
    clock = Clock()
    s = sched(clock, slots=2, realtime_slots=1)
    submit(s, *(make(clock, "standard") for _ in range(4)))
    # 4 standard items of 1 ms each: 4 ms on the one shared slot, 2 ms for realtime on both
    assert s.estimated_wait("standard") == pytest.approx(0.004)
    assert s.estimated_wait("realtime") == pytest.approx(0.0)
    s0 = sched(clock, slots=2, realtime_slots=0)
    submit(s0, *(make(clock, "standard") for _ in range(4)))
    assert s0.estimated_wait("standard") == pytest.approx(0.002)


def test_settings_validate():
    with pytest.raises(ValueError):
        SchedulerSettings(realtime_slots=-1)
    with pytest.raises(ValueError):
        SchedulerSettings(lend_reserved_after_s=-1)
    assert SchedulerSettings().realtime_slots == 1


# -- the dispatcher (runtime.Worker) against a fake two-slot executor ----------------------------


class HeldExecutor:
    """An executor with ``n`` slots whose batches end when the test releases them."""

    kind = "fake-held"

    def __init__(self, n: int = 2) -> None:
        info = describe_engine(FakeEngine())
        self.info: EngineInfo = dataclasses.replace(info, batch_gain=False)
        self.n = n
        self.started: list[tuple[int, str]] = []
        """(item id, prompt) in the order batches reached the executor."""
        self.running: dict[int, asyncio.Future[None]] = {}
        self.peak = 0

    def describe(self) -> EngineInfo:
        return self.info

    @property
    def slots(self) -> int:
        return self.n

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        for f in self.running.values():
            if not f.done():
                f.cancel()

    def health(self) -> Health:
        return Health(self.kind, [], None)

    def abort(self, ids) -> None:
        pass

    async def submit(self, batch: Batch, on_event=None) -> BatchResult:
        assert len(self.running) < self.n, "the dispatcher overfilled the executor"
        (item,) = batch.items
        self.started.append((item.id, item.spec.prompt))
        fut = asyncio.get_running_loop().create_future()
        self.running[item.id] = fut
        self.peak = max(self.peak, len(self.running))
        try:
            await fut
        finally:
            del self.running[item.id]
        return BatchResult([ItemResult(item.id, master=b"m", width=8, height=8)], 0.0)

    def release(self, prompt: str) -> None:
        for item_id, p in self.started:
            if p == prompt and item_id in self.running:
                self.running[item_id].set_result(None)
                return
        raise AssertionError(f"{prompt} is not running")

    def running_prompts(self) -> set[str]:
        return {p for i, p in self.started if i in self.running}


def fspec(prompt: str) -> RenderSpec:
    return RenderSpec(engine="fake", prompt=prompt, width=64, height=64).normalized()


def settings_for(tmp_path, **sched_kw) -> Settings:
    s = Settings(data_dir=tmp_path / "var")
    for k, v in {"realtime_slots": 1, "lend_reserved_after_s": None, **sched_kw}.items():
        setattr(s.scheduler, k, v)
    return s


def scraped(name: str, **labels: str) -> float:
    """The value the front's /metrics (its registry) shows for ``name``."""
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from swiftshot import telemetry

    text = generate_latest(telemetry.REGISTRY).decode()
    return sum(s.value for fam in text_string_to_metric_families(text) for s in fam.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


async def test_dispatcher_keeps_the_reserved_slot_for_realtime(tmp_path):
    ex = HeldExecutor(2)
    w = Worker(ex, settings_for(tmp_path), capacity_hint_s=0.001)
    held0 = scraped("swiftshot_scheduler_held_back_total", engine=w.info.name)
    lent0 = scraped("swiftshot_scheduler_lent_total", engine=w.info.name)
    await w.start()
    tasks = []
    try:
        tasks = [asyncio.ensure_future(w.submit(fspec(f"batch {i}"), priority="batch"))
                 for i in range(4)]
        await until(lambda: len(ex.started) == 1)
        for _ in range(20):  # give the dispatcher every chance to misuse the free slot
            await asyncio.sleep(0)
        assert ex.running_prompts() == {"batch 0"}
        assert w.scheduler.depth()["batch"] == 3
        rt = asyncio.ensure_future(w.submit(fspec("rt"), priority="realtime"))
        await until(lambda: "rt" in ex.running_prompts())
        assert ex.running_prompts() == {"batch 0", "rt"}  # nothing had to end first
        ex.release("rt")
        assert (await rt).master == b"m"
        for i in range(4):
            await until(lambda i=i: f"batch {i}" in ex.running_prompts())
            ex.release(f"batch {i}")
        await asyncio.gather(*tasks)
        assert [p for _, p in ex.started] == ["batch 0", "rt", "batch 1", "batch 2", "batch 3"]
        assert ex.peak == 2 and w.scheduler.held_back >= 1
        # the scheduler's figures on /metrics, as it counted them
        assert scraped("swiftshot_scheduler_held_back_total",
                       engine=w.info.name) - held0 == w.scheduler.held_back
        assert scraped("swiftshot_scheduler_lent_total",
                       engine=w.info.name) - lent0 == w.scheduler.lent == 0
    finally:
        for t in tasks:
            t.cancel()
        await w.stop()


async def test_dispatcher_with_every_slot_busy_runs_realtime_after_one_item(tmp_path):
    """realtime_slots = 0: both slots run batch work, more is queued; a realtime request
    takes the first slot that frees, ahead of every queued lower-class item."""
    ex = HeldExecutor(2)
    w = Worker(ex, settings_for(tmp_path, realtime_slots=0), capacity_hint_s=0.001)
    await w.start()
    tasks = []
    try:
        tasks = [asyncio.ensure_future(w.submit(fspec(f"b{i}"), priority=p))
                 for i, p in enumerate(("batch", "standard", "batch", "standard", "prefetch"))]
        await until(lambda: len(ex.running) == 2)
        rt = asyncio.ensure_future(w.submit(fspec("rt"), priority="realtime"))
        await until(lambda: w.scheduler.depth()["realtime"] == 1)
        first_two = ex.running_prompts()
        ex.release(sorted(first_two)[0])  # one running item ends
        await until(lambda: len(ex.started) == 3)
        assert ex.started[2][1] == "rt"
        ex.release("rt")
        await rt
        for _ in range(4):
            await until(lambda: len(ex.running) >= 1)
            ex.release(sorted(ex.running_prompts())[0])
            await asyncio.sleep(0)
        await until(lambda: all(t.done() for t in tasks))
        assert ex.peak == 2
    finally:
        for t in tasks:
            t.cancel()
        await w.stop()


# -- shedding lower classes when the front's event loop runs late (runtime/gate.py) --------------


def test_loop_lag_is_a_moving_average_of_the_samples():
    from swiftshot.runtime.gate import LoopLag

    lag = LoopLag(alpha=0.5)
    lag.sample(0.1)
    assert lag.lag_s == pytest.approx(0.05)
    lag.sample(0.1)
    assert lag.lag_s == pytest.approx(0.075)
    lag.sample(-1.0)  # a timer cannot run early: counted as 0
    assert lag.lag_s == pytest.approx(0.0375)


async def test_the_loop_lag_task_stops_with_the_service():
    from swiftshot.runtime.gate import LoopLag

    lag = LoopLag(interval_s=0.001)
    lag.start()
    task = lag._task
    await until(lambda: lag._hist._sum.get() >= 0 and task is not None)
    await asyncio.sleep(0.01)
    await lag.stop()
    assert task is not None and task.done() and lag._task is None


def test_the_gate_sheds_batch_then_standard_and_never_realtime_as_the_lag_grows():
    from swiftshot.runtime.gate import WorkGate
    from swiftshot.runtime.worker import Rejected

    lag = [0.0]
    g = WorkGate(100, realtime_reserve=0.25, retry_after_s=2.0, lag=lambda: lag[0],
                 shed_lag_s=0.010)
    for p in ("realtime", "standard", "batch", "prefetch"):
        g.enter(p)  # the loop keeps up: nothing shed
    assert g.pressure() == 0 and g.shed == {}
    lag[0] = 0.015
    assert g.pressure() == 1
    for p in ("batch", "prefetch"):
        with pytest.raises(Rejected) as e:
            g.enter(p)
        assert (e.value.status, e.value.reason, e.value.retry_after_s) == (503, "overloaded", 2.0)
        assert "realtime" in e.value.message and p in e.value.message
    g.enter("standard")
    g.enter("realtime")
    lag[0] = 0.025
    assert g.pressure() == 2
    with pytest.raises(Rejected):
        g.enter("standard")
    for _ in range(10):
        g.enter("realtime")
    assert g.shed == {"batch": 1, "prefetch": 1, "standard": 1}
    assert g.in_use == 4 + 2 + 10  # the refused took no place
    lag[0] = 0.001  # caught up: everyone is admitted again
    g.enter("batch")


def test_without_a_threshold_the_gate_never_sheds_for_lag():
    from swiftshot.runtime.gate import WorkGate

    g = WorkGate(10, lag=lambda: 99.0, shed_lag_s=None)
    g.enter("batch")
    assert g.pressure() == 0 and g.in_use == 1
    with pytest.raises(ValueError):
        WorkGate(10, lag=lambda: 0.0, shed_lag_s=0.0)


async def test_a_late_loop_sheds_lower_class_misses_but_serves_hits_and_realtime(tmp_path):
    from swiftshot.runtime.worker import Rejected
    from swiftshot.service import Service

    s = Settings(data_dir=tmp_path / "var")
    s.server.warmup_shapes = [(64, 64)]
    s.server.shed_lag_ms = 10.0
    service = Service(s, engine=FakeEngine())
    await service.start()
    try:
        await service.render(fspec("popular"), priority="batch")  # the loop keeps up: served
        await service.loop_lag.stop()  # the test sets the lag from here
        service.loop_lag.lag_s = 0.05
        with pytest.raises(Rejected) as e:
            await service.render(fspec("new batch work"), priority="batch")
        assert (e.value.status, e.value.reason) == (503, "overloaded")
        assert e.value.retry_after_s == s.server.overload_retry_after_s
        with pytest.raises(Rejected):
            await service.render(fspec("new standard work"), priority="standard")
        hit = await service.render(fspec("popular"), priority="batch")
        assert hit.cache == "memory"  # a cache hit never passes the gate
        made = await service.render(fspec("urgent"), priority="realtime")
        assert made.cache == "miss"
        assert service.gate.shed == {"batch": 1, "standard": 1} and service.gate.in_use == 0
    finally:
        await service.drain(1.0)
        await service.stop()


# -- with real worker processes ------------------------------------------------------------------


@pytest.mark.slow
async def test_real_workers_keep_one_process_for_realtime(tmp_path):
    """Two engine worker processes, batch work queued: one process takes batch items one by
    one, the other stays free until a realtime request comes, which starts at once, ahead of
    the queued batch items (the fake engine takes 1 s a call, in 10 steps)."""
    from swiftshot.runtime.process import ProcessExecutor
    from swiftshot.runtime.progress import Listener, Started

    s = settings_for(tmp_path)
    s.server.warmup_shapes = [(64, 64)]
    s.engine.fake.delay_s = 1.0
    s.engine.fake.steps = 10
    s.scheduler.max_batch_size = 1  # one item a call, like the studio engine
    ex = ProcessExecutor(s, "fake", workers=2)
    w = Worker(ex, s)
    await w.start()
    started: list[str] = []

    def heard(name: str) -> Listener:
        return Listener(lambda ev: started.append(name) if isinstance(ev, Started) else None)

    def busy() -> list[list[int]]:
        return [p.item_ids for p in ex._procs if p.batch is not None]

    tasks = []
    try:
        assert w.slots == 2
        tasks = [asyncio.ensure_future(w.submit(w.info.normalized(fspec(f"batch {i}")),
                                                priority="batch", listener=heard(f"batch {i}")))
                 for i in range(3)]
        await until(lambda: len(started) >= 1 and len(busy()) >= 1)
        assert started == ["batch 0"] and len(busy()) == 1, (started, busy())
        assert w.scheduler.depth()["batch"] == 2 and w.scheduler.running_shared == 1
        rt = asyncio.ensure_future(w.submit(w.info.normalized(fspec("rt")), priority="realtime",
                                            listener=heard("rt")))
        await until(lambda: "rt" in started)
        # it started while batch 0 still ran, in the process the batch work left free
        assert started == ["batch 0", "rt"] and len(busy()) == 2
        r = await rt
        assert r.master is not None
        done = await asyncio.gather(*tasks)
        assert all(d.master is not None for d in done)
        assert started == ["batch 0", "rt", "batch 1", "batch 2"]
        # the batch items ran one at a time: never both processes on batch work
        assert w.scheduler.held_back >= 1 and w.scheduler.lent == 0
        workers = {d.worker for d in done}
        assert len(workers) == 1, workers  # all on the shared process
    finally:
        for t in tasks:
            t.cancel()
        await w.stop()
