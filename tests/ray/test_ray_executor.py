"""The ``ray`` executor on a real two-node Ray cluster (loopback): replicas on both nodes,
results and previews across the boundary, cancellation, a replica killed mid-load, errors."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from swiftshot.config import RaySettings, Settings
from swiftshot.delivery import codecs
from swiftshot.engines.base import Cancelled, FakeEngine, preview_steps
from swiftshot.errors import ServiceError
from swiftshot.runtime.executor import Batch, Item
from swiftshot.runtime.progress import Partial, Started
from swiftshot.spec import RenderSpec

pytestmark = pytest.mark.ray


def ray_settings(tmp_path, *, replicas: int = 2, delay_s: float = 0.0, steps: int = 1,
                 **ray: object) -> Settings:
    s = Settings(data_dir=tmp_path / "var")
    s.engine.default = "fake"
    s.engine.fake.delay_s = delay_s
    s.engine.fake.steps = steps
    s.engine.fake.fail_prompt = "explode"
    s.server.warmup_shapes = [(64, 64)]
    opts: dict[str, object] = {
        "app_prefix": f"t{os.getpid()}-{tmp_path.name[-12:].lower().replace('_', '-')}",
        "min_replicas": replicas, "max_replicas": replicas, "replica_cpus": 0.25,
        "batch_timeout_s": 30, "health_check_period_s": 1, "graceful_shutdown_timeout_s": 1,
        "status_interval_s": 0.25}
    opts.update(ray)
    s.ray = RaySettings(**opts)
    return s


def spec(prompt: str, size: int = 64) -> RenderSpec:
    return RenderSpec(engine="fake", prompt=prompt, width=size, height=size).normalized()


_ids = iter(range(1, 10**9))


def batch(*prompts: str, partials: int = 0) -> Batch:
    return Batch(next(_ids), [Item(next(_ids), spec(p), partials) for p in prompts])


@pytest.fixture
async def executor(ray_cluster, tmp_path, request):
    from swiftshot.runtime.ray_executor import RayExecutor

    kw = getattr(request, "param", {})
    ex = RayExecutor(ray_settings(tmp_path, **kw))
    await ex.start()
    try:
        yield ex
    finally:
        await ex.stop()
        await delete_app(ex.app_name)


async def delete_app(name: str) -> None:
    """Ask Serve to delete the app and go on: it finishes in the background (a blocking
    delete waited ~30 s for the replicas' shutdown on this machine; nothing else uses them)."""
    from ray import serve

    await asyncio.get_running_loop().run_in_executor(None, lambda: serve.delete(name, False))


def router_on_this_loop(monkeypatch) -> None:
    """Serve's router on the caller's event loop, as `swiftshot serve` and the benchmarks run
    it (ray.throughput_optimized): Serve read RAY_SERVE_THROUGHPUT_OPTIMIZED when this session
    first imported it, before the cluster fixture set it, so handles would otherwise run their
    router on Serve's own thread."""
    from ray import serve

    made = serve.get_app_handle

    def on_this_loop(name: str):
        handle = made(name)
        if not handle.is_initialized:
            handle._init(_run_router_in_separate_loop=False)
        return handle

    monkeypatch.setattr(serve, "get_app_handle", on_this_loop)


def node_of(worker: str) -> str:
    return worker.split("@", 1)[1].split(":", 1)[0]


# the data path both ways: the direct channel (the default) and the Serve handle
BOTH = ("direct", "serve")


@pytest.mark.parametrize("executor", [{"replicas": 2, "delay_s": 0.05, "transport": t}
                                      for t in BOTH], indirect=True)
async def test_batches_run_on_replicas_on_both_nodes(executor, ray_cluster):
    assert executor.slots == 2
    health = executor.health()
    assert health.ready and health.executor == "ray" and health.warm == 2
    assert len(executor._links) == (2 if executor.cfg.transport == "direct" else 0)
    batches = [batch(f"bag {i}", f"shoe {i}") for i in range(16)]
    results = await asyncio.gather(*(executor.submit(b) for b in batches))
    nodes = {node_of(r.worker) for r in results}
    assert nodes == {n[:8] for n in ray_cluster.node_ids}, nodes
    for b, r in zip(batches, results, strict=True):
        assert [x.id for x in r.results] == [it.id for it in b.items]
        for it, x in zip(b.items, r.results, strict=True):
            assert x.error is None and x.image is None  # master bytes only cross
            got = codecs.decode_master(x.master)
            assert got.tobytes() == FakeEngine._image(it.spec).tobytes()
        assert r.infer_s >= 0.05 and r.master_s > 0
        # the replica's own stages come back for the request's trace (engine, ops, encode)
        names = [n for n, _, _, _ in r.spans]
        assert {"engine", "ops", "encode"} <= set(names), names
        engine = next(s for s in r.spans if s[0] == "engine")
        assert engine[2] - engine[1] >= 40_000_000  # the fake engine slept 50 ms there
        assert {i for n, _, _, i in r.spans if n == "encode"} == {it.id for it in b.items}


@pytest.mark.parametrize("executor", [{"replicas": 1, "steps": 4, "transport": t} for t in BOTH],
                         indirect=True)
async def test_started_and_previews_come_from_the_replica(executor):
    b = batch("vase", partials=2)
    events: list[tuple[int, object]] = []
    result = await executor.submit(b, lambda i, e: events.append((i, e)))
    item = b.items[0].id
    assert isinstance(events[0][1], Started) and events[0][0] == item
    partials = [e for i, e in events if isinstance(e, Partial)]
    assert len(partials) == 2 and all(i == item for i, _ in events)
    # the fake engine's preview at step i is a grey of level 16 i: the steps the engine chose
    want = [(16 * i,) * 3 for i in sorted(preview_steps(4, 2))]
    assert [p.image.getpixel((0, 0)) for p in partials] == want
    assert result.results[0].master


@pytest.mark.parametrize("executor", [{"replicas": 1, "transport": t} for t in BOTH],
                         indirect=True)
async def test_one_bad_item_fails_alone_with_a_picklable_error(executor):
    b = batch("fine", "explode please", "also fine")
    r = await executor.submit(b)
    errs = [x.error for x in r.results]
    assert errs[0] is None and errs[2] is None
    assert isinstance(errs[1], ServiceError) and errs[1].status == 502


@pytest.mark.parametrize("executor", [{"replicas": 1, "delay_s": 2.0, "steps": 20, "transport": t}
                                      for t in BOTH], indirect=True)
async def test_abort_cancels_the_running_batch_in_the_replica(executor):
    b = batch("slow")
    task = asyncio.ensure_future(executor.submit(b))
    await asyncio.sleep(0.5)
    t0 = time.monotonic()
    executor.abort([b.items[0].id])
    with pytest.raises(Cancelled):
        await asyncio.wait_for(task, 10)
    # the replica stopped between steps: it takes the next batch well before 2 s are up
    r = await asyncio.wait_for(executor.submit(batch("next")), 10)
    assert r.results[0].master and time.monotonic() - t0 < 4.0


@pytest.mark.parametrize("transport", BOTH)
async def test_replica_killed_mid_load_loses_no_request(ray_cluster, tmp_path, monkeypatch,
                                                       transport):
    """SIGKILL one of two replicas while requests run through the front's Worker: every
    request is answered — its batch retried once on the other replica, or a clear 503
    worker_lost — none hangs; Serve replaces the replica, and the new one gets work (with the
    router on the front's loop, as served, a stable tie-break once sent it none)."""
    from swiftshot.runtime.ray_executor import RayExecutor
    from swiftshot.runtime.worker import Worker

    router_on_this_loop(monkeypatch)

    s = ray_settings(tmp_path, replicas=2, delay_s=0.3, transport=transport)
    s.scheduler.max_batch_size = 2
    ex = RayExecutor(s)
    worker = Worker(ex, s)
    await worker.start()
    try:
        first = await worker.submit(spec("warm"))
        pid = int(first.worker.rsplit(":", 1)[1])
        tasks = [asyncio.ensure_future(worker.submit(spec(f"load {i}"), deadline_s=60))
                 for i in range(16)]
        await asyncio.sleep(0.5)
        os.kill(pid, signal.SIGKILL)
        done, pending = await asyncio.wait(tasks, timeout=60)
        assert not pending, "a request hung after its replica was killed"
        failed = [t.exception() for t in done if t.exception() is not None]
        assert all(isinstance(e, ServiceError) and e.status == 503 for e in failed), failed
        assert len(failed) <= 4, failed  # at most the batches that were lost twice
        assert all(t.result().master for t in done if t.exception() is None)
        # Serve brings the replica back: two replicas again, neither the killed pid
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rs = await asyncio.gather(*(worker.submit(spec(f"after {i} {time.time()}"))
                                        for i in range(6)))
            workers = {r.worker for r in rs}
            if len(workers) == 2 and all(int(w.rsplit(":", 1)[1]) != pid for w in workers):
                break
            await asyncio.sleep(0.5)
        else:
            pytest.fail("the killed replica was not replaced")
    finally:
        await worker.stop()
        await delete_app(ex.app_name)


@pytest.mark.parametrize("executor", [{"replicas": 1, "delay_s": 0.2, "batcher": "serve"}],
                         indirect=True)
async def test_serve_batch_mode_gathers_single_requests_in_the_replica(executor):
    assert executor.describe().max_batch_size == 1  # the front sends requests one by one
    assert executor.slots == executor.settings.scheduler.max_batch_size
    singles = [batch(f"single {i}") for i in range(6)]
    results = await asyncio.gather(*(executor.submit(b) for b in singles))
    for b, r in zip(singles, results, strict=True):
        (x,) = r.results
        assert x.id == b.items[0].id
        assert codecs.decode_master(x.master).tobytes() == \
            FakeEngine._image(b.items[0].spec).tobytes()
    # gathered: requests that shared one engine call carry that call's very measurement
    calls = {r.infer_s for r in results}
    assert len(calls) < len(results), calls


async def test_a_replica_that_crashes_on_one_input_fails_only_that_request(ray_cluster, tmp_path):
    """The engine takes its replica process down outright on one input (os._exit, as a
    segfault would): the front retries the lost batch in halves, so only that request fails
    (503 worker_lost, saying the input may crash the engine); its batch-mates are answered and
    Serve restarts the replica."""
    from swiftshot.runtime.ray_executor import RayExecutor
    from swiftshot.runtime.worker import Worker

    s = ray_settings(tmp_path, replicas=2)
    s.engine.fake.crash_prompt = "segv"
    s.scheduler.max_batch_size = 4
    s.scheduler.max_wait_ms = 5000.0  # the four below go as one batch
    ex = RayExecutor(s)
    worker = Worker(ex, s)
    await worker.start()
    try:
        prompts = ("ok-1", "ok-2", "segv please", "ok-3")
        outs = await asyncio.wait_for(asyncio.gather(
            *(worker.submit(spec(p), deadline_s=150) for p in prompts),
            return_exceptions=True), 240)
        bad = outs[2]
        assert isinstance(bad, ServiceError) and bad.status == 503, outs
        assert bad.code == "worker_lost" and "may crash the engine" in bad.message
        for p, o in zip(prompts, outs, strict=True):
            if p.startswith("ok"):
                assert not isinstance(o, BaseException), outs
                assert codecs.decode_master(o.master).tobytes() == \
                    FakeEngine._image(spec(p)).tobytes()
        # Serve brings the replicas back: the next request is served
        r = await asyncio.wait_for(worker.submit(spec("afterwards"), deadline_s=120), 150)
        assert r.master
    finally:
        await worker.stop()
        await delete_app(ex.app_name)


# -- batches sent ahead (ray.pipeline_depth) and the front's router ---------------------------


async def test_priority_gate_lets_realtime_in_before_waiting_lower_classes():
    """The replica's engine threads: waiters go in by class, then arrival; a waiter cancelled
    while waiting leaves without taking a place (no Ray needed)."""
    from swiftshot.runtime.ray_executor import PriorityGate

    gate = PriorityGate(1)
    order: list[str] = []
    await gate.acquire(1)  # the running batch

    async def waiter(name: str, rank: int) -> None:
        await gate.acquire(rank)
        order.append(name)

    tasks = {name: asyncio.ensure_future(waiter(name, rank))
             for name, rank in (("standard", 1), ("batch", 2), ("gone", 1), ("realtime", 0))}
    await asyncio.sleep(0.01)
    assert len(gate) == 4 and order == []
    tasks["gone"].cancel()
    await asyncio.sleep(0.01)
    for _ in range(3):
        gate.release()
        await asyncio.sleep(0.01)
    assert order == ["realtime", "standard", "batch"]
    gate.release()
    assert gate.free == 1 and len(gate) == 0
    await asyncio.gather(*tasks.values(), return_exceptions=True)


def _engine_span(result) -> tuple[int, int]:
    return next((a, b) for n, a, b in result.spans if n == "engine")


async def test_batches_sent_ahead_wait_in_the_replica_and_realtime_goes_first(ray_cluster,
                                                                              tmp_path):
    """One replica, one batch at a time, one sent ahead: while the first standard batch runs,
    the second waits inside the replica (its ``queue`` span) and a third in the front; a
    realtime request arriving then runs next — before the batch already waiting in the
    replica — and never two batches run at once (``slots`` = 1).

    Which of the first two standard batches runs first is not asserted: both are sent at once,
    and a Serve replica (an async actor) need not take two requests in the order they were
    sent — the cause of this test's earlier failures in loaded combined runs."""
    from swiftshot.runtime.ray_executor import RayExecutor
    from swiftshot.runtime.worker import Worker

    s = ray_settings(tmp_path, replicas=1, delay_s=2.0, pipeline_depth=1, router="front")
    s.scheduler.max_batch_size = 1  # a batch per request
    ex = RayExecutor(s)
    worker = Worker(ex, s)
    await worker.start()
    try:
        assert (ex.slots, ex.ahead, ex.reserve) == (1, 1, 1)
        std = [asyncio.ensure_future(worker.submit(spec(f"std {i}"), deadline_s=120))
               for i in range(3)]
        deadline = time.monotonic() + 30
        while len(ex._running) < 2:  # the second standard batch has been sent ahead
            assert time.monotonic() < deadline, "nothing was sent ahead"
            await asyncio.sleep(0.01)
        assert len(ex._running) == 2  # the third waits in the front
        await asyncio.sleep(0.3)  # both reach the replica (a hop is milliseconds)
        rt = await asyncio.wait_for(worker.submit(spec("urgent"), "realtime", deadline_s=120),
                                    60)
        outs = await asyncio.wait_for(asyncio.gather(*std), 60)
        named = [(outs[0], "std0"), (outs[1], "std1"), (outs[2], "std2"), (rt, "rt")]
        starts = sorted((_engine_span(r)[0], name) for r, name in named)
        order = [name for _, name in starts]
        assert order[0] in ("std0", "std1") and order[1] == "rt", starts
        assert order[2] in ("std0", "std1") and order[3] == "std2", starts
        waited = next(r for r, name in named if name == order[2])
        ahead_wait = next(b - a for n, a, b in waited.spans if n == "queue")
        assert ahead_wait > 0.3e9, waited.spans  # it waited in the replica while one ran
        spans = sorted(_engine_span(r) for r in (*outs, rt))
        assert all(b[0] >= a[1] for a, b in zip(spans, spans[1:], strict=False)), spans
    finally:
        await worker.stop()
        await delete_app(ex.app_name)


@pytest.mark.parametrize("executor", [{"replicas": 1, "delay_s": 2.0, "pipeline_depth": 1,
                                       "router": "front"}], indirect=True)
async def test_a_batch_waiting_in_a_lost_replica_is_reported_not_started(executor):
    """One replica running a batch with another sent ahead waiting behind it; the replica is
    killed: both are lost (WorkerLost), the running one ``started``, the waiting one not — so
    the front's crash isolation does not count the waiting one's loss against its inputs.
    (Which of the two ran is not asserted: a replica need not take them in the order sent.)"""
    from swiftshot.errors import WorkerLost

    warm = await asyncio.wait_for(executor.submit(batch("warm")), 60)
    pid = int(warm.worker.rsplit(":", 1)[1])
    two = [asyncio.ensure_future(executor.submit(batch(f"in replica {i}"))) for i in range(2)]
    deadline = time.monotonic() + 30
    while not all(r.started is not None for r in executor._running.values()) or \
            not any(r.started for r in executor._running.values()):
        assert time.monotonic() < deadline, "the replica never started a batch"
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)  # the other one reaches the replica's gate
    os.kill(pid, signal.SIGKILL)
    outs = await asyncio.wait_for(asyncio.gather(*two, return_exceptions=True), 60)
    assert all(isinstance(o, WorkerLost) for o in outs), outs
    assert sorted(o.started for o in outs) == [False, True], [o.started for o in outs]


