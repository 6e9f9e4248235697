"""The tiered cache: fastest tier first, a hit below is copied up into the faster tiers.

Writes go to every tier. Because keys are content hashes, a copy never disagrees with the
original; the only thing to keep consistent is removal, so :meth:`TieredCache.purge_tag` removes
the keys any tier reports for the tag from *every* tier (a copy promoted from Redis into memory
carries no tags of its own).

Write-behind. On the request path (:meth:`TieredCache.aput` with ``behind=True``) the in-process
tiers are written at once, so the next request hits, and this machine's blocking tier (disk) is
written by one background thread, in order, without the request waiting for it (a shared tier,
Redis, is still awaited: another replica looks there next) (a miss
awaited three disk writes, ~10 ms of a 25 ms answer: docs/PERFORMANCE.md, issue 8). A removal
(:meth:`adelete`, :meth:`apurge_tag`) first waits for the writes queued before it, so it never
loses to one; :meth:`aclose` (the server's stop) waits for them all. At most
``WRITE_BEHIND_MAX`` writes wait: past it a writer waits as before. Without an in-process tier
nothing is written behind (a read straight after would miss).

Written elsewhere. An engine worker process may write a miss's entries to this machine's disk
tier itself (runtime/process.py: the master then never crosses into the front). The front
puts the small entries in its memory tier (:meth:`TieredCache.put_inline`) and hands the
worker's pending write to :meth:`TieredCache.track`: until it is done, a read of those keys
waits for it (the entry is not on disk yet) and so does every removal and :meth:`flush`; a
write the worker could not make comes back as the master's bytes and is made here, behind,
as any miss's write is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from swiftshot import telemetry
from swiftshot.store.tiers import CacheTier, DiskTier, MemoryTier, RedisTier

if TYPE_CHECKING:
    from swiftshot.config import CacheSettings

log = logging.getLogger(__name__)

PROMOTE_TTL_S = 3600.0
"""How long a copy promoted into a faster tier lives at most. The lower tier does not say how
long its entry has left; the cap bounds how long a purge made by another process (which cannot
reach this process's memory) goes unseen here."""

Entry = tuple[str, bytes, "float | None", Sequence[str]]
"""One write: key, value, ttl (None: no expiry), tags."""

WRITE_BEHIND_MAX = 64
"""Blocking-tier writes that may wait in the background at once (bounds the bytes held)."""


class TieredCache:
    def __init__(self, tiers: Sequence[CacheTier], *, ttl_s: Mapping[str, int] | None = None,
                 default_category: str = "adhoc",
                 promote_ttl_s: float | None = PROMOTE_TTL_S) -> None:
        names = [t.name for t in tiers]
        if len(set(names)) != len(names):
            raise ValueError(f"cache tier names must be distinct; got {names}")
        self.tiers: list[CacheTier] = list(tiers)
        self.ttl_s = dict(ttl_s or {})
        self.default_category = default_category
        self.promote_ttl_s = promote_ttl_s
        # The leading non-blocking tiers are read on the event loop; the rest from a thread.
        n = 0
        while n < len(self.tiers) and not getattr(self.tiers[n], "blocking", True):
            n += 1
        self._n_inline = n
        slow = self.tiers[n:]
        self.probes_below = bool(n and slow) and all(hasattr(t, "probe") for t in slow)
        """Whether the tiers below the in-process ones can each tell a miss on the loop
        (:meth:`DiskTier.probe`): an in-process tier first, then only such tiers (no Redis)."""
        self._behind: ThreadPoolExecutor | None = None
        self._pending: set[asyncio.Future[None]] = set()
        self._elsewhere: dict[str, asyncio.Future[None]] = {}
        """Keys whose write another process has not finished yet → :meth:`track`'s future."""

    @classmethod
    def from_settings(cls, cache: CacheSettings) -> TieredCache:
        """memory (if memory_bytes > 0) → disk (if disk_dir) → redis (if redis_url)."""
        tiers: list[CacheTier] = []
        if cache.memory_bytes > 0:
            tiers.append(MemoryTier(cache.memory_bytes))
        if cache.disk_dir is not None and cache.disk_bytes > 0:
            tiers.append(DiskTier(cache.disk_dir, cache.disk_bytes))
        if cache.redis_url:
            tiers.append(RedisTier(cache.redis_url, cache.redis_prefix,
                                   timeout_s=cache.redis_timeout_s, retry_s=cache.redis_retry_s))
        return cls(tiers, ttl_s=cache.ttl_s, default_category=cache.default_category,
                   promote_ttl_s=cache.promote_ttl_s)

    def ttl_for(self, category: str) -> float | None:
        """TTL in seconds of ``category`` (the default category's for an unknown one); None:
        no categories configured, entries live until evicted."""
        ttl = self.ttl_s.get(category, self.ttl_s.get(self.default_category))
        return None if ttl is None else float(ttl)

    # -- sync API (call from threads, CLIs, jobs) -------------------------------------------

    def get(self, key: str) -> tuple[bytes, str] | None:
        """The value and the name of the tier that had it, or None."""
        return self._get_from(key, 0)

    def put(self, key: str, value: bytes, ttl: float | None = None,
            tags: Sequence[str] = ()) -> None:
        for tier in self.tiers:
            tier.put(key, value, ttl, tags)

    def delete(self, key: str) -> bool:
        found = False
        for tier in self.tiers:
            found = tier.delete(key) or found
        return found

    def purge_tag(self, tag: str) -> int:
        """Remove every entry tagged ``tag`` from every tier; return how many keys went."""
        keys: set[str] = set()
        for tier in self.tiers:
            keys.update(tier.purge_tag(tag))
        for key in keys:
            for tier in self.tiers:
                tier.delete(key)
        return len(keys)

    def close(self) -> None:
        if self._behind is not None:
            self._behind.shutdown(wait=True)  # writes queued from a loop that is gone
            self._behind = None
        for tier in self.tiers:
            tier.close()

    # -- async API (the request path) -------------------------------------------------------

    async def aget(self, key: str, *, below: bool = True) -> tuple[bytes, str] | None:
        """The value and the tier that had it, or None. ``below`` False: the in-process tiers
        only (a request that asks the blocking ones later, while its render runs:
        :meth:`probe_below`, :meth:`read_below`)."""
        if self._elsewhere:
            writing = self._elsewhere.get(key)
            if writing is not None and not writing.done():
                await asyncio.shield(writing)  # on disk (or written here) once it is done
        # The memory tier answers in microseconds: a thread hop would cost more than the read.
        for i in range(self._n_inline):
            hit = self._look(i, key)
            if hit is not None:
                self._promote(key, hit, i)
                return hit, self.tiers[i].name
        if self._n_inline == len(self.tiers) or not below:
            return None
        if self._absent_below(key):
            return None  # told on the loop: no thread hop for the common miss
        found = await asyncio.to_thread(self._get_blocking, key)
        if found is None:
            return None
        return self.promote_found(key, found)

    # -- the blocking tiers asked apart (a miss's look-up beside its render) -------------------

    def master_keys_below(self) -> set[str]:
        """The master keys the blocking tiers held when asked (``DiskTier.master_keys``; a
        tier that cannot list its keys adds none). Blocking: call from a thread."""
        out: set[str] = set()
        for tier in self.tiers[self._n_inline:]:
            keys = getattr(tier, "master_keys", None)
            if keys is not None:
                out |= keys()
        return out

    def holds_inline(self, key: str) -> bool:
        """Whether the first in-process tier holds ``key`` now (nothing counted)."""
        return bool(self._n_inline) and self.tiers[0].get(key) is not None

    def writing(self, key: str) -> bool:
        """Whether another process is writing ``key`` to the blocking tiers now (:meth:`track`)."""
        w = self._elsewhere.get(key) if self._elsewhere else None
        return w is not None and not w.done()

    def probe_below(self, key: str) -> bool:
        """True when every blocking tier says at once that it does not hold ``key`` (the
        misses counted as :meth:`aget` counts them); False: ask :meth:`read_below`."""
        return self._absent_below(key)

    def read_below(self, key: str) -> asyncio.Future[tuple[bytes, int] | None]:
        """The blocking tiers' answer for ``key``, read in a thread: (value, tier index) or
        None. Hand it to :meth:`promote_found` on the loop."""
        return asyncio.get_running_loop().run_in_executor(None, self._get_blocking, key)

    def promote_found(self, key: str, found: tuple[bytes, int]) -> tuple[bytes, str]:
        """(value, tier name) of a blocking tier's hit, copied into the in-process tiers (on the
        loop: no race with their other users)."""
        value, i = found
        self._promote(key, value, i, upto=self._n_inline)
        return value, self.tiers[i].name

    async def aput(self, key: str, value: bytes, ttl: float | None = None,
                   tags: Sequence[str] = (), *, behind: bool = False) -> None:
        """Write to every tier. ``behind``: return once the in-process tiers have it and leave
        the blocking tiers to the background writer (module docstring)."""
        await self.aput_many([(key, value, ttl, tags)], behind=behind)

    async def aput_many(self, entries: Sequence[Entry], *, behind: bool = False) -> None:
        """:meth:`aput` of several entries (key, value, ttl, tags) — a miss's meta, master
        and variants — as one background job (one hand-off to the writer thread, one
        transaction per table on disk: :meth:`DiskTier.put_many`) instead of one each."""
        for tier in self.tiers[: self._n_inline]:
            for key, value, ttl, tags in entries:
                tier.put(key, value, ttl, tags)
        slow = self.tiers[self._n_inline:]
        if not slow or not entries:
            return
        if behind and self._n_inline and len(self._pending) < WRITE_BEHIND_MAX:
            # only this machine's tiers: a shared one (Redis) is where another replica looks
            # next, so the answer still waits for it
            local = [t for t in slow if not isinstance(t, RedisTier)]
            if local:
                if self._behind is None:
                    self._behind = ThreadPoolExecutor(1, thread_name_prefix="swiftshot-cache-write")
                fut = asyncio.wrap_future(self._behind.submit(_put_many, local, entries))
                self._pending.add(fut)
                fut.add_done_callback(self._pending.discard)
                slow = [t for t in slow if isinstance(t, RedisTier)]
                if not slow:
                    return
        await asyncio.to_thread(_put_many, slow, entries)

    def put_inline(self, entries: Sequence[Entry]) -> None:
        """Write ``entries`` to the in-process tiers only (the rest is written elsewhere:
        :meth:`track`)."""
        for tier in self.tiers[: self._n_inline]:
            for key, value, ttl, tags in entries:
                tier.put(key, value, ttl, tags)

    def track(self, written: asyncio.Future[Any], keys: Sequence[str],
              fallback: Callable[[bytes], Sequence[Entry]]) -> None:
        """Another process (an engine worker) is writing ``keys`` to the blocking tiers;
        ``written`` resolves to None once they are there, or to the master's bytes when they
        are not (then ``fallback(master)``'s entries are written here, in every tier, behind).
        Reads of ``keys`` and removals wait for it meanwhile (module docstring)."""

        # A future settled from callbacks, not a task: a miss's answer used to wait one more
        # task step on the loop (the task's first, which only began to wait) before it went.
        settled: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.add(settled)
        for key in keys:
            self._elsewhere[key] = settled

        def done(f: asyncio.Future[None]) -> None:
            self._pending.discard(f)
            for key in keys:
                if self._elsewhere.get(key) is f:
                    del self._elsewhere[key]

        settled.add_done_callback(done)

        def settle(_: object = None) -> None:
            if not settled.done():
                settled.set_result(None)

        def fallen_back(f: asyncio.Future[None]) -> None:
            settle()
            if not f.cancelled() and f.exception() is not None:
                log.error("writing a miss's entries here, after its engine worker could not, "
                          "failed", exc_info=f.exception())

        def on_written(w: asyncio.Future[Any]) -> None:
            if w.cancelled() or w.exception() is not None:  # the executor resolves it: never
                log.error("a cache write made elsewhere ended without an outcome",
                          exc_info=None if w.cancelled() else w.exception())
                settle()
                return
            master = w.result()
            if master is None:
                settle()
                return
            try:
                fallback_write = asyncio.ensure_future(
                    self.aput_many(fallback(master), behind=True))
            except Exception:  # noqa: BLE001 - a callback: the readers waiting must go on
                log.exception("could not write a miss's entries after its worker could not")
                settle()
                return
            fallback_write.add_done_callback(fallen_back)

        written.add_done_callback(on_written)

    async def flush(self) -> None:
        """Wait for the blocking-tier writes queued so far."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def adelete(self, key: str) -> bool:
        """:meth:`delete` off the event loop (disk and Redis block)."""
        await self.flush()
        return await asyncio.to_thread(self.delete, key)

    async def apurge_tag(self, tag: str) -> int:
        """:meth:`purge_tag` off the event loop (disk and Redis block)."""
        await self.flush()
        return await asyncio.to_thread(self.purge_tag, tag)

    async def aclose(self) -> None:
        """Finish the background writes, then :meth:`close`."""
        await self.flush()
        self.close()

    # -- internals ----------------------------------------------------------------------------

    def get_inline_hit(self, key: str) -> tuple[bytes, str] | None:
        """``aget``'s answer when the first tier is in-process (memory) and holds ``key``:
        the value and the tier's name, the hit counted as ``aget`` counts it. Otherwise None,
        counting nothing, so a caller that then falls back to ``aget`` counts its look-ups
        once (the serving fast path, api/fast_path.py)."""
        if not self._n_inline:
            return None
        tier = self.tiers[0]
        value = tier.get(key)
        if value is None:
            return None
        _lookups(tier.name, "hit").inc()
        return value, tier.name

    def _absent_below(self, key: str) -> bool:
        """True when every blocking tier can say at once, without blocking, that it does not
        hold ``key`` (:meth:`DiskTier.probe`; a tier without ``probe`` — Redis — never can);
        the misses are counted as ``_look`` counts them. False: ask them from a thread."""
        slow = self.tiers[self._n_inline:]
        for tier in slow:
            probe = getattr(tier, "probe", None)
            if probe is None or probe(key) is not False:
                return False
        for tier in slow:
            _lookups(tier.name, "miss").inc()
        return True

    def _look(self, i: int, key: str) -> bytes | None:
        tier = self.tiers[i]
        value = tier.get(key)
        _lookups(tier.name, "miss" if value is None else "hit").inc()
        return value

    def _get_from(self, key: str, start: int) -> tuple[bytes, str] | None:
        for i in range(start, len(self.tiers)):
            value = self._look(i, key)
            if value is not None:
                self._promote(key, value, i)
                return value, self.tiers[i].name
        return None

    def _get_blocking(self, key: str) -> tuple[bytes, int] | None:
        """Runs in a thread: blocking tiers, promoting between them; inline ones are left to
        the caller on the loop."""
        for i in range(self._n_inline, len(self.tiers)):
            value = self._look(i, key)
            if value is not None:
                self._promote(key, value, i, start=self._n_inline)
                return value, i
        return None

    def _promote(self, key: str, value: bytes, found_at: int, *, start: int = 0,
                 upto: int | None = None) -> None:
        for tier in self.tiers[start: found_at if upto is None else min(upto, found_at)]:
            tier.put(key, value, self.promote_ttl_s)


_LOOKUP_CHILDREN: dict[tuple[str, str], Any] = {}


def _lookups(tier: str, result: str) -> Any:
    """``swiftshot_cache_requests_total{tier, result}``: its child, looked up once
    (``labels()`` cost more than the memory-tier read it counts, on every hit)."""
    child = _LOOKUP_CHILDREN.get((tier, result))
    if child is None:
        child = _LOOKUP_CHILDREN[(tier, result)] = telemetry.CACHE_REQUESTS.labels(
            tier=tier, result=result)
    return child


def _put_many(tiers: Sequence[CacheTier], entries: Sequence[Entry]) -> None:
    for tier in tiers:
        many = getattr(tier, "put_many", None)
        if many is not None:
            many(entries)
        else:
            for key, value, ttl, tags in entries:
                tier.put(key, value, ttl, tags)
