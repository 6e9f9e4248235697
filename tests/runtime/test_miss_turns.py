"""How many turns of the event loop a miss's answer takes to reach its caller once the executor
has it, and the single-flight semantics the shorter path must keep (docs/PERFORMANCE.md, sixth
pass). Each turn was ~60 µs of a miss's server overhead on the dev VM; the path used to wake
four tasks in turn (the batch, the single-flight's task, a task wrapping it for the deadline,
the caller), each through an ``asyncio.wait`` or ``asyncio.shield`` future of its own."""

from __future__ import annotations

import asyncio

import pytest

from swiftshot import telemetry
from swiftshot.config import Settings
from swiftshot.engines.base import FakeEngine
from swiftshot.runtime.executor import (
    Batch,
    BatchResult,
    Health,
    ItemResult,
    WorkerState,
    describe_engine,
)
from swiftshot.runtime.worker import Rejected
from swiftshot.service import Service
from swiftshot.spec import RenderSpec


class HeldExecutor:
    """Every batch waits for a future the test resolves (``answer``); with ``events``, each
    send is written there as "sent" (test_miss_probe_beside_render orders sends and probes)."""

    kind = "stub"

    def __init__(self, events: list[str] | None = None, slots: int = 2,
                 master: bytes = b"m" * 64) -> None:
        self.engine = FakeEngine()
        self.events = events
        self.slots = slots
        self.master = master
        self.held: list[tuple[Batch, asyncio.Future[None]]] = []
        self.aborted: list[int] = []

    def describe(self):
        return describe_engine(self.engine)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        for _, f in self.held:
            if not f.done():
                f.cancel()

    def health(self) -> Health:
        return Health(self.kind, [WorkerState("stub", True, True)], None)

    def abort(self, ids) -> None:
        self.aborted.extend(ids)

    async def submit(self, batch: Batch, on_event=None) -> BatchResult:
        if self.events is not None:
            self.events.append("sent")
        f = asyncio.get_running_loop().create_future()
        self.held.append((batch, f))
        await f
        return BatchResult([ItemResult(it.id, master=self.master, width=64, height=64)
                            for it in batch.items], 0.001, worker="stub")

    def answer(self, i: int = -1, error: BaseException | None = None) -> None:
        f = self.held[i][1]
        if error is not None:
            f.set_exception(error)
        else:
            f.set_result(None)


def spec(prompt: str) -> RenderSpec:
    return RenderSpec(engine="fake", prompt=prompt, width=64, height=64, seed=1)


@pytest.fixture
async def svc(tmp_path):
    s = Settings(data_dir=tmp_path / "var")
    s.scheduler.max_batch_size = 1
    s.scheduler.max_wait_ms = 0.0
    s.scheduler.service_time_hint_s = 0.001  # a 50 ms deadline is admitted
    s.server.warmup_shapes = []
    s.cache.disk_bytes = 0
    ex = HeldExecutor()
    service = Service(s, executor=ex)
    await service.start()
    try:
        yield service, ex
    finally:
        await service.stop()


async def _until(cond, turns: int = 1000) -> None:
    for _ in range(turns):
        if cond():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


def _joined() -> float:
    return telemetry.COALESCED._value.get()


async def _turns_until_done(task: asyncio.Task) -> int:
    n = 0
    while not task.done():
        await asyncio.sleep(0)  # one turn of the loop: every callback ready now runs
        n += 1
        assert n < 100
    return n


async def test_a_miss_reaches_its_caller_three_loop_turns_after_the_executor_answers(svc):
    """The executor's answer wakes the batch task (1), which resolves the request's future:
    the single-flight task resumes (2) and resolves its callers' futures: the caller resumes
    (3). No wrapping task and no shield between (main had 7: two asyncio.wait and one shield
    future, and the deadline's own task)."""
    service, ex = svc
    task = asyncio.ensure_future(service.render(spec("one")))
    await _until(lambda: len(ex.held) == 1)
    ex.answer()
    turns = await _turns_until_done(task)
    assert task.result().cache == "miss"
    assert turns <= 3, f"{turns} loop turns from the executor's answer to the caller"


async def _lead_and_follow(service, ex, prompt: str):
    """A leader whose batch the executor holds, and a twin that has joined it."""
    lead = asyncio.ensure_future(service.render(spec(prompt)))
    await _until(lambda: len(ex.held) == 1)
    joined = _joined()
    follow = asyncio.ensure_future(service.render(spec(prompt)))
    await _until(lambda: _joined() == joined + 1)
    await asyncio.sleep(0)
    return lead, follow


async def test_a_coalesced_caller_is_answered_in_the_same_turn_as_the_leader(svc):
    service, ex = svc
    lead, follow = await _lead_and_follow(service, ex, "two")
    ex.answer()
    await _turns_until_done(lead)
    assert follow.done(), "the follower waited turns more than the leader"
    assert (lead.result().cache, follow.result().cache) == ("miss", "coalesced")
    assert len(ex.held) == 1


