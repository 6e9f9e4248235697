"""TieredCache: lookup order, promotion, purge across tiers, metrics, settings."""

from __future__ import annotations

import pytest

from swiftshot import telemetry
from swiftshot.config import CacheSettings
from swiftshot.store.cache import TieredCache
from swiftshot.store.tiers import DictTier, DiskTier, MemoryTier, RedisTier


def counted(tier: str, result: str) -> float:
    return telemetry.CACHE_REQUESTS.labels(tier=tier, result=result)._value.get()


class SlowDictTier(DictTier):
    blocking = True


def three_tiers() -> tuple[TieredCache, DictTier, DictTier, DictTier]:
    mem, disk, red = DictTier("memory"), SlowDictTier("disk"), SlowDictTier("redis")
    return TieredCache([mem, disk, red]), mem, disk, red


def test_hit_in_a_lower_tier_is_promoted_to_the_faster_ones():
    cache, mem, disk, red = three_tiers()
    red.put("k", b"v")
    before = {(t, r): counted(t, r) for t in ("memory", "disk", "redis") for r in ("hit", "miss")}
    assert cache.get("k") == (b"v", "redis")
    assert mem.get("k") == b"v" and disk.get("k") == b"v"
    assert cache.get("k") == (b"v", "memory")
    delta = {k: counted(*k) - v for k, v in before.items()}
    assert delta == {("memory", "miss"): 1, ("disk", "miss"): 1, ("redis", "hit"): 1,
                     ("memory", "hit"): 1, ("disk", "hit"): 0, ("redis", "miss"): 0}


def test_miss_everywhere_and_put_writes_every_tier():
    cache, mem, disk, red = three_tiers()
    assert cache.get("nope") is None
    cache.put("k", b"v", ttl=30, tags=("p",))
    assert [t.get("k") for t in (mem, disk, red)] == [b"v"] * 3
    assert cache.delete("k") is True
    assert [t.get("k") for t in (mem, disk, red)] == [None] * 3
    assert cache.delete("k") is False


def test_purge_reaches_copies_promoted_without_tags():
    cache, mem, disk, red = three_tiers()
    red.put("k", b"v", tags=("product-7",))
    red.put("other", b"o", tags=("product-8",))
    assert cache.get("k") == (b"v", "redis")  # now copied into memory and disk, untagged there
    assert cache.purge_tag("product-7") == 1
    assert [t.get("k") for t in (mem, disk, red)] == [None] * 3
    assert red.get("other") == b"o"


async def test_aget_reads_memory_inline_and_lower_tiers_in_a_thread():
    cache, mem, disk, red = three_tiers()
    disk.put("k", b"v")
    assert await cache.aget("k") == (b"v", "disk")
    assert mem.get("k") == b"v"
    assert red.get("k") is None  # promotion goes up, never down
    assert await cache.aget("k") == (b"v", "memory")
    assert await cache.aget("absent") is None
    await cache.aput("n", b"new", ttl=5, tags=("t",))
    assert [t.get("n") for t in (mem, disk, red)] == [b"new"] * 3
    assert await cache.apurge_tag("t") == 1
    assert await cache.aget("n") is None
    await cache.aput("d", b"gone soon")
    assert await cache.adelete("d") is True
    assert [t.get("d") for t in (mem, disk, red)] == [None] * 3


async def test_aget_of_a_memory_hit_never_touches_the_slow_tiers():
    cache, mem, disk, red = three_tiers()
    await cache.aput("k", b"v")
    disk.gets = red.gets = 0
    for _ in range(10):
        assert await cache.aget("k") == (b"v", "memory")
    assert disk.gets == 0 and red.gets == 0


class GatedTier(SlowDictTier):
    """A disk-like tier whose writes wait until the test opens the gate."""

    def __init__(self, name: str) -> None:
        import threading

        super().__init__(name)
        self.gate = threading.Event()

    def put(self, key, value, ttl=None, tags=()):
        assert self.gate.wait(30), "the test never opened the gate"
        super().put(key, value, ttl, tags)


async def test_write_behind_answers_before_the_disk_and_a_purge_never_loses_to_it():
    import asyncio

    mem, disk = DictTier("memory"), GatedTier("disk")
    cache = TieredCache([mem, disk])
    try:
        # the request path returns with the memory tier written and the disk write pending
        await asyncio.wait_for(cache.aput("k", b"v", tags=("t",), behind=True), 5)
        assert mem.get("k") == b"v" and disk.get("k") is None
        assert await cache.aget("k") == (b"v", "memory")
        # a purge queued behind the pending write waits for it, so nothing comes back later
        purge = asyncio.ensure_future(cache.apurge_tag("t"))
        await asyncio.sleep(0.05)
        assert not purge.done()
        disk.gate.set()
        assert await asyncio.wait_for(purge, 10) == 1
        assert mem.get("k") is None and disk.get("k") is None
        # the server's stop waits for writes still queued
        await cache.aput("later", b"w", behind=True)
        await cache.aclose()
        assert disk.get("later") == b"w"
    finally:
        disk.gate.set()
        cache.close()


