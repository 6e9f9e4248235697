"""A miss's cache entries written by the engine worker process itself (process executor): the
master never enters the front, nothing accepted is lost when the worker's write fails or the
worker dies before it, and a purge never leaves an entry on disk without its tag rows.

Real worker processes (the test-only fake engine), a real disk tier shared by them and the
front.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time

import pytest

from swiftshot.config import Settings
from swiftshot.delivery import codecs
from swiftshot.service import Service
from swiftshot.spec import RenderSpec, variant_key
from swiftshot.store.tiers import DiskTier

pytestmark = pytest.mark.slow


def _settings(tmp_path, workers: int = 1) -> Settings:
    s = Settings(data_dir=tmp_path / "var")
    s.engine.default = "fake"
    s.engine.executor = "process"
    s.engine.workers = workers
    s.server.warmup_shapes = [(64, 64)]
    s.server.cpu_processes = 0
    s.scheduler.max_wait_ms = 1.0
    return s


async def _until(cond, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not reached"
        await asyncio.sleep(0.02)


def _spec(prompt: str, **kw) -> RenderSpec:
    return RenderSpec(engine="fake", prompt=prompt, width=64, height=64, seed=7,
                      output_format="webp", **kw)


def _tag_rows(disk_dir, key: str) -> set[str]:
    with sqlite3.connect(disk_dir / "tags.sqlite3") as db:
        return {r[0] for r in db.execute("SELECT tag FROM tags WHERE key = ?", (key,))}


async def test_the_worker_stores_a_miss_and_the_master_never_enters_the_front(tmp_path):
    settings = _settings(tmp_path)
    svc = Service.from_settings(settings)
    await svc.start()
    disk_dir = settings.cache.disk_dir
    try:
        r = await svc.render(_spec("a plain miss", tags=("sku-1",)))
        assert r.cache == "miss" and r.master is None  # nothing crossed for it
        memory = svc.cache.tiers[0]
        assert memory.get(r.key) is None  # the front holds no master ...
        webp = variant_key(r.key, "webp", svc.quality_for("webp", None), None)
        assert memory.get(webp) is not None  # ... but the variant it delivers
        assert memory.get(r.key + ":meta") is not None
        await svc.cache.flush()  # the worker's "stored"
        other = DiskTier(disk_dir, 1 << 30)  # what another process sees on disk
        try:
            master = other.get(r.key)
            assert master is not None and codecs.decode_master(master).size == (64, 64)
            assert other.get(webp) == memory.get(webp)
            assert other.get(r.key + ":meta") is not None
        finally:
            other.close()
        assert _tag_rows(disk_dir, r.key) == {"sku-1", f"master:{r.key}"}
        # a later variant reads the master from disk
        png = await svc.variant(r.key, "png", None, made=True)
        assert png is not None and png[:8] == b"\x89PNG\r\n\x1a\n"
        # a purge by tag removes what the worker wrote, from every tier
        assert await svc.purge_tag("sku-1") >= 3
        assert await svc.cache.aget(r.key) is None
        assert await svc.cache.aget(webp) is None
        assert _tag_rows(disk_dir, r.key) == set()
        # a product render too: its quality verdict crosses with the result, not its master
        assert svc._worker_store(svc.worker, _spec("x", preset="amazon"), "k") is not None
    finally:
        await svc.stop()


async def test_a_worker_killed_before_its_write_loses_nothing(tmp_path):
    """The worker answers, then blocks writing (the tag table locked by this test), and is
    SIGKILLed there: the front stores the master from the worker's segment itself; a read
    of it meanwhile waits for that instead of missing."""
    settings = _settings(tmp_path)
    svc = Service.from_settings(settings)
    await svc.start()
    disk_dir = settings.cache.disk_dir
    lock = sqlite3.connect(disk_dir / "tags.sqlite3", timeout=0, isolation_level=None)
    try:
        lock.execute("BEGIN EXCLUSIVE")  # every write of the tag table now waits
        r = await asyncio.wait_for(svc.render(_spec("killed while storing", tags=("sku-2",))),
                                   30)
        assert r.cache == "miss" and r.master is None  # answered without waiting for disk
        proc = svc.worker.executor._procs[0]
        await _until(lambda: proc.storing is not None)
        read = asyncio.ensure_future(svc.cache.aget(r.key))  # waits for the write
        await asyncio.sleep(0.2)
        assert not read.done()
        pid = proc.proc.pid
        os.kill(pid, signal.SIGKILL)
        found = await asyncio.wait_for(read, 30)  # stored by the front from the segment
        assert found is not None and codecs.decode_master(found[0]).size == (64, 64)
        lock.execute("ROLLBACK")
        await asyncio.wait_for(svc.cache.flush(), 30)  # the front's write-behind
        other = DiskTier(disk_dir, 1 << 30)
        try:
            assert other.get(r.key) == found[0]
        finally:
            other.close()
        assert _tag_rows(disk_dir, r.key) == {"sku-2", f"master:{r.key}"}
        await _until(lambda: svc.worker.executor.health().warm == 1)  # restarted
        assert proc.proc.pid != pid
        assert (await svc.render(_spec("after"))).cache == "miss"
    finally:
        lock.close()
        await svc.stop()


def test_a_purge_waits_for_a_write_in_progress_in_another_process(tmp_path):
    """Writers hold the tier's lock shared across their two steps (tag rows, then entries),
    a purge holds it exclusively: a purge between the two would delete the rows and miss
    the entry, which would then stay on disk with no tag to purge it by."""
    import threading

    a, b = DiskTier(tmp_path, 1 << 30), DiskTier(tmp_path, 1 << 30)
    try:
        purged: list[list[str]] = []
        with a.locked(exclusive=False):  # a writer between its two steps
            t = threading.Thread(target=lambda: purged.append(b.purge_tag("sku")))
            t.start()
            t.join(0.5)
            assert t.is_alive() and not purged  # waiting for the writer
            a._put_rows_then_entries([("k1", b"v" * 100, None, ("sku",))])
        t.join(30)
        assert purged == [["k1"]]  # ran after the write: found it by its row
        assert b.get("k1") is None and a.get("k1") is None
    finally:
        a.close()
        b.close()


async def test_a_long_purge_does_not_stall_the_worker(tmp_path):
    """A purge of a large tag holds the tier's lock exclusively for its whole delete loop.
    A worker waits for it only briefly (STORE_LOCK_WAIT_S), then leaves the store to the
    front, so the next miss (realtime included) is not held behind the purge; what the
    worker left is on disk with its tag rows once the purge is done."""
    settings = _settings(tmp_path)
    svc = Service.from_settings(settings)
    await svc.start()
    disk_dir = settings.cache.disk_dir
    purge = DiskTier(disk_dir, 1 << 30)
    try:
        with purge.locked(exclusive=True):  # a purge in its delete loop
            first = await asyncio.wait_for(svc.render(_spec("during a purge", tags=("sku-3",))),
                                           30)
            # the worker gave the store back at once: the next miss is served while the
            # purge still holds the lock (without the bounded wait this one waits for it)
            second = await asyncio.wait_for(svc.render(_spec("the next miss")), 30)
            assert first.cache == second.cache == "miss"
            proc = svc.worker.executor._procs[0]
            await _until(lambda: proc.storing is None, 10)  # given back, lock still held
        await asyncio.wait_for(svc.cache.flush(), 30)  # the front's write-behind, unblocked
        other = DiskTier(disk_dir, 1 << 30)
        try:
            assert codecs.decode_master(other.get(first.key)).size == (64, 64)
            assert other.get(second.key) is not None
        finally:
            other.close()
        assert _tag_rows(disk_dir, first.key) == {"sku-3", f"master:{first.key}"}
    finally:
        purge.close()
        await svc.stop()


def test_a_bounded_write_gives_up_on_a_held_lock_without_writing(tmp_path):
    a, b = DiskTier(tmp_path, 1 << 30), DiskTier(tmp_path, 1 << 30)
    try:
        with b.locked(exclusive=True):
            t0 = time.monotonic()
            assert a.put_many([("k", b"v", None, ("t",))], lock_wait_s=0.05) is False
            assert time.monotonic() - t0 < 5
            assert a.errors == 0 and a.health() is None  # busy is not a failing disk
        assert a.get("k") is None
        assert _tag_rows(tmp_path, "k") == set()
        assert a.put_many([("k", b"v", None, ("t",))], lock_wait_s=0.05) is True
        assert a.get("k") == b"v" and _tag_rows(tmp_path, "k") == {"t"}
    finally:
        a.close()
        b.close()


async def test_a_master_another_front_stored_after_this_one_started_is_a_disk_hit(tmp_path):
    """Two fronts on one disk folder (real worker processes): the second started before the
    first rendered, so the master is neither in its memory nor in its start-up list; its
    render is sent first (the disk tier is asked beside it: service._Below), the disk tier
    answers, the request is a disk hit and the render sent is stopped; the worker takes the
    next request."""
    from swiftshot import telemetry

    first = _settings(tmp_path)
    first.engine.fake.delay_s = 0.5  # the disk's read wins the race by far
    second = _settings(tmp_path)
    second.engine.fake.delay_s = 0.5
    a, b = Service.from_settings(first), Service.from_settings(second)
    await a.start()
    await b.start()
    try:
        r = await asyncio.wait_for(a.render(_spec("made by the other front")), 30)
        assert r.cache == "miss"
        await a.cache.flush()  # its worker's write is on disk
        overtaken = telemetry.RENDERS_OVERTAKEN._value.get()
        t0 = time.monotonic()
        hit = await asyncio.wait_for(b.render(_spec("made by the other front")), 30)
        assert hit.cache == "disk" and hit.key == r.key
        assert codecs.decode_master(hit.master).size == (64, 64)
        assert time.monotonic() - t0 < 0.45  # not after the render's 0.5 s
        assert telemetry.RENDERS_OVERTAKEN._value.get() == overtaken + 1
        assert (await asyncio.wait_for(b.render(_spec("next")), 30)).cache == "miss"
        assert (await b.render(_spec("made by the other front"))).cache == "memory"
    finally:
        await b.stop()
        await a.stop()
