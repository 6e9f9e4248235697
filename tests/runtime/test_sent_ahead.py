"""The front's dispatch with an executor that takes batches ahead of its running slots (the Ray
executor's ``pipeline_depth``), without Ray: the scheduler's realtime reserve and the batches
sent ahead together."""

from __future__ import annotations

import asyncio
import threading

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
from swiftshot.runtime.worker import Worker
from swiftshot.spec import RenderSpec


class AheadExecutor:
    """``slots`` batches run at once; ``ahead`` more may be sent to wait inside it (as a Ray
    replica holds them). A batch finishes when the test sets ``release``."""

    kind = "stub"

    def __init__(self, slots: int, ahead: int) -> None:
        self._slots, self.ahead, self.reserve = slots, ahead, 0
        self.engine = FakeEngine()
        self.release = asyncio.Event()
        self.in_flight = 0
        self.most_in_flight = 0

    def describe(self):
        return describe_engine(self.engine)

    @property
    def slots(self) -> int:
        return self._slots

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.release.set()

    def health(self) -> Health:
        return Health(self.kind, [WorkerState("stub", True, True)], None)

    def abort(self, ids) -> None:
        pass

    async def submit(self, batch: Batch, on_event=None) -> BatchResult:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.release.wait()
        finally:
            self.in_flight -= 1
        return BatchResult([ItemResult(it.id, master=b"m", width=64, height=64)
                            for it in batch.items], 0.001, worker="stub")


def spec(prompt: str) -> RenderSpec:
    return RenderSpec(engine="fake", prompt=prompt, width=64, height=64).normalized()


def _reserve_settings(tmp_path, lend_after_s: float) -> Settings:
    """One item a batch, no batching window, one slot kept for realtime (lent after
    ``lend_after_s`` without a realtime request), no warm-up."""
    s = Settings(data_dir=tmp_path / "var")
    s.scheduler.max_batch_size = 1
    s.scheduler.max_wait_ms = 0.0
    s.scheduler.realtime_slots = 1
    s.scheduler.lend_reserved_after_s = lend_after_s
    s.server.warmup_shapes = []
    return s


def test_batches_sent_ahead_beside_the_realtime_reserve_do_not_starve_the_loop(tmp_path):
    """Two slots, two more batches sent ahead, the realtime reserve on (one slot kept, lent
    while no realtime request came): the front sends four standard batches out, queues the
    rest, and its event loop keeps turning. Before the fix the scheduler said "due now" (the
    reserve's loan "begins" at once, though already lent) and handed out nothing, and the
    dispatch loop asked again without ever yielding: the event loop froze with the third batch
    (the Ray benchmark stalled at 2 replicas). Run on its own loop in a thread, so a frozen
    loop fails this test instead of hanging the suite."""
    s = _reserve_settings(tmp_path, lend_after_s=10.0)
    box: dict[str, object] = {}

    async def scenario() -> None:
        ex = AheadExecutor(slots=2, ahead=2)
        worker = Worker(ex, s, capacity_hint_s=0.001)
        box["worker"] = worker
        await worker.start()
        try:
            tasks = [asyncio.ensure_future(worker.submit(spec(f"std {i}"), deadline_s=60))
                     for i in range(6)]
            ticks = 0
            for _ in range(200):  # the loop turns: this coroutine gets to run
                await asyncio.sleep(0.005)
                ticks += 1
                if ex.in_flight == 4:
                    break
            box["ticks"] = ticks
            box["in_flight"] = ex.in_flight
            ex.release.set()
            results = await asyncio.wait_for(asyncio.gather(*tasks), 30)
            box["answered"] = sum(1 for r in results if r.master)
            box["most"] = ex.most_in_flight
        finally:
            await worker.stop()

    def run() -> None:
        try:
            asyncio.run(scenario())
        except BaseException as e:  # noqa: BLE001 - reported below
            box["error"] = e

    t = threading.Thread(target=run, name="sent-ahead-test", daemon=True)
    t.start()
    t.join(30)
    if t.is_alive():  # frozen: stop the dispatch loop from here so the thread can end
        worker = box.get("worker")
        if isinstance(worker, Worker):
            worker._stopped = True
        t.join(30)
        raise AssertionError("the front's event loop froze with batches sent ahead "
                             f"(in flight when it froze: {box.get('in_flight')})")
    assert "error" not in box, box.get("error")
    assert box["in_flight"] == 4, box  # slots + ahead, and no more
    assert box["most"] == 4, box
    assert box["answered"] == 6, box