async def test_without_a_memory_tier_nothing_is_written_behind():
    disk = GatedTier("disk")
    disk.gate.set()
    cache = TieredCache([disk])
    await cache.aput("k", b"v", behind=True)
    assert disk.get("k") == b"v"
    cache.close()


def test_ttl_for_categories():
    cache = TieredCache([DictTier()], ttl_s={"preview": 60, "adhoc": 3600}, default_category="adhoc")
    assert cache.ttl_for("preview") == 60
    assert cache.ttl_for("adhoc") == 3600
    assert cache.ttl_for("unknown") == 3600
    assert TieredCache([DictTier()]).ttl_for("anything") is None


def test_tier_names_must_be_distinct():
    with pytest.raises(ValueError, match="distinct"):
        TieredCache([DictTier("memory"), DictTier("memory")])


@pytest.mark.redis
def test_from_settings_builds_memory_disk_redis_in_order(tmp_path, redis_url):
    settings = CacheSettings(memory_bytes=1 << 20, disk_dir=tmp_path / "c", redis_url=redis_url,
                             redis_prefix="shop-a:")
    cache = TieredCache.from_settings(settings)
    try:
        assert [type(t) for t in cache.tiers] == [MemoryTier, DiskTier, RedisTier]
        assert cache.ttl_for("catalog") == settings.ttl_s["catalog"]
        cache.put("k", b"v", ttl=60, tags=("p",))
        assert cache.tiers[2]._client.exists("shop-a:k") == 1
        # A second process (fresh memory tier, same disk and Redis) sees the entry.
        other = TieredCache.from_settings(settings.model_copy(update={"disk_dir": tmp_path / "d"}))
        try:
            assert other.get("k") == (b"v", "redis")
            assert other.get("k") == (b"v", "memory")
            assert other.purge_tag("p") == 1
        finally:
            other.close()
        assert cache.tiers[2].get("k") is None
    finally:
        cache.close()


def test_from_settings_can_switch_tiers_off(tmp_path):
    cache = TieredCache.from_settings(CacheSettings(memory_bytes=0, disk_dir=None))
    assert cache.tiers == []
    assert cache.get("k") is None
    only_disk = TieredCache.from_settings(CacheSettings(memory_bytes=0, disk_dir=tmp_path / "c"))
    try:
        assert [t.name for t in only_disk.tiers] == ["disk"]
    finally:
        only_disk.close()


@pytest.mark.redis
async def test_a_dead_redis_never_fails_the_request_path(tmp_path, redis_server):
    settings = CacheSettings(memory_bytes=1 << 20, disk_dir=tmp_path / "c",
                             redis_url=redis_server.url, redis_timeout_s=0.2)
    cache = TieredCache.from_settings(settings)
    try:
        await cache.aput("k", b"v", ttl=60, tags=("p",))
        redis_server.stop()
        assert await cache.aget("k") == (b"v", "memory")
        assert await cache.aget("absent") is None
        await cache.aput("k2", b"v2", ttl=60, tags=("p",))  # memory and disk still take it
        assert await cache.aget("k2") == (b"v2", "memory")
        assert cache.tiers[1].get("k2") == b"v2"
        assert await cache.apurge_tag("p") == 2  # what memory and disk hold is still purged
    finally:
        cache.close()


async def test_a_miss_below_memory_is_told_on_the_loop_by_the_disk_probe(tmp_path, monkeypatch):
    # the disk tier's probe answers "not here" without a thread hop; a key another process
    # (another DiskTier on the same folder) or an earlier run wrote is still found, by the thread
    import asyncio

    hops: list[str] = []
    real = asyncio.to_thread

    async def counting(fn, *a, **k):
        hops.append(getattr(fn, "__name__", "?"))
        return await real(fn, *a, **k)

    monkeypatch.setattr(asyncio, "to_thread", counting)
    disk = DiskTier(tmp_path / "cache", 1 << 24)
    other = DiskTier(tmp_path / "cache", 1 << 24)  # another process of the machine
    cache = TieredCache([MemoryTier(1 << 20), disk])
    try:
        misses = counted("disk", "miss")
        assert await cache.aget("absent") is None
        assert hops == [] and counted("disk", "miss") - misses == 1
        other.put("theirs", b"written elsewhere", tags=("t",))
        assert disk.probe("theirs") is True
        assert await cache.aget("theirs") == (b"written elsewhere", "disk")
        assert hops == ["_get_blocking"]
        assert await cache.aget("theirs") == (b"written elsewhere", "memory")  # promoted
        # an expired row: the probe says "may be", get() says miss
        other.put("stale", b"old", ttl=0.01)
        await asyncio.sleep(0.05)
        assert disk.probe("stale") is True and await cache.aget("stale") is None
    finally:
        other.close()
        cache.close()
    reopened = DiskTier(tmp_path / "cache", 1 << 24)  # a restart
    try:
        assert reopened.probe("theirs") is True and reopened.probe("absent") is False
    finally:
        reopened.close()
    assert reopened.probe("theirs") is None  # closed: cannot tell


