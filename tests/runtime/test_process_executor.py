"""The process executor with real worker processes: a worker killed with SIGKILL mid-batch, a
client that hangs up, an input that crashes the engine, a model that cannot load, previews and
product photos across the process boundary.

Workers run the test-only fake engine, whose per-call time and failures come from settings.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import pytest
from PIL import Image

from swiftshot.config import Settings
from swiftshot.delivery import codecs
from swiftshot.engines.base import EngineError
from swiftshot.errors import ServiceError, WorkerLost
from swiftshot.runtime import shm
from swiftshot.runtime.process import ProcessExecutor
from swiftshot.runtime.progress import Listener, Partial, Queued, Started
from swiftshot.runtime.worker import Rejected, Worker
from swiftshot.spec import RenderSpec

pytestmark = pytest.mark.slow


def _settings(tmp_path, **fake) -> Settings:
    s = Settings(data_dir=tmp_path / "var")
    s.server.warmup_shapes = [(64, 64)]
    s.scheduler.max_wait_ms = 1.0
    for k, v in fake.items():
        setattr(s.engine.fake, k, v)
    return s


async def _worker(settings: Settings, n: int) -> tuple[Worker, ProcessExecutor]:
    ex = ProcessExecutor(settings, "fake", workers=n)
    w = Worker(ex, settings)
    await w.start()
    return w, ex


def _spec(w: Worker, prompt: str, size: int = 64, **kw) -> RenderSpec:
    return w.info.normalized(RenderSpec(engine="fake", prompt=prompt, width=size, height=size,
                                        **kw))


async def _until(cond, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not reached"
        await asyncio.sleep(0.02)


def _busy(ex: ProcessExecutor):
    return next((p for p in ex._procs if p.batch is not None), None)


async def test_sigkill_mid_batch_is_retried_elsewhere_and_the_worker_comes_back(tmp_path):
    settings = _settings(tmp_path, delay_s=1.0, steps=20)
    settings.engine.worker_nice = 3
    w, ex = await _worker(settings, 2)
    try:
        assert w.slots == 2 and ex.health().warm == 2
        # results cross by shared memory, whose names were removed once the workers attached
        assert all(p.area is not None for p in ex._procs)
        assert shm.leftover(os.getpid()) == []
        t0 = time.monotonic()
        task = asyncio.create_task(w.submit(_spec(w, "victim"), deadline_s=30))
        await _until(lambda: _busy(ex) is not None)
        victim = _busy(ex)
        pid = victim.proc.pid
        await asyncio.sleep(0.2)  # mid-batch: the fake engine sleeps 1 s in 20 steps
        os.kill(pid, signal.SIGKILL)
        r = await asyncio.wait_for(task, 30)
        assert r.master is not None and codecs.decode_master(r.master).size == (64, 64)
        assert r.worker.endswith(f"process-{1 - victim.index}")  # served by the other one
        assert time.monotonic() - t0 < 30
        # the dead worker is restarted and warm again
        await _until(lambda: ex.health().warm == 2)
        assert victim.restarts == 1 and victim.proc.pid != pid
        assert shm.leftover(os.getpid()) == []  # the dead worker's segment left no name
        # every worker, the restarted one too, runs below the front (engine.worker_nice)
        front = os.getpriority(os.PRIO_PROCESS, 0)
        want = min(19, front + settings.engine.worker_nice)
        assert [os.getpriority(os.PRIO_PROCESS, p.proc.pid) for p in ex._procs] == [want] * 2
        assert (await w.submit(_spec(w, "after"))).master is not None
    finally:
        await w.stop()
    assert shm.leftover(os.getpid()) == []


async def test_a_batch_whose_worker_dies_twice_is_a_clear_503(tmp_path):
    settings = _settings(tmp_path, delay_s=2.0, steps=40)
    w, ex = await _worker(settings, 1)
    try:
        task = asyncio.create_task(w.submit(_spec(w, "doomed"), deadline_s=60))
        for _ in range(2):
            await _until(lambda: _busy(ex) is not None and _busy(ex).state == "ready")
            p = _busy(ex)
            await asyncio.sleep(0.2)
            os.kill(p.proc.pid, signal.SIGKILL)
            await _until(lambda p=p: p.state != "ready" or p.batch is None)
        with pytest.raises(WorkerLost) as info:
            await asyncio.wait_for(task, 60)
        assert info.value.status == 503 and info.value.code == "worker_lost"
        assert info.value.retry_after > 0 and "twice" in info.value.message
        await _until(lambda: ex.health().warm == 1)
    finally:
        await w.stop()


async def test_a_client_that_hangs_up_frees_its_slot_in_the_worker_process(tmp_path):
    settings = _settings(tmp_path, delay_s=30.0, steps=300)  # 30 s unless stopped
    w, ex = await _worker(settings, 1)
    try:
        long = asyncio.create_task(w.submit(_spec(w, "abandoned"), deadline_s=60))
        await _until(lambda: _busy(ex) is not None)
        await asyncio.sleep(0.3)
        long.cancel()
        t0 = time.monotonic()
        # the only worker stops the abandoned batch between steps (it would take 30 s) ...
        await _until(lambda: _busy(ex) is None, timeout=10)
        assert time.monotonic() - t0 < 10 and w.depth()["running"] == 0
        # ... and the next request reaches it at once
        nxt = asyncio.create_task(w.submit(_spec(w, "next", 128), deadline_s=60))
        await _until(lambda: _busy(ex) is not None, timeout=10)
        assert ex.health().workers[0].busy == 1
        nxt.cancel()
        await _until(lambda: _busy(ex) is None, timeout=10)
    finally:
        await w.stop()


async def test_a_worker_whose_front_is_gone_exits_between_steps_of_its_batch(tmp_path):
    # the worker's main thread reads its pipe itself (no reader thread): between the steps of
    # a running batch it sees the front's end of file and exits, it does not run on for 30 s
    settings = _settings(tmp_path, delay_s=30.0, steps=300)
    w, ex = await _worker(settings, 1)
    p = ex._procs[0]
    proc = p.proc
    try:
        task = asyncio.create_task(w.submit(_spec(w, "orphaned"), deadline_s=60))
        await _until(lambda: _busy(ex) is not None)
        await asyncio.sleep(0.3)
        for r in p.readers:  # every descriptor of the front's end goes: the worker sees EOF
            r.close()
        p.conn.close()
        t0 = time.monotonic()
        await asyncio.get_running_loop().run_in_executor(None, proc.join, 20)
        assert proc.exitcode == 0 and time.monotonic() - t0 < 20
        task.cancel()
    finally:
        p.state = "stopped"  # its death was ours: no restart
        await w.stop()


async def test_an_input_that_crashes_the_engine_fails_only_its_own_request(tmp_path):
    settings = _settings(tmp_path, delay_s=0.3, fail_prompt="boom")
    w, ex = await _worker(settings, 1)
    try:
        blocker = asyncio.create_task(w.submit(_spec(w, "first")))
        await _until(lambda: _busy(ex) is not None)
        # these queue behind the blocker and go as one batch
        outs = await asyncio.gather(*(w.submit(_spec(w, p)) for p in ("ok-1", "boom", "ok-2")),
                                    return_exceptions=True)
        await blocker
        assert isinstance(outs[1], EngineError) and outs[1].status == 502
        assert "fake engine failure" in outs[1].message
        assert all(o.master is not None for o in (outs[0], outs[2])), outs
        assert ex.health().warm == 1  # the worker survived its engine's error
    finally:
        await w.stop()


async def test_a_model_that_cannot_load_leaves_the_executor_not_ready_saying_why(tmp_path):
    settings = _settings(tmp_path, load_error="weights file is truncated")
    settings.engine.load_retries, settings.engine.load_backoff_s = 1, 0.1
    ex = ProcessExecutor(settings, "fake", workers=1)
    w = Worker(ex, settings)
    with pytest.raises(ServiceError, match="weights file is truncated") as info:
        await w.start()
    try:
        assert info.value.status == 503 and not w.ready
        h = ex.health()
        assert not h.ready and "weights file is truncated" in (h.error or "")
        # bounded: tried twice (load_retries = 1), then it stays failed, saying so
        assert "gave up after 2 tries" in h.error and ex._procs[0].state == "failed"
        assert h.workers[0].restarts == 0  # a load failure is not restarted in a loop
    finally:
        await w.stop()
    alive = [t for t in threading.enumerate() if t.name.startswith("swiftshot-reader")]
    assert alive == []  # no reader threads: the loop reads the pipes
    assert all(not p.readers for p in ex._procs)  # stop() closed the loop's readers
    assert shm.leftover(os.getpid()) == []  # nor the failed loads' result segments


def test_a_reader_whose_loop_has_closed_ends_quietly(tmp_path, monkeypatch):
    # CI once failed on this: a worker's pipe reached EOF after the test's loop had closed, the
    # (then) reader thread raised from call_soon_threadsafe, and pytest blamed the next test.
    # The loop reads the pipes itself now: a closed loop has nobody to call, and closing the
    # reader afterwards frees its descriptor without touching the closed loop.
    caught: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: caught.append(args.exc_value))
    loop = asyncio.new_event_loop()
    ex = ProcessExecutor(_settings(tmp_path), "fake", workers=1)
    threads = set(threading.enumerate())
    loop.run_until_complete(ex.start())
    p = ex._procs[0]
    reader = p.readers[-1]
    fd = reader._fd
    assert not reader.closed
    loop.run_until_complete(loop.shutdown_default_executor())  # the start's helper threads
    loop.close()  # the owner is gone without stop()
    p.proc.kill()  # EOF now, with no loop to tell
    p.proc.join(10)
    reader.close()
    assert reader.closed and caught == []
    with pytest.raises(OSError):
        os.fstat(fd)  # the reader's descriptor is closed
    p.conn.close()
    assert set(threading.enumerate()) <= threads  # no reader thread, nothing else left


async def test_previews_and_product_photos_cross_the_boundary(tmp_path):
    settings = _settings(tmp_path, delay_s=0.2, steps=4)
    w, _ = await _worker(settings, 1)
    events: list = []
    try:
        r = await w.submit(_spec(w, "with previews"), listener=Listener(events.append, partials=2))
        kinds = [type(e) for e in events]
        assert kinds[:2] == [Queued, Started] and kinds.count(Partial) == 2, kinds
        partials = [e for e in events if isinstance(e, Partial)]
        assert [p.index for p in partials] == [0, 1]
        # the fake engine's previews are greys whose level is the step: in order, distinct
        levels = [p.image.getpixel((0, 0))[0] for p in partials]
        assert levels == sorted(levels) and len(set(levels)) == 2
        assert r.master is not None

        # the request's own delivery variant is encoded in the worker beside the master
        r = await w.submit(_spec(w, "webp please", output_format="webp"))
        assert list(r.variants) == [("webp", 80)]
        assert r.variants[("webp", 80)][:4] == b"RIFF"

        photo = Image.new("RGBA", (64, 64), (200, 30, 40, 255))
        sha = "b" * 64
        spec = _spec(w, "product", product_sha256=sha)
        r = await w.submit(spec, products={sha: photo})
        assert codecs.decode_master(r.master).convert("RGBA").getpixel((5, 5)) == (200, 30, 40, 255)
    finally:
        await w.stop()


async def test_stop_answers_every_request_and_ends_the_processes(tmp_path):
    settings = _settings(tmp_path, delay_s=30.0, steps=300)
    w, ex = await _worker(settings, 1)
    procs = [p.proc for p in ex._procs]
    running = asyncio.create_task(w.submit(_spec(w, "running"), deadline_s=60))
    await _until(lambda: _busy(ex) is not None)
    queued = asyncio.create_task(w.submit(_spec(w, "queued", 128), deadline_s=60))
    await asyncio.sleep(0.1)
    await asyncio.wait_for(w.stop(), 20)
    outs = await asyncio.gather(running, queued, return_exceptions=True)
    assert all(isinstance(o, (Rejected, ServiceError)) and o.status == 503 for o in outs), outs
    assert all(not p.is_alive() for p in procs)


async def test_an_input_that_kills_the_worker_process_fails_alone(tmp_path):
    """An input on which the engine takes its whole process down (os._exit, as a segfault
    would): the batch is retried in halves, so only that request fails (503 worker_lost naming
    what happened); its batch-mates get their images and the worker is restarted."""
    settings = _settings(tmp_path, crash_prompt="segv")
    settings.scheduler.max_batch_size = 4
    settings.scheduler.max_wait_ms = 5000.0  # the four below go as one batch
    w, ex = await _worker(settings, 2)
    try:
        prompts = ("ok-1", "ok-2", "segv please", "ok-3")
        outs = await asyncio.wait_for(asyncio.gather(
            *(w.submit(_spec(w, p), deadline_s=120) for p in prompts),
            return_exceptions=True), 180)
        bad = outs[2]
        assert isinstance(bad, WorkerLost) and bad.status == 503, outs
        assert bad.code == "worker_lost" and "may crash the engine" in bad.message
        for o in (outs[0], outs[1], outs[3]):
            assert not isinstance(o, BaseException), outs
            assert codecs.decode_master(o.master).size == (64, 64)
        assert sum(p.restarts for p in ex._procs) >= 2  # the workers died and came back
        await _until(lambda: ex.health().warm == 2, timeout=120)
        assert (await w.submit(_spec(w, "after"))).master is not None
    finally:
        await w.stop()


async def test_a_load_that_fails_is_retried_with_backoff_and_readiness_says_why(tmp_path):
    """The model cannot load for a while (a file it needs is being written ...): the worker
    tries again after 1 s, 2 s, ... while health says why; once the cause is gone it is ready."""
    blocker = tmp_path / "not-yet"
    blocker.write_text("model files are still being copied")
    settings = _settings(tmp_path, load_error_file=blocker)
    settings.engine.load_retries, settings.engine.load_backoff_s = 3, 1.0
    ex = ProcessExecutor(settings, "fake", workers=1)
    w = Worker(ex, settings)
    start = asyncio.create_task(w.start())
    try:
        await _until(lambda: "load try 1 of 4 failed" in (ex.health().error or ""), 120)
        h = ex.health()
        assert not h.ready and not w.ready
        assert "model files are still being copied" in h.error and "retrying in 1 s" in h.error
        blocker.unlink()  # the cause is gone: a later try loads
        await asyncio.wait_for(start, 120)
        h = ex.health()
        assert w.ready and h.ready and h.error is None and h.workers[0].restarts == 0
        assert (await w.submit(_spec(w, "loaded at last"))).master is not None
    finally:
        if not start.done():
            start.cancel()
        await w.stop()


async def test_results_are_the_same_bytes_by_shared_memory_or_by_the_pipe(tmp_path):
    """Masters and variants cross by the worker's shared-memory segment; the same renders sent
    over the pipe (segment off, or too small for the master) are byte-identical."""
    specs = [("same-1", 64, "webp"), ("same-2", 96, "png"), ("same-3", 128, "jpeg")]
    got: dict[int, list] = {}
    for shm_bytes in (64 << 20, 0, 4096):
        settings = _settings(tmp_path / str(shm_bytes))
        settings.engine.result_shm_bytes = shm_bytes
        w, ex = await _worker(settings, 1)
        try:
            assert (ex._procs[0].area is not None) == (shm_bytes > 0)
            outs = [await w.submit(_spec(w, p, size, output_format=fmt))
                    for p, size, fmt in specs]
            got[shm_bytes] = [(o.master, dict(o.variants)) for o in outs]
        finally:
            await w.stop()
        assert shm.leftover(os.getpid()) == []
    for master, variants in got[64 << 20]:
        assert isinstance(master, bytes) and len(variants) == 1
        assert all(isinstance(v, bytes) for v in variants.values())
    assert got[64 << 20] == got[0] == got[4096]


def _rendering_thread_nice(pid: int) -> int | None:
    """Niceness of the worker's thread that is inside the fake engine's sleep now, if any."""
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/wchan") as f:
                wchan = f.read()
            with open(f"/proc/{pid}/task/{task}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended meanwhile
        if "nanosleep" in wchan:
            return int(fields[16])  # stat field 19, "nice"
    return None


def test_only_batches_without_a_realtime_item_run_lowered():
    from swiftshot.runtime.process import runs_lowered

    assert [runs_lowered(rank, 5) for rank in (0, 1, 2, 3)] == [False, True, True, True]
    assert not any(runs_lowered(rank, 0) for rank in (0, 1, 2, 3))  # the setting off


async def _nice_while_rendering(pid: int, tasks: list[asyncio.Task]) -> int:
    """The niceness of the worker thread rendering now (the engine sleeps 1 s in 20 steps: the
    thread is found in its sleep); skips where the kernel shows no wait channel."""
    seen: list[int | None] = []
    await _until(lambda: seen.append(_rendering_thread_nice(pid)) or seen[-1] is not None
                 or all(t.done() for t in tasks), timeout=30)
    if seen[-1] is None:
        pytest.skip("this kernel shows no wait channel (/proc/*/wchan) to find the rendering "
                    "thread by")
    return seen[-1]


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads /proc (Linux)")
async def test_lower_class_renders_run_on_a_lowered_thread_realtime_ones_do_not(tmp_path):
    settings = _settings(tmp_path, delay_s=1.0, steps=20)
    settings.engine.lower_class_nice = 4
    w, ex = await _worker(settings, 1)
    try:
        pid = ex._procs[0].proc.pid
        base = os.getpriority(os.PRIO_PROCESS, pid)
        lowered = min(19, base + 4)
        for priority, want in (("batch", lowered), ("realtime", base), ("standard", lowered)):
            task = asyncio.create_task(w.submit(_spec(w, priority), priority=priority,
                                                deadline_s=60))
            await _until(lambda: _busy(ex) is not None)
            nice = await _nice_while_rendering(pid, [task])
            assert nice == want, f"{priority} rendered at nice {nice}, want {want}"
            r = await asyncio.wait_for(task, 60)
            assert r.master is not None and codecs.decode_master(r.master).size == (64, 64)
        # the worker's own priority is untouched (the front's realtime work keeps it)
        assert os.getpriority(os.PRIO_PROCESS, pid) == base
    finally:
        await w.stop()


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads /proc (Linux)")
async def test_a_batch_with_realtime_and_lower_class_items_renders_at_base_priority(tmp_path):
    """The scheduler merges classes of one batch key into one batch; one realtime item in it
    is enough for the whole batch to render on the worker's own thread, not the lowered one
    (the realtime request must not wait on a niced thread for the sake of its batch-mates)."""
    settings = _settings(tmp_path, delay_s=1.0, steps=20)
    settings.engine.lower_class_nice = 4
    w, ex = await _worker(settings, 1)
    try:
        pid = ex._procs[0].proc.pid
        base = os.getpriority(os.PRIO_PROCESS, pid)
        # the one worker busy: what arrives meanwhile waits in the queue, then goes as one batch
        busy = asyncio.create_task(w.submit(_spec(w, "first"), priority="standard",
                                            deadline_s=60))
        await _until(lambda: _busy(ex) is not None)
        mates = [asyncio.create_task(w.submit(_spec(w, p), priority=c, deadline_s=60))
                 for p, c in (("mate batch", "batch"), ("mate rt", "realtime"),
                              ("mate std", "standard"))]
        await _until(lambda: w.scheduler.depth()["realtime"] == 1
                     and sum(w.scheduler.depth().values()) == 3)
        await asyncio.wait_for(busy, 60)
        nice = await _nice_while_rendering(pid, mates)
        rs = await asyncio.wait_for(asyncio.gather(*mates), 60)
        assert [r.batch_size for r in rs] == [3, 3, 3]  # one batch of three classes
        assert nice == base, f"the mixed batch rendered at nice {nice}, want {base}"
    finally:
        await w.stop()


def test_opencv_runs_one_thread_for_plain_batches_and_its_default_for_product_ones(monkeypatch):
    """``engine.worker_cv2_threads``: a worker's batch without a product photo runs OpenCV on
    that many threads (its pool thread otherwise woke ~50 times per 512² miss and spun beside
    the worker's own encode); one with a product photo runs on OpenCV's default; 0 leaves the
    default everywhere. Set only when it changes; nothing while OpenCV is not loaded."""
    import sys
    import types

    from swiftshot.runtime.process import Cv2Threads

    monkeypatch.delitem(sys.modules, "cv2", raising=False)
    t = Cv2Threads(1)
    assert t.for_batch(False) is None and "cv2" not in sys.modules  # not imported for it
    calls: list[int] = []
    fake = types.SimpleNamespace(getNumThreads=lambda: 2, setNumThreads=calls.append)
    monkeypatch.setitem(sys.modules, "cv2", fake)
    assert [t.for_batch(False), t.for_batch(False), t.for_batch(True), t.for_batch(True),
            t.for_batch(False)] == [1, 1, 2, 2, 1]
    assert calls == [1, 2, 1]
    off = Cv2Threads(0)
    assert [off.for_batch(False), off.for_batch(True)] == [2, 2]
    assert calls == [1, 2, 1]  # nothing set
    assert Settings().engine.worker_cv2_threads == 1