def test_the_reserve_holds_its_place_beyond_the_batches_sent_ahead(tmp_path):
    """With the reserve not lent (a realtime request came lately), shared batches take the
    running slots less the reserve, plus those sent ahead; a realtime request then still gets
    out at once."""
    s = _reserve_settings(tmp_path, lend_after_s=600.0)

    async def scenario() -> tuple[int, int]:
        ex = AheadExecutor(slots=2, ahead=2)
        worker = Worker(ex, s, capacity_hint_s=0.001)
        await worker.start()
        try:
            first_rt = asyncio.ensure_future(worker.submit(spec("rt 0"), "realtime",
                                                           deadline_s=60))
            await asyncio.sleep(0.05)
            ex.release.set()  # the realtime request ends; the reserve is not lent for 600 s
            await asyncio.wait_for(first_rt, 10)
            ex.release = asyncio.Event()
            tasks = [asyncio.ensure_future(worker.submit(spec(f"std {i}"), deadline_s=60))
                     for i in range(6)]
            for _ in range(100):
                await asyncio.sleep(0.005)
            shared = ex.in_flight  # 2 slots - 1 reserved + 2 ahead
            rt = asyncio.ensure_future(worker.submit(spec("rt 1"), "realtime", deadline_s=60))
            for _ in range(100):
                await asyncio.sleep(0.005)
                if ex.in_flight > shared:
                    break
            with_rt = ex.in_flight
            ex.release.set()
            await asyncio.wait_for(asyncio.gather(rt, *tasks), 30)
            return shared, with_rt
        finally:
            await worker.stop()

    shared, with_rt = asyncio.run(scenario())
    assert shared == 3
    assert with_rt == 4


def test_a_batch_lost_while_waiting_is_sent_again_without_counting_against_it(tmp_path):
    """Crash isolation and batches sent ahead: a batch whose worker died while it still waited
    there (``WorkerLost.started`` False) is sent again as it is, and the loss is not counted
    against its inputs — twice running, then it is answered. Before, each such loss counted:
    lost twice while alone, an innocent request failed as 'this input may crash the engine'.
    A loss while running still counts (the request that crashes fails alone)."""
    from swiftshot.errors import ServiceError, WorkerLost

    s = Settings(data_dir=tmp_path / "var")
    s.scheduler.max_batch_size = 1
    s.scheduler.max_wait_ms = 0.0
    s.server.warmup_shapes = []

    class LosingExecutor(AheadExecutor):
        def __init__(self) -> None:
            super().__init__(slots=1, ahead=1)
            self.release.set()
            self.sends: dict[str, int] = {}

        async def submit(self, batch: Batch, on_event=None) -> BatchResult:
            prompt = batch.items[0].spec.prompt
            self.sends[prompt] = self.sends.get(prompt, 0) + 1
            if prompt == "innocent" and self.sends[prompt] <= 2:
                lost = WorkerLost("replica died (behind another batch)")
                lost.started = False
                raise lost
            if prompt == "poison":
                raise WorkerLost("replica died running this")
            return await super().submit(batch, on_event)

    async def scenario():
        ex = LosingExecutor()
        worker = Worker(ex, s, capacity_hint_s=0.001)
        await worker.start()
        try:
            outs = await asyncio.wait_for(asyncio.gather(
                worker.submit(spec("innocent"), deadline_s=60),
                worker.submit(spec("poison"), deadline_s=60), return_exceptions=True), 30)
            return outs, dict(ex.sends)
        finally:
            await worker.stop()

    (innocent, poison), sends = asyncio.run(scenario())
    assert not isinstance(innocent, BaseException), innocent
    assert innocent.master == b"m"
    assert sends["innocent"] == 3  # two uncounted losses, then answered
    assert isinstance(poison, ServiceError) and poison.code == "worker_lost", poison
    assert "may crash the engine" in poison.message
    assert sends["poison"] == 2  # lost, retried alone, lost again: fails alone