async def test_a_probe_that_cannot_tell_falls_back_to_the_thread(tmp_path, monkeypatch):
    import asyncio

    disk = DiskTier(tmp_path / "cache", 1 << 24)
    cache = TieredCache([MemoryTier(1 << 20), disk])
    hops: list[int] = []
    real = asyncio.to_thread

    async def counting(fn, *a, **k):
        hops.append(1)
        return await real(fn, *a, **k)

    monkeypatch.setattr(asyncio, "to_thread", counting)
    try:
        with disk._probe_lock:  # another thread probing at this moment
            assert disk.probe("k") is None
            assert await cache.aget("k") is None
        assert hops == [1]
        disk.put("k", b"v")
        assert disk._probe_db is None  # never opened: it was busy the first time
        monkeypatch.setattr(disk, "directory", tmp_path / "elsewhere")  # cannot open now
        assert disk.probe("k") is None
        assert await cache.aget("k") == (b"v", "disk")
    finally:
        cache.close()


async def test_with_redis_below_the_disk_a_miss_still_asks_redis(tmp_path):
    # a tier without a probe (Redis, another machine's writes) is always asked
    red = SlowDictTier("redis")
    red.put("k", b"from redis")
    cache = TieredCache([MemoryTier(1 << 20), DiskTier(tmp_path / "cache", 1 << 24), red])
    try:
        assert await cache.aget("k") == (b"from redis", "redis")
    finally:
        cache.close()


async def test_a_miss_writes_go_behind_as_one_job_into_two_disk_transactions(tmp_path,
                                                                              monkeypatch):
    """aput_many: memory has every entry at once; the disk gets them in one background job,
    as DiskTier.put_many — every tag row, then every entry — readable after a restart and
    found by a purge of their tag; a tier without put_many gets one put each."""
    disk = DiskTier(tmp_path / "cache", 1 << 24)
    jobs: list[int] = []
    real = DiskTier.put_many

    def counting(self, entries):  # type: ignore[no-untyped-def]
        jobs.append(len(entries))
        return real(self, entries)

    monkeypatch.setattr(DiskTier, "put_many", counting)
    mem, plain = MemoryTier(1 << 22), SlowDictTier("other")
    cache = TieredCache([mem, disk, plain])
    master = bytes(range(256)) * 4096  # 1 MB: a file of its own
    entries = [("k.meta", b"{}", 60.0, ("t", "own:k")), ("k", master, 60.0, ("t", "own:k")),
               ("k.webp", b"RIFF", 60.0, ("t", "own:k"))]
    try:
        await cache.aput_many(entries, behind=True)
        assert [mem.get(k) for k, *_ in entries] == [e[1] for e in entries]
        await cache.flush()
        assert jobs == [3]
        assert [plain.get(k) for k, *_ in entries] == [e[1] for e in entries]
        reopened = DiskTier(tmp_path / "cache", 1 << 24)
        assert [reopened.get(k) for k, *_ in entries] == [e[1] for e in entries]
        assert sorted(reopened.purge_tag("own:k")) == ["k", "k.meta", "k.webp"]
        assert disk.get("k") is None and disk.probe("k") is False
        reopened.close()
    finally:
        cache.close()


def test_disk_put_many_on_a_failing_disk_counts_the_error_and_raises_nothing(tmp_path):
    disk = DiskTier(tmp_path / "cache", 1 << 24)
    disk._db.close()  # every statement on the tag table now fails, as on a broken disk
    before = disk.errors
    disk.put_many([("a", b"1", None, ("t",)), ("b", b"2", None, ())])
    assert disk.errors == before + 1 and disk.health() is not None
    assert disk.get("a") is None  # no entry went in without its tag rows
    disk._cache.close()


async def test_a_write_made_elsewhere_holds_reads_and_purges_until_it_settles():
    """``track``: an engine worker writes a miss's entries to the disk tier itself. Until it
    says so, a read of those keys and a purge wait; when it could not (it hands the master
    back), the entries are written here. No task is started per tracked write."""
    import asyncio

    mem, disk = DictTier("memory"), SlowDictTier("disk")
    cache = TieredCache([mem, disk])
    loop = asyncio.get_running_loop()
    written = loop.create_future()
    tasks = len(asyncio.all_tasks())
    cache.track(written, ["k", "k:meta"], lambda master: [("k", master, None, ("t",))])
    assert len(asyncio.all_tasks()) == tasks
    read = asyncio.ensure_future(cache.aget("k"))
    purge = asyncio.ensure_future(cache.apurge_tag("t"))
    await asyncio.sleep(0.02)
    assert not read.done() and not purge.done()
    written.set_result(b"master")  # the worker could not write: the front does
    assert await asyncio.wait_for(read, 5) == (b"master", "memory")
    assert await asyncio.wait_for(purge, 5) == 1
    assert mem.get("k") is None and disk.get("k") is None
    # written by the worker (None): settled at once, nothing written here
    done = loop.create_future()
    cache.track(done, ["j"], lambda master: [("j", master, None, ())])
    done.set_result(None)
    await asyncio.wait_for(cache.flush(), 5)
    assert cache.get("j") is None and not cache._elsewhere
    cache.close()