async def test_the_leader_hanging_up_leaves_the_work_to_a_follower(svc):
    """The first caller's client goes away while a twin waits: the work is not cancelled
    (no abort reaches the executor), the twin gets the image, the gate's place is freed."""
    service, ex = svc
    lead, follow = await _lead_and_follow(service, ex, "three")
    lead.cancel()
    with pytest.raises(asyncio.CancelledError):
        await lead
    await asyncio.sleep(0.01)
    assert ex.aborted == [] and not ex.held[0][1].done()
    ex.answer()
    r = await follow
    assert r.cache == "coalesced"
    await _until(lambda: service.gate.in_use == 0)
    assert (await service.render(spec("three"))).cache == "memory"


async def test_every_caller_hanging_up_aborts_the_work_and_frees_the_gate(svc):
    service, ex = svc
    joined = _joined()
    callers = [asyncio.ensure_future(service.render(spec("four"))) for _ in range(2)]
    await _until(lambda: len(ex.held) == 1 and _joined() == joined + 1)
    for c in callers:
        c.cancel()
    await asyncio.gather(*callers, return_exceptions=True)
    await _until(lambda: ex.aborted != [])
    await _until(lambda: service.gate.in_use == 0)
    assert service.flight.inflight() == 0


async def test_past_its_deadline_the_leader_is_answered_503_and_a_later_twin_leaving_cancels_nothing(
        svc):
    """The deadline ends the caller's wait, not the work: a twin that joins afterwards and
    hangs up is the last one waiting, and still the work goes on to the cache."""
    service, ex = svc
    lead = asyncio.ensure_future(service.render(spec("five"), deadline_s=0.05))
    await _until(lambda: len(ex.held) == 1)
    with pytest.raises(Rejected) as e:
        await lead
    assert (e.value.status, e.value.reason) == (503, "deadline") and e.value.retry_after_s > 0
    twin = asyncio.ensure_future(service.render(spec("five")))
    await asyncio.sleep(0.01)
    twin.cancel()
    await asyncio.gather(twin, return_exceptions=True)
    await asyncio.sleep(0.01)
    assert ex.aborted == [] and service.flight.inflight() == 1
    ex.answer()
    await _until(lambda: service.flight.inflight() == 0 and service.gate.in_use == 0)
    assert (await service.render(spec("five"))).cache == "memory"


async def test_an_uncacheable_render_is_not_shared_and_keeps_its_deadline(svc):
    service, ex = svc
    s = spec("six").model_copy(update={"seed": -1})
    assert not s.cacheable
    a = asyncio.ensure_future(service.render(s, deadline_s=0.05))
    b = asyncio.ensure_future(service.render(s))
    await _until(lambda: len(ex.held) == 2)
    with pytest.raises(Rejected):
        await a
    assert ex.aborted == []  # the deadline does not cancel the work
    ex.answer(0)
    ex.answer(1)
    assert (await b).cache == "miss"
    await _until(lambda: service.gate.in_use == 0)


async def test_a_lone_miss_never_wakes_the_dispatch_loop(svc):
    """A request that starts at admission (a free slot, nothing queued) leaves the dispatch
    loop asleep, on its way in and when its batch ends: each wake-up was a turn of the loop
    beside the miss's own steps (front CPU, and a core the engine worker wants), with nothing
    to hand out. A request that has to queue still wakes it."""
    service, ex = svc
    worker = service.worker
    turns = 0
    once = worker._dispatch_once

    async def counted() -> None:
        nonlocal turns
        turns += 1
        await once()

    worker._dispatch_once = counted
    worker._wake.set()  # the loop parks in the counted version
    await _until(lambda: turns == 1)
    await asyncio.sleep(0.01)
    turns = 0
    task = asyncio.ensure_future(service.render(spec("alone")))
    await _until(lambda: len(ex.held) == 1)
    ex.answer()
    assert (await task).cache == "miss"
    await asyncio.sleep(0.01)
    assert turns == 0, f"the dispatch loop took {turns} turns for a lone miss"
    assert worker.depth() == {"realtime": 0, "standard": 0, "batch": 0, "prefetch": 0,
                              "running": 0}
    # two at once on a one-slot executor: the second queues, and the loop is woken for it
    ex.slots = 1
    worker._sync_capacity()
    first = asyncio.ensure_future(service.render(spec("six")))
    await _until(lambda: len(ex.held) == 2)
    second = asyncio.ensure_future(service.render(spec("seven")))
    await _until(lambda: turns > 0)
    ex.answer(1)
    await _until(lambda: len(ex.held) == 3)
    ex.answer(2)
    assert [(await first).cache, (await second).cache] == ["miss", "miss"]