@pytest.mark.parametrize("executor", [{"replicas": 2, "delay_s": 1.5, "pipeline_depth": 1,
                                       "router": "front"}], indirect=True)
async def test_router_sends_realtime_to_the_replica_that_frees_first(executor):
    """Two replicas, each running a standard batch (the first began 0.4 s earlier) with one
    more waiting (sent one after the other, each to the less loaded replica): a realtime batch goes to the replica that began first and runs there before
    the standard batch waiting in it."""
    from swiftshot.runtime.scheduler import RANK

    def std(name: str) -> Batch:
        return Batch(next(_ids), [Item(next(_ids), spec(name))], rank=RANK["standard"])

    first = asyncio.ensure_future(executor.submit(std("first")))
    await asyncio.sleep(0.4)
    second = asyncio.ensure_future(executor.submit(std("second")))
    await asyncio.sleep(0.2)
    waiting = []
    for i in range(2):
        waiting.append(asyncio.ensure_future(executor.submit(std(f"waiting {i}"))))
        await asyncio.sleep(0.2)
    urgent = Batch(next(_ids), [Item(next(_ids), spec("urgent"))], rank=RANK["realtime"])
    rt = await asyncio.wait_for(executor.submit(urgent), 60)
    a, b, *rest = await asyncio.wait_for(asyncio.gather(first, second, *waiting), 60)
    assert a.worker != b.worker  # the second went to the idle replica
    assert sorted(r.worker for r in rest) == sorted([a.worker, b.worker])  # one waits on each
    assert rt.worker == a.worker
    behind = next(r for r in rest if r.worker == a.worker)

    def engine(r):
        return next(s for s in r.spans if s[0] == "engine")

    assert engine(a)[2] <= engine(rt)[1] < engine(behind)[1]


