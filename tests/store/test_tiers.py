"""Each cache tier against the same contract, plus what only that tier promises."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from swiftshot.store.tiers import CACHE_ERRORS, CacheTier, DictTier, DiskTier, MemoryTier, RedisTier


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(params=["dict", "memory", "disk", pytest.param("redis", marks=pytest.mark.redis)])
def make_tier(request, tmp_path) -> Iterator[Callable[[], CacheTier]]:
    """A factory for one tier of each kind (Redis: a real redis-server on loopback)."""
    made: list[CacheTier] = []

    def make() -> CacheTier:
        if request.param == "dict":
            tier: CacheTier = DictTier()
        elif request.param == "memory":
            tier = MemoryTier(1 << 20)
        elif request.param == "disk":
            tier = DiskTier(tmp_path / "disk", 1 << 24)
        else:
            tier = RedisTier(request.getfixturevalue("redis_url"))
        made.append(tier)
        return tier

    yield make
    for tier in made:
        tier.close()


def test_get_put_delete(make_tier):
    tier = make_tier()
    assert isinstance(tier, CacheTier)
    assert tier.get("k1") is None
    tier.put("k1", b"\x00value-1\xff")
    tier.put("k2", b"value-2")
    assert tier.get("k1") == b"\x00value-1\xff"
    assert tier.get("k2") == b"value-2"
    tier.put("k1", b"replaced")
    assert tier.get("k1") == b"replaced"
    assert tier.delete("k1") is True
    assert tier.get("k1") is None
    assert tier.delete("k1") is False
    assert tier.get("k2") == b"value-2"


def test_purge_by_tag_removes_only_tagged_keys(make_tier):
    tier = make_tier()
    tier.put("a", b"A", tags=("product-1", "shop-9"))
    tier.put("b", b"B", tags=("product-1",))
    tier.put("c", b"C", tags=("product-2", "shop-9"))
    tier.put("d", b"D")
    assert sorted(tier.purge_tag("product-1")) == ["a", "b"]
    assert tier.get("a") is None and tier.get("b") is None
    assert tier.get("c") == b"C" and tier.get("d") == b"D"
    assert tier.purge_tag("product-1") == []
    # "a" was also in shop-9 but is gone already: only "c" is reported.
    assert tier.purge_tag("shop-9") == ["c"]
    assert tier.get("d") == b"D"
    assert tier.purge_tag("never-used") == []


def test_deleted_key_is_not_reported_by_a_later_purge(make_tier):
    tier = make_tier()
    tier.put("a", b"A", tags=("t",))
    tier.put("b", b"B", tags=("t",))
    assert tier.delete("a")
    assert tier.purge_tag("t") == ["b"]


def test_ttl_expiry_real_time(make_tier):
    tier = make_tier()
    tier.put("short", b"S", ttl=0.15)
    tier.put("long", b"L", ttl=60)
    tier.put("forever", b"F")
    assert tier.get("short") == b"S"
    time.sleep(0.3)
    assert tier.get("short") is None
    assert tier.get("long") == b"L"
    assert tier.get("forever") == b"F"


@pytest.mark.parametrize("cls", [MemoryTier, DictTier])
def test_in_process_ttl_with_fake_clock(cls):
    clock = FakeClock()
    tier = cls(1 << 20, clock=clock) if cls is MemoryTier else cls(clock=clock)
    tier.put("k", b"v", ttl=10)
    clock.t += 9.9
    assert tier.get("k") == b"v"
    clock.t += 0.2
    assert tier.get("k") is None


def test_memory_tier_is_bounded_in_bytes_and_evicts_least_recently_used():
    tier = MemoryTier(max_bytes=1000)
    for i in range(4):
        tier.put(f"k{i}", bytes([i]) * 300)  # 4 × 300 > 1000: k0 must go
    assert tier.get("k0") is None
    assert tier.current_bytes <= 1000
    assert [tier.get(f"k{i}") is not None for i in (1, 2, 3)] == [True, True, True]
    tier.get("k1")  # k1 is now the most recently used: k2 is next to go
    tier.put("k4", b"x" * 300)
    assert tier.get("k2") is None
    assert tier.get("k1") is not None and tier.get("k3") is not None and tier.get("k4") is not None
    assert tier.current_bytes == 900


def test_memory_tier_skips_a_value_bigger_than_itself():
    tier = MemoryTier(max_bytes=100)
    tier.put("small", b"s" * 50)
    tier.put("huge", b"h" * 101)
    assert tier.get("huge") is None
    assert tier.get("small") == b"s" * 50


def test_memory_tier_tag_index_does_not_grow_with_evicted_keys():
    tier = MemoryTier(max_bytes=100)
    for i in range(5000):
        tier.put(f"k{i}", b"x" * 50, tags=("t",))
    assert len(tier) == 2
    assert len(tier._tags.by_key) <= 2 * 2 + 1024 + 1
    assert sorted(tier.purge_tag("t")) == ["k4998", "k4999"]


def test_disk_tier_survives_reopening(tmp_path: Path):
    d = tmp_path / "cache"
    tier = DiskTier(d, 1 << 24)
    tier.put("k", b"persisted", tags=("p",))
    tier.put("j", b"also", tags=("p",))
    tier.close()

    reopened = DiskTier(d, 1 << 24)
    try:
        assert reopened.get("k") == b"persisted"
        assert sorted(reopened.purge_tag("p")) == ["j", "k"]  # the tag index persisted too
        assert reopened.get("j") is None
    finally:
        reopened.close()


def test_disk_tier_writes_a_large_value_in_one_call_and_reads_it_after_a_restart(
        tmp_path: Path, monkeypatch):
    # diskcache's own Disk.store iterated a BytesIO: one write per *line* of a binary value
    # (~4000 for a 1 MB master), and made two levels of folders for each new file; the tier's
    # disk writes it whole, one folder level deep, and still reads diskcache's own layout
    import diskcache

    from swiftshot.store import tiers

    writes: list[tuple[str, int]] = []
    real_write = tiers._write_new

    def counting(full_path, value):
        writes.append((full_path, len(value)))
        return real_write(full_path, value)

    monkeypatch.setattr(tiers, "_write_new", counting)
    value = (b"\n" * 3 + bytes(range(256))) * 4000  # ~1 MB, 12 000 newlines
    d = tmp_path / "cache"
    old = diskcache.Cache(str(d))  # an entry written by stock diskcache (two folder levels)
    old.set("old", value[::-1])
    old.close()
    tier = DiskTier(d, 1 << 26)
    tier.put("big", value, tags=("own",))
    tier.put("small", b"x\ny", tags=("own",))  # below min_file_size: kept in SQLite
    tier.close()
    assert [n for _, n in writes] == [len(value)]  # one call with the whole value
    assert len(Path(writes[0][0]).relative_to(d).parts) == 2  # ab/cdef….val
    reopened = DiskTier(d, 1 << 26)  # a restart
    try:
        assert reopened.get("big") == value
        assert reopened.get("small") == b"x\ny"
        assert reopened.get("old") == value[::-1]
        assert sorted(reopened.purge_tag("own")) == ["big", "small"]
        assert reopened.get("big") is None and not Path(writes[0][0]).exists()
        assert reopened.delete("old") and reopened.get("old") is None
    finally:
        reopened.close()


def test_disk_tier_records_tags_before_the_entry(tmp_path: Path, monkeypatch):
    # a write that fails (or a crash) after the tag rows leaves no untagged entry a purge
    # would miss: the rows exist, the entry does not, a purge removes nothing and says so
    tier = DiskTier(tmp_path / "cache", 1 << 24)
    try:
        def failing_set(*a, **k):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(tier._cache, "set", failing_set)
        tier.put("k", b"v" * 100, tags=("p",))
        rows = tier._db.execute("SELECT tag, key FROM tags").fetchall()
        assert rows == [("p", "k")]
        assert tier.get("k") is None
        monkeypatch.undo()
        assert tier.purge_tag("p") == []
    finally:
        tier.close()


def test_disk_tier_is_bounded(tmp_path: Path):
    tier = DiskTier(tmp_path / "cache", max_bytes=200_000)
    try:
        for i in range(60):
            tier.put(f"k{i}", bytes([i % 256]) * 10_000)
        assert tier._cache.volume() <= 400_000  # diskcache culls past size_limit (lazily)
        assert tier.get("k0") is None
        assert tier.get("k59") == bytes([59]) * 10_000
    finally:
        tier.close()


@pytest.mark.redis
def test_redis_tier_prefixes_keys_and_shares_between_clients(redis_url):
    a = RedisTier(redis_url, prefix="one:")
    b = RedisTier(redis_url, prefix="one:")
    c = RedisTier(redis_url, prefix="two:")
    try:
        a.put("k", b"shared", ttl=60, tags=("t",))
        assert b.get("k") == b"shared"  # another process' view of the same Redis
        assert c.get("k") is None
        assert a._client.exists("one:k") == 1
        assert 0 < a._client.pttl("one:tag:t") <= 60_000  # tag sets expire with their members
        assert b.purge_tag("t") == ["k"]
        assert a.get("k") is None
    finally:
        for t in (a, b, c):
            t.close()


@pytest.mark.redis
def test_redis_down_reads_as_a_miss_and_never_raises(redis_server, caplog):
    tier = RedisTier(redis_server.url, timeout_s=0.2, retry_s=0.0)
    try:
        tier.put("k", b"v", tags=("t",))
        assert tier.get("k") == b"v"
        before = CACHE_ERRORS.labels(tier="redis")._value.get()
        redis_server.stop()
        with caplog.at_level(logging.WARNING, logger="swiftshot.store.tiers"):
            assert tier.get("k") is None
            tier.put("k2", b"v2", ttl=5, tags=("t",))
            assert tier.delete("k") is False
            assert tier.purge_tag("t") == []
            assert tier.get("k2") is None
        assert tier.errors == 5
        assert CACHE_ERRORS.labels(tier="redis")._value.get() - before == 5
        failures = [r for r in caplog.records if "failed" in r.getMessage()]
        assert len(failures) == 1, "an outage is logged once, not once per call"
    finally:
        tier.close()


@pytest.mark.redis
def test_redis_tier_backs_off_then_recovers(redis_server, tmp_path):
    from swiftshot.testing.services import start_redis

    clock = FakeClock()
    tier = RedisTier(redis_server.url, timeout_s=0.2, retry_s=5.0, clock=clock)
    try:
        redis_server.stop()
        assert tier.get("k") is None
        assert tier.errors == 1
        # While backing off the tier does not even try: no error, no connect timeout.
        assert tier.get("k") is None
        assert tier.errors == 1
        again = start_redis(tmp_path / "again", port=redis_server.port)
        try:
            assert tier.get("k") is None and tier.errors == 1  # still backing off
            clock.t += 5.0
            tier.put("k", b"back")
            assert tier.get("k") == b"back"
            assert tier.errors == 1
        finally:
            again.stop()
    finally:
        tier.close()


def test_failing_disk_reads_as_a_miss_and_is_counted(tmp_path: Path, monkeypatch, caplog):
    import sqlite3

    tier = DiskTier(tmp_path / "cache", 1 << 24)
    try:
        tier.put("k", b"v")

        def broken(*_a, **_k):
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(tier._cache, "get", broken)
        monkeypatch.setattr(tier._cache, "set", broken)
        before = CACHE_ERRORS.labels(tier="disk")._value.get()
        with caplog.at_level(logging.WARNING, logger="swiftshot.store.tiers"):
            assert tier.get("k") is None
            tier.put("k2", b"v2")
            assert tier.get("k2") is None
        assert CACHE_ERRORS.labels(tier="disk")._value.get() - before == 3
        assert len([r for r in caplog.records if "disk cache tier" in r.getMessage()]) == 1
    finally:
        monkeypatch.undo()
        tier.close()
