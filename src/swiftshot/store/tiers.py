"""Cache tiers: one key → bytes store each, behind one small protocol.

Every tier keeps a tag index beside its values so that ``purge_tag("product-42")`` removes every
image made for that product, whichever tier holds it. Values are opaque bytes (encoded masters
and variants); keys are content hashes, so an entry never goes stale, it only gets purged or
expires.

``blocking`` says whether a call may touch disk or the network; :class:`TieredCache` calls
non-blocking tiers inline on the event loop and the others from a thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import cachetools
import diskcache
import redis
from prometheus_client import Counter

from swiftshot import telemetry

log = logging.getLogger(__name__)

CACHE_ERRORS = Counter(
    "swiftshot_cache_errors_total", "Cache tier calls that failed and were read as a miss.",
    ["tier"], registry=telemetry.REGISTRY)


@runtime_checkable
class CacheTier(Protocol):
    name: str
    """"memory" | "disk" | "redis" (the label of the tier in metrics)."""
    blocking: bool
    """True when a call may wait on disk or the network (so it must not run on the event loop)."""

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, value: bytes, ttl: float | None = None,
            tags: Sequence[str] = ()) -> None: ...

    def delete(self, key: str) -> bool: ...

    def purge_tag(self, tag: str) -> list[str]:
        """Remove every entry tagged ``tag``; return the keys removed."""
        ...

    def close(self) -> None: ...


class _TagIndex:
    """tag → keys and key → tags, for the in-process tiers. Not thread-safe on its own."""

    def __init__(self) -> None:
        self.by_tag: dict[str, set[str]] = {}
        self.by_key: dict[str, tuple[str, ...]] = {}

    def add(self, key: str, tags: Sequence[str]) -> None:
        self.discard(key)
        if not tags:
            return
        self.by_key[key] = tuple(tags)
        for tag in tags:
            self.by_tag.setdefault(tag, set()).add(key)

    def discard(self, key: str) -> None:
        for tag in self.by_key.pop(key, ()):
            keys = self.by_tag.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self.by_tag[tag]

    def pop_tag(self, tag: str) -> set[str]:
        keys = self.by_tag.pop(tag, set())
        for key in keys:
            self.discard(key)
        return keys

    def prune(self, alive: Callable[[str], bool]) -> None:
        # Entries evicted by LRU or TTL never tell us; drop their index rows now and then so the
        # index stays the size of the cache.
        for key in [k for k in self.by_key if not alive(k)]:
            self.discard(key)


class DictTier:
    """In-memory fake for unit tests: a dict with TTLs and tags, clock injectable."""

    blocking = False

    def __init__(self, name: str = "memory", clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._clock = clock
        self._data: dict[str, tuple[bytes, float]] = {}
        self._tags = _TagIndex()
        self._lock = threading.Lock()
        self.gets = 0
        self.puts = 0

    def get(self, key: str) -> bytes | None:
        with self._lock:
            self.gets += 1
            item = self._data.get(key)
            if item is None:
                return None
            if self._clock() >= item[1]:
                del self._data[key]
                self._tags.discard(key)
                return None
            return item[0]

    def put(self, key: str, value: bytes, ttl: float | None = None,
            tags: Sequence[str] = ()) -> None:
        with self._lock:
            self.puts += 1
            expires = math.inf if ttl is None else self._clock() + ttl
            self._data[key] = (bytes(value), expires)
            self._tags.add(key, tags)

    def delete(self, key: str) -> bool:
        with self._lock:
            self._tags.discard(key)
            return self._data.pop(key, None) is not None

    def purge_tag(self, tag: str) -> list[str]:
        with self._lock:
            keys = self._tags.pop_tag(tag)
            return sorted(k for k in keys if self._data.pop(k, None) is not None)

    def close(self) -> None:
        pass


class MemoryTier:
    """In-process LRU bounded in bytes, with a TTL per entry. Thread-safe."""

    name = "memory"
    blocking = False

    def __init__(self, max_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        if max_bytes <= 0:
            raise ValueError(f"MemoryTier max_bytes must be > 0; got {max_bytes}")
        self.max_bytes = max_bytes
        # Values are (bytes, ttl); TLRU gives LRU eviction plus a per-entry expiry.
        self._cache: cachetools.TLRUCache[str, tuple[bytes, float | None]] = cachetools.TLRUCache(
            maxsize=max_bytes, ttu=_ttu, timer=clock, getsizeof=lambda v: len(v[0]) or 1)
        self._tags = _TagIndex()
        self._lock = threading.Lock()

    @property
    def current_bytes(self) -> int:
        with self._lock:
            return int(self._cache.currsize)

    def __len__(self) -> int:
        with self._lock:
            return len(self._cache)

    def get(self, key: str) -> bytes | None:
        with self._lock:
            item = self._cache.get(key)
            return None if item is None else item[0]

    def put(self, key: str, value: bytes, ttl: float | None = None,
            tags: Sequence[str] = ()) -> None:
        if len(value) > self.max_bytes:
            return  # bigger than the whole tier: keeping it would evict everything else
        with self._lock:
            self._cache[key] = (bytes(value), ttl)
            self._tags.add(key, tags)
            if len(self._tags.by_key) > 2 * len(self._cache) + 1024:
                self._tags.prune(lambda k: k in self._cache)

    def delete(self, key: str) -> bool:
        with self._lock:
            self._tags.discard(key)
            return self._cache.pop(key, None) is not None

    def purge_tag(self, tag: str) -> list[str]:
        with self._lock:
            keys = self._tags.pop_tag(tag)
            return sorted(k for k in keys if self._cache.pop(k, None) is not None)

    def close(self) -> None:
        with self._lock:
            self._cache.clear()
            self._tags = _TagIndex()


def _ttu(_key: str, value: tuple[bytes, float | None], now: float) -> float:
    ttl = value[1]
    return math.inf if ttl is None else now + ttl


class _BytesDisk(diskcache.Disk):
    """diskcache's ``Disk`` that writes a large ``bytes`` value to its file in one call.

    ``Disk.store`` wraps such a value in ``io.BytesIO`` and writes it by iterating it — which
    yields *lines*: a 1 MB lossless master (random-looking bytes, a newline every ~256) went
    to disk in ~4000 ``write`` calls, ~1.5 ms of Python holding the front's GIL on every miss
    (py-spy of the write-behind thread, docs/PERFORMANCE.md 2026-12-04). The file, its name
    and the row are exactly diskcache's (a hit after a restart reads it as before); only the
    loop is gone. As before, the file is complete before the row that points at it commits, so
    a reader never sees half of it."""

    def store(self, value, read, key=diskcache.core.UNKNOWN):  # type: ignore[no-untyped-def]
        if type(value) is bytes and len(value) >= self.min_file_size:
            filename, full_path = self.filename(key, value)
            _write_new(full_path, value)
            return len(value), diskcache.core.MODE_BINARY, filename, None
        return super().store(value, read, key=key)

    def filename(self, key=diskcache.core.UNKNOWN, value=diskcache.core.UNKNOWN):  # type: ignore[no-untyped-def]
        """One level of 256 folders (``ab/cdef….val``) instead of diskcache's two of 256 each:
        with two, nearly every new file made a new folder (and the cull removed it again),
        ~0.9 ms of ext4 ``mkdir`` per file on the dev VM — most of a miss's write-behind CPU
        (docs/PERFORMANCE.md, 2026-12-04). Entries are found by the file name their row
        holds, so files written under the old layout read and cull as before."""
        hex_name = os.urandom(16).hex()
        filename = os.path.join(hex_name[:2], hex_name[2:] + ".val")
        return filename, os.path.join(self._directory, filename)


def _write_new(full_path: str, value: bytes) -> None:
    """Create ``full_path`` with ``value`` in one write, making its folder only when it is
    missing (diskcache's ``_write`` calls ``makedirs`` before every file). Retried as diskcache
    does: another process may remove an emptied folder between the two steps."""
    for attempt in range(10):
        try:
            with open(full_path, "xb") as f:
                f.write(value)
            return
        except FileNotFoundError:
            if attempt == 9:
                raise
            os.makedirs(os.path.dirname(full_path), exist_ok=True)


class LockBusy(Exception):
    """``tags.lock`` was not had within the wait asked (:meth:`DiskTier.locked`)."""


class DiskTier:
    """diskcache on local disk: survives restarts, shared by the processes of one machine.

    diskcache tags an entry with one tag at most, so tags live in a small SQLite table beside
    the cache (``tags.sqlite3``, WAL): (tag, key) rows, indexed both ways.

    Several processes write it (the front's write-behind, and the engine workers, which store
    a miss's master themselves: runtime/process.py). A write puts its tag rows in, then its
    entries — two databases, two transactions — so a removal (``delete``, ``purge_tag``)
    running between the two would take the rows and miss the entry, leaving an entry no purge
    finds. So writers hold a shared ``flock`` on ``tags.lock`` across both steps and removals an
    exclusive one: a removal runs before or after a write, never inside it. The kernel drops
    the lock of a process that dies, so a killed writer never blocks a purge.
    """

    name = "disk"
    blocking = True

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.errors = 0
        self._logged = False
        self._db_lock = threading.Lock()
        self._failing: str | None = None
        """The last write error, until a write succeeds again (``health``)."""
        self._cache: diskcache.Cache | None = None
        self._db: sqlite3.Connection | None = None
        self._probe_db: sqlite3.Connection | None = None
        self._probe_lock = threading.Lock()
        self._probe_off = False
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._cache = diskcache.Cache(str(self.directory), size_limit=max_bytes,
                                          disk=_BytesDisk)
            self._db = sqlite3.connect(str(self.directory / "tags.sqlite3"), timeout=10,
                                       check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            # as diskcache's own cache.db: in WAL mode a commit survives a crash of the
            # process without an fsync each (only a power cut may lose the last ones); FULL
            # cost an fsync per commit on every miss's write-behind
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS tags (tag TEXT NOT NULL, key TEXT "
                             "NOT NULL, PRIMARY KEY (tag, key)) WITHOUT ROWID")
            self._db.execute("CREATE INDEX IF NOT EXISTS tags_by_key ON tags (key)")
            self._lock_path = str(self.directory / "tags.lock")
        except _DISK_ERRORS as e:
            # A read-only or full cache folder must not stop the server: the tier is off
            # (every read a miss), /readyz says degraded, the other tiers serve.
            if self._cache is not None:
                self._cache.close()
            self._cache, self._db = None, None
            self._failed("open", e)

    @contextlib.contextmanager
    def locked(self, exclusive: bool, wait_s: float | None = None) -> Iterator[None]:
        """Hold ``tags.lock`` (class docstring): shared for a write, exclusive for a removal.
        A descriptor of its own per call, so two threads of one process exclude each other
        as two processes do (``flock`` is per open file). With ``wait_s``, give up with
        :class:`LockBusy` when the lock is not had within that many seconds (a purge of a
        large tag holds it exclusively for its whole delete loop)."""
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            op = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
            if wait_s is None:
                fcntl.flock(fd, op)
            else:
                deadline = time.monotonic() + wait_s
                while True:
                    try:
                        fcntl.flock(fd, op | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() >= deadline:
                            raise LockBusy(self._lock_path) from None
                        time.sleep(0.001)
            yield
        finally:
            os.close(fd)  # releases the lock

    def health(self) -> str | None:
        """None when healthy; else what is wrong (for /readyz)."""
        if self._cache is None:
            return f"off: the cache folder could not be opened ({self._failing})"
        if self._failing:
            return f"writes failing: {self._failing}"
        return None

    # A full or failing disk must not fail requests: reads and writes count the error, log it
    # once, and act as a miss. delete and purge_tag raise instead, so an operator who asked
    # for a removal learns that it did not happen.

    def probe(self, key: str) -> bool | None:
        """Whether ``key`` *may* be here, without blocking: False only when the cache's index
        has no row for it (so :meth:`get` would miss), True when it has one (a hit or an
        expired row: ask :meth:`get`), None when it cannot tell at once (the database busy,
        another thread probing, the tier off or failing).

        One indexed ``SELECT`` on a read-only connection of its own that never waits for a
        lock (``timeout=0``), on the same ``cache.db`` every process of the machine writes, so
        it is as current as :meth:`get` across processes and restarts. This lets a miss —
        the common case below the memory tier — be told on the event loop in tens of
        microseconds instead of a hop to a thread and back (docs/PERFORMANCE.md,
        2026-12-04); a possible hit still goes to the thread, which reads the file."""
        if self._cache is None or self._probe_off:
            return None
        if not self._probe_lock.acquire(blocking=False):
            return None
        try:
            db = self._probe_db
            if db is None:
                uri = (self.directory / diskcache.core.DBNAME).resolve().as_uri() + "?mode=ro"
                db = self._probe_db = sqlite3.connect(uri, uri=True, timeout=0,
                                                      isolation_level=None,
                                                      check_same_thread=False)
            db_key, raw = self._cache.disk.put(key)
            row = db.execute("SELECT 1 FROM Cache WHERE key = ? AND raw = ? LIMIT 1",
                             (db_key, raw)).fetchone()
            return row is not None
        except sqlite3.OperationalError:
            return None  # busy (or not readable yet): the thread's get decides
        except _DISK_ERRORS as e:
            self._probe_off = True  # e.g. a schema this code does not know: get() only
            log.warning("disk cache tier %s: probe off (%s); every miss asks get()",
                        self.directory, e)
            return None
        finally:
            self._probe_lock.release()

    def master_keys(self) -> set[str]:
        """The keys of the masters on disk now: 64 hex digits, no ``.`` or ``:`` (a variant's
        key and a master's metadata key add them: ``spec.variant_key``), expired rows
        included. One scan of the index (a server's start: Service's hint of which misses
        may be disk hits); an empty set when it cannot be read."""
        if self._cache is None:
            return set()
        uri = (self.directory / diskcache.core.DBNAME).resolve().as_uri() + "?mode=ro"
        try:
            db = sqlite3.connect(uri, uri=True, timeout=1)
            try:
                return {r[0] for r in db.execute(
                    "SELECT key FROM Cache WHERE raw = 1 AND typeof(key) = 'text' AND "
                    "length(key) = 64 AND instr(key, '.') = 0 AND instr(key, ':') = 0")}
            finally:
                db.close()
        except _DISK_ERRORS as e:
            log.warning("disk cache tier %s: could not list its masters (%s)", self.directory, e)
            return set()

    def get(self, key: str) -> bytes | None:
        if self._cache is None:
            return None
        try:
            value = self._cache.get(key, default=None, retry=True)
        except _DISK_ERRORS as e:
            self._failed("get", e)
            return None
        return value if isinstance(value, bytes) else None

    def put(self, key: str, value: bytes, ttl: float | None = None,
            tags: Sequence[str] = ()) -> None:
        self.put_many([(key, value, ttl, tags)])

    def put_many(self, entries: Sequence[tuple[str, bytes, float | None, Sequence[str]]],
                 lock_wait_s: float | None = None) -> bool:
        """:meth:`put` of several entries (a miss's meta, master and variants) in two
        transactions instead of two per entry: every tag row first, then every entry, so an
        entry is never on disk without the rows a purge finds it by (a crash in between
        leaves tag rows for missing keys, which a purge skips; a removal cannot run in
        between: :meth:`locked`). True when every entry was written; False when the tier is
        off or the write failed (counted and logged as every tier error is), or, with
        ``lock_wait_s``, when a removal held the lock that long (nothing written, not an
        error: an engine worker passes it so that a long purge never stalls the worker;
        the front then stores the entries itself, behind the answer)."""
        if self._cache is None or self._db is None:
            return False
        try:
            with self.locked(exclusive=False, wait_s=lock_wait_s):
                self._put_rows_then_entries(entries)
        except LockBusy:
            return False
        except _DISK_ERRORS as e:
            self._failed("put", e)
            return False
        self._writes_again()
        return True

    def _put_rows_then_entries(
            self, entries: Sequence[tuple[str, bytes, float | None, Sequence[str]]]) -> None:
        assert self._cache is not None and self._db is not None
        rows = [(t, key) for key, _, _, tags in entries for t in tags]
        if rows:
            with self._db_lock:
                self._db.execute("BEGIN")
                try:
                    self._db.executemany("INSERT OR IGNORE INTO tags (tag, key) VALUES "
                                         "(?, ?)", rows)
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
        with self._cache.transact(retry=True):
            for key, value, ttl, _ in entries:
                self._cache.set(key, bytes(value), expire=ttl, retry=True)

    def _writes_again(self) -> None:
        """A write went through: if writes had been failing, say that they no longer do."""
        if self._failing is not None:
            log.warning("disk cache tier %s writes again", self.directory)
            self._failing, self._logged = None, False

    def _failed(self, op: str, exc: Exception) -> None:
        CACHE_ERRORS.labels(tier=self.name).inc()
        if op != "get":
            self._failing = f"{op}: {type(exc).__name__}: {exc}"[:300]
        self.errors += 1
        if not self._logged:
            self._logged = True
            log.warning("disk cache tier %s failed on %s (%s); treating it as a miss",
                        self.directory, op, exc)

    def delete(self, key: str) -> bool:
        if self._cache is None or self._db is None:
            return False
        with self.locked(exclusive=True):
            with self._db_lock:
                self._db.execute("DELETE FROM tags WHERE key = ?", (key,))
            return bool(self._cache.delete(key, retry=True))

    def purge_tag(self, tag: str) -> list[str]:
        if self._cache is None or self._db is None:
            return []
        with self.locked(exclusive=True):
            with self._db_lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    keys = [r[0] for r in self._db.execute("SELECT key FROM tags WHERE tag = ?",
                                                           (tag,))]
                    self._db.execute("DELETE FROM tags WHERE tag = ?", (tag,))
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            return sorted(k for k in keys if self._cache.delete(k, retry=True))

    def close(self) -> None:
        with self._probe_lock:
            self._probe_off = True
            if self._probe_db is not None:
                self._probe_db.close()
                self._probe_db = None
        if self._cache is not None:
            self._cache.close()
        with self._db_lock:
            if self._db is not None:
                self._db.close()


_DISK_ERRORS = (OSError, sqlite3.Error, diskcache.Timeout)


class RedisTier:
    """The shared tier: Redis, with tags as sets ``{prefix}tag:{tag}`` of keys.

    Redis is optional infrastructure, so its failures never fail a request: a failed call is
    counted (``swiftshot_cache_errors_total{tier="redis"}``), logged once per outage, and read
    as a miss. After a failure the tier stays quiet for ``retry_s`` so a dead Redis does not
    add a connect timeout to every request.
    """

    name = "redis"
    blocking = True

    def __init__(self, url: str, prefix: str = "swiftshot:", *, timeout_s: float = 0.25,
                 retry_s: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.prefix = prefix
        self.retry_s = retry_s
        self._clock = clock
        self._client = redis.Redis.from_url(url, socket_timeout=timeout_s,
                                            socket_connect_timeout=timeout_s)
        self._down_until = 0.0
        self._outage = False
        self._lock = threading.Lock()
        self.errors = 0

    def _k(self, key: str) -> str:
        return self.prefix + key

    def _tag(self, tag: str) -> str:
        return f"{self.prefix}tag:{tag}"

    def _available(self) -> bool:
        return self._clock() >= self._down_until

    def _failed(self, op: str, exc: Exception) -> None:
        CACHE_ERRORS.labels(tier=self.name).inc()
        with self._lock:
            self.errors += 1
            self._down_until = self._clock() + self.retry_s
            first = not self._outage
            self._outage = True
        if first:
            log.warning("redis cache tier %s failed on %s (%s); treating it as a miss and "
                        "retrying every %.1fs", self.url, op, exc, self.retry_s)

    def _ok(self) -> None:
        if self._outage:
            with self._lock:
                self._outage = False
            log.warning("redis cache tier %s is answering again", self.url)

    def get(self, key: str) -> bytes | None:
        if not self._available():
            return None
        try:
            value = self._client.get(self._k(key))
        except redis.RedisError as e:
            self._failed("get", e)
            return None
        self._ok()
        return value if isinstance(value, bytes) else None

    def put(self, key: str, value: bytes, ttl: float | None = None,
            tags: Sequence[str] = ()) -> None:
        if not self._available():
            return
        px = None if ttl is None else max(1, int(ttl * 1000))
        try:
            pipe = self._client.pipeline(transaction=True)
            pipe.set(self._k(key), value, px=px)
            for tag in tags:
                # A tag set lives as long as its longest-lived member, so sets of expired
                # entries do not pile up (NX then GT: set a first expiry, then only extend it).
                pipe.sadd(self._tag(tag), key)
                if px is None:
                    pipe.persist(self._tag(tag))
                else:
                    pipe.pexpire(self._tag(tag), px, nx=True)
                    pipe.pexpire(self._tag(tag), px, gt=True)
            pipe.execute()
        except redis.RedisError as e:
            self._failed("put", e)
            return
        self._ok()

    def delete(self, key: str) -> bool:
        if not self._available():
            return False
        try:
            n = self._client.delete(self._k(key))
        except redis.RedisError as e:
            self._failed("delete", e)
            return False
        self._ok()
        return bool(n)

    def purge_tag(self, tag: str) -> list[str]:
        if not self._available():
            return []
        try:
            members = self._client.smembers(self._tag(tag))
            keys = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)
            removed: list[str] = []
            if keys:
                pipe = self._client.pipeline(transaction=True)
                for k in keys:
                    pipe.delete(self._k(k))
                removed = [k for k, n in zip(keys, pipe.execute(), strict=True) if n]
            self._client.delete(self._tag(tag))
        except redis.RedisError as e:
            self._failed("purge_tag", e)
            return []
        self._ok()
        return removed

    def close(self) -> None:
        try:
            self._client.close()
        except redis.RedisError:  # pragma: no cover - closing a dead connection
            pass