def test_teardown_steps_are_bounded():
    """LoopbackCluster.shutdown runs each step (serve.shutdown, ray.shutdown) through
    ``bounded``: a step that hangs is left behind after its timeout and the next runs; one that
    raises does not stop the rest (no Ray needed)."""
    import threading

    from swiftshot.testing.ray_cluster import bounded

    release = threading.Event()
    t0 = time.monotonic()
    assert bounded(lambda: release.wait(30), 0.2) is False  # hung: given up on
    assert time.monotonic() - t0 < 10
    release.set()

    def fails() -> None:
        raise RuntimeError("router on a closed loop")

    assert bounded(fails, 5) is True
    ran: list[int] = []
    assert bounded(lambda: ran.append(1), 5) is True and ran == [1]


def test_a_stopped_executor_leaves_nothing_bound_to_its_ended_loop(ray_cluster, tmp_path,
                                                                    monkeypatch):
    """Serve's router runs on the front's own loop (ray.throughput_optimized). After stop()
    and the loop's end nothing of it may be left for Serve to touch: no handle in the Serve
    client's cache (``client.shutdown()`` would shut it down again on the dead loop:
    "coroutine 'AsyncioRouter.shutdown' was never awaited"), and no long-poll client still
    running (the next controller update — here the app's deletion — found the loop gone:
    "LongPollClient ... has been disabled: Bound asyncio event loop is not running")."""
    import logging
    import threading

    import ray
    from ray import serve
    from ray.serve._private.router import SharedRouterLongPollClient

    from swiftshot.runtime.ray_executor import RayExecutor

    router_on_this_loop(monkeypatch)
    seen: dict[str, object] = {}

    async def life() -> None:
        ex = RayExecutor(ray_settings(tmp_path, replicas=1))
        await ex.start()
        try:
            assert (await ex.submit(batch("mug"))).results[0].master
            loop = asyncio.get_running_loop()
            assert ex._base_handle._router._asyncio_loop is loop
            inner = ex._base_handle._router._asyncio_router
            shared = SharedRouterLongPollClient.get_or_create(inner._controller_handle, loop)
            assert shared.long_poll_client.is_running  # the one every router here shares
        finally:
            await ex.stop()
        # stopped while the loop still runs: nothing later can find it ended
        seen.update(loop=loop, app=ex.app_name, inner=inner.long_poll_client.is_running,
                    shared=shared.long_poll_client.is_running,
                    pending=shared.long_poll_client._current_ref)

    errors: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.ERROR:
                errors.append(record.getMessage())

    catch = Catch()
    serve_log = logging.getLogger("ray.serve")
    serve_log.addHandler(catch)
    try:
        asyncio.run(life())  # the loop ends (and is closed) here
        assert seen["inner"] is False and seen["shared"] is False
        client = serve.context._global_client
        left = [h for h in client.handle_cache.values()
                if getattr(h._router, "_asyncio_loop", None) is seen["loop"]]
        assert left == []  # client.shutdown() would shut these down on the closed loop
        # the app's deletion answers the shared client's pending poll: a client still running
        # would now log that it has been disabled
        serve.delete(seen["app"], _blocking=False)
        ready, _ = ray.wait([seen["pending"]], timeout=120)
        assert ready, "the deletion never reached the long poll"
        done = threading.Event()
        done.wait(1.0)  # the poll's completion callback runs on Ray's thread right after
        assert not [e for e in errors if "LongPollClient" in e], errors
    finally:
        serve_log.removeHandler(catch)


async def test_the_replica_renders_lower_class_batches_on_a_lowered_thread(ray_cluster, tmp_path):
    """engine.lower_class_nice holds in a Ray replica as in a worker process: a batch with no
    realtime item renders on a thread niced by it, a realtime one at the replica's own
    priority (the replica object itself, in this driver: its threads' niceness is readable)."""
    import threading

    from swiftshot.runtime.ray_executor import EngineReplica

    s = ray_settings(tmp_path, replicas=1)
    s.engine.lower_class_nice = 3
    replica = EngineReplica(s, "fake")
    seen: list[int] = []
    real = replica._work

    def spy(*args):
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return real(*args)

    replica._work = spy
    base = os.getpriority(os.PRIO_PROCESS, 0)
    try:
        for rank in (2, 0, 1, 3):
            assert (await replica.run(batch(f"rank {rank}"), rank=rank)).results[0].master
        events = [e async for e in replica.run_stream(batch("streamed"), rank=1)]
        assert events[-1][0] == "result"
        low = min(19, base + 3)
        assert seen == [low, base, low, low, low]
    finally:
        replica._pool.shutdown(wait=True)
        if replica._lower is not None:
            replica._lower.shutdown(wait=True)
