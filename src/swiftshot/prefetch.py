"""Predictive prefetch: do likely work before it is asked for, only with capacity to spare.

Three parts, all driven by :class:`Prefetcher` (one per :class:`~swiftshot.service.Service`):

* **Variants after a render.** ``GET /i/`` reports each delivery request's *profile* (format,
  explicit ``q``/``w``, Client Hints); :class:`VariantStats` keeps them with exponential decay.
  After a render that was made (a miss), the profiles that cover most recent traffic are resolved
  for that master (the same quality/width rules as ``GET /i/``) and encoded at ``prefetch``
  priority by a background task — only while the engine queue holds nothing of a higher class
  and the work gate is nearly empty; otherwise the item waits (newest first, bounded) and is
  dropped after ``prefetch.wait_s``.
* **Prefetch jobs.** ``POST /v1/prefetch`` hands a list of specs to :meth:`Prefetcher.submit`;
  they render at ``prefetch`` priority (the scheduler's lowest class: realtime and standard
  work always goes first), a few at a time, retrying refusals (429/503) after their
  Retry-After. A handle (``GET /v1/prefetch/{id}``) reports each item.
* **Warm start.** The most-requested keys (masters and variants) are counted as they are served
  and written to ``prefetch.popular_file`` every ``prefetch.save_every_s`` and at shutdown; at
  start-up the memory tier is filled with them from the disk tier (up to
  ``prefetch.warm_bytes``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from swiftshot import telemetry
from swiftshot.delivery import negotiate

if TYPE_CHECKING:
    from swiftshot.config import PrefetchSettings
    from swiftshot.service import Service
    from swiftshot.spec import RenderSpec

log = logging.getLogger(__name__)

ABOVE_PREFETCH = ("realtime", "standard", "batch")


@dataclass(frozen=True)
class Profile:
    """What a delivery request asked for, independent of the image: format, the explicit
    ``q``/``w`` of the URL, and the Client Hints that adapt quality and width."""

    fmt: str
    quality: int | None
    width: int | None
    hints: negotiate.ClientHints

    def resolve(self, svc: Service, master_width: int | None) -> tuple[str, int | None, int | None]:
        """(format, quality, width) this profile gets for a master ``master_width`` wide —
        the same rules as ``GET /i/`` (routes_delivery.resolve)."""
        quality, width = self.quality, self.width
        if self.hints.any:
            if quality is None and self.fmt != "png":
                quality = negotiate.adapt_quality(svc.quality_for(self.fmt, None), self.hints)
            if width is None and self.hints.width is not None and master_width is not None:
                width = negotiate.adapt_width(master_width, self.hints)
        return self.fmt, quality, width


class VariantStats:
    """Delivery profiles seen recently, each weighted by ``0.5 ** (age / half_life_s)``."""

    def __init__(self, half_life_s: float = 600.0, max_profiles: int = 256,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.half_life_s = half_life_s
        self.max_profiles = max_profiles
        self.clock = clock
        self._t0 = clock()
        # weights are kept in "units at t0" (w * 2**((t - t0)/h)), so decay needs no sweep;
        # rebased when they grow large
        self._w: dict[Profile, float] = {}

    def _scale(self, now: float) -> float:
        return 2.0 ** ((now - self._t0) / self.half_life_s)

    def observe(self, profile: Profile) -> None:
        now = self.clock()
        s = self._scale(now)
        if s > 1e12:  # rebase: weights at t0 would overflow in time
            self._w = {p: w / s for p, w in self._w.items()}
            self._t0, s = now, 1.0
        self._w[profile] = self._w.get(profile, 0.0) + s
        if len(self._w) > self.max_profiles:
            del self._w[min(self._w, key=self._w.__getitem__)]

    def top(self, k: int, coverage: float) -> list[tuple[Profile, float]]:
        """The most frequent profiles (at most ``k``), until they cover ``coverage`` of the
        recent weight; each with its share."""
        total = sum(self._w.values())
        if total <= 0:
            return []
        out: list[tuple[Profile, float]] = []
        covered = 0.0
        for p, w in sorted(self._w.items(), key=lambda kv: -kv[1]):
            if len(out) >= k or covered >= coverage:
                break
            out.append((p, w / total))
            covered += w / total
        return out

    def __len__(self) -> int:
        return len(self._w)


@dataclass
class PrefetchItem:
    index: int
    state: str = "queued"
    """queued | rendering | done (made now) | cached (was cached already) | failed"""
    key: str | None = None
    error: dict[str, Any] | None = None
    attempts: int = 0


@dataclass
class PrefetchJob:
    id: str
    specs: list[RenderSpec]
    created: float = field(default_factory=time.time)
    items: list[PrefetchItem] = field(default_factory=list)
    finished: float | None = None
    task: asyncio.Task[None] | None = None

    def summary(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for it in self.items:
            counts[it.state] = counts.get(it.state, 0) + 1
        return {"id": self.id, "status": "completed" if self.finished else "running",
                "created_at": int(self.created), "total": len(self.items),
                "counts": counts,
                "items": [{k: v for k, v in (("index", it.index), ("state", it.state),
                                             ("key", it.key), ("error", it.error))
                           if v is not None} for it in self.items]}


class Prefetcher:
    def __init__(self, service: Service, settings: PrefetchSettings,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.svc = service
        self.settings = settings
        self.clock = clock
        self.stats = VariantStats(settings.half_life_s)
        self._pending: deque[tuple[str, int | None, float]] = deque(maxlen=settings.max_pending)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._saver: asyncio.Task[None] | None = None
        self.jobs: OrderedDict[str, PrefetchJob] = OrderedDict()
        self.popular: dict[str, int] = {}
        """key → times served since start (plus what was loaded from the popular file)."""
        self.counts = {"variants_encoded": 0, "variants_dropped": 0, "variants_cached": 0,
                       "warmed_keys": 0, "warmed_bytes": 0}

    # -- life cycle ---------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    async def start(self) -> None:
        if self.settings.warm_bytes > 0:
            try:
                await asyncio.to_thread(self.warm)
            except Exception:  # noqa: BLE001 - a warm-up that fails must not stop the server
                log.exception("warming the memory tier failed; starting cold")
        if self.enabled:
            self._task = asyncio.create_task(self._variant_loop(), name="swiftshot-prefetch")
        if self._popular_path() is not None:
            self._saver = asyncio.create_task(self._save_loop(), name="swiftshot-popular")

    async def stop(self) -> None:
        for job in self.jobs.values():
            if job.task is not None and not job.task.done():
                job.task.cancel()
        for t in (self._task, self._saver):
            if t is not None:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
        with contextlib.suppress(Exception):
            self.save_popular()

    # -- learning ------------------------------------------------------------------------------

    def observe(self, profile: Profile) -> None:
        """A delivery request (``GET /i/``) asked for ``profile``: learn it."""
        if self.enabled:
            self.stats.observe(profile)

    def count(self, key: str) -> None:
        """A master or variant was asked for (counted for the next start's warm-up)."""
        popular = self.popular
        popular[key] = popular.get(key, 0) + 1
        if len(popular) > 4 * self.settings.popular_keys:  # bounded: keep the top half
            keep = sorted(popular.items(), key=lambda kv: -kv[1])[: 2 * self.settings.popular_keys]
            self.popular = dict(keep)

    # -- variants after a render ------------------------------------------------------------

    def after_render(self, key: str, width: int | None) -> None:
        """A master was just made: queue its likely variants (newest first)."""
        if not self.enabled or not len(self.stats):
            return
        if len(self._pending) == self._pending.maxlen:
            self.counts["variants_dropped"] += 1
        self._pending.append((key, width, self.clock()))
        self._wake.set()

    def idle(self, held: int = 0) -> bool:
        """Capacity to spare: nothing of a higher class queued in the engine (nor running, with
        ``prefetch.idle_engine``), and the work
        gate (requests doing CPU work past the cache) at most ``idle_gate`` full, never its
        last shared place (``held``: places this prefetch holds itself)."""
        depth = self.svc.worker.depth() if hasattr(self.svc.worker, "depth") else {}
        if any(depth.get(p, 0) for p in ABOVE_PREFETCH):
            return False
        if self.settings.idle_engine and depth.get("running", 0):
            return False  # the engine is busy: its core is not idle capacity
        gate = self.svc.gate
        others = gate.in_use - held
        return others <= self.settings.idle_gate and others + 1 < gate.shared_limit

    async def _variant_loop(self) -> None:
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            key, width, at = self._pending.pop()  # newest first: most likely to be asked for
            if self.clock() - at > self.settings.wait_s:
                self.counts["variants_dropped"] += 1 + len(self._pending)
                self._pending.clear()  # everything older is older still
                continue
            while not self.idle():
                await asyncio.sleep(self.settings.poll_s)
                if self.clock() - at > self.settings.wait_s:
                    break
            else:
                try:
                    await self._encode_variants(key, width)
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # noqa: BLE001 - a prefetch that fails costs nothing
                    log.debug("prefetch of %s failed: %s", key, e)
                continue
            self.counts["variants_dropped"] += 1

    async def _encode_variants(self, key: str, width: int | None) -> None:
        """Encode ``key``'s likely variants holding one place in the work gate (taken here, so
        a busy gate is never refused on a prefetch's account) and one decode of the master."""
        from swiftshot.spec import variant_key

        svc = self.svc
        wanted: list[tuple[str, int | None, int | None]] = []
        for profile, _share in self.stats.top(self.settings.max_variants, self.settings.coverage):
            if width is None:
                meta = await svc.meta(key)
                width = meta.width if meta is not None else None
            v = profile.resolve(svc, width)
            fmt, quality, w = v
            memory = svc.cache.tiers[0] if svc.cache.tiers else None
            if v in wanted:
                continue
            if memory is not None and \
                    memory.get(variant_key(key, fmt, svc.quality_for(fmt, quality), w)) is not None:
                self.counts["variants_cached"] += 1
                continue
            wanted.append(v)
        if not wanted:
            return
        if not self.idle():
            self.counts["variants_dropped"] += len(wanted)
            return
        svc.gate.in_use += 1  # our place; idle() just checked one is free beyond the shared last
        try:
            hit = await svc.cache.aget(key)
            if hit is None:  # purged meanwhile
                return
            image = await asyncio.get_running_loop().run_in_executor(
                svc._prefetch_pool, svc._codecs.decode_master, hit[0])  # noqa: SLF001 - its pool
            for n, (fmt, quality, w) in enumerate(wanted):
                if not self.idle(held=1):
                    self.counts["variants_dropped"] += len(wanted) - n
                    return
                data = await svc.variant(key, fmt, quality, w, image=image, priority="prefetch")
                if data is None:
                    return
                self.counts["variants_encoded"] += 1
                telemetry.PREFETCHED.labels(kind="variant").inc()
        finally:
            svc.gate.leave()

    # -- prefetch jobs -------------------------------------------------------------------------

    def submit(self, specs: list[RenderSpec]) -> PrefetchJob:
        job = PrefetchJob(uuid.uuid4().hex[:16], specs,
                          items=[PrefetchItem(i) for i in range(len(specs))])
        self.jobs[job.id] = job
        while len(self.jobs) > self.settings.max_jobs:
            _, old = self.jobs.popitem(last=False)
            if old.task is not None and not old.task.done():
                old.task.cancel()
        job.task = asyncio.create_task(self._run_job(job), name=f"swiftshot-prefetch-{job.id}")
        return job

    async def _run_job(self, job: PrefetchJob) -> None:
        todo = deque(job.items)
        try:
            await asyncio.gather(*(self._job_worker(job, todo)
                                   for _ in range(self.settings.job_concurrency)))
        finally:
            job.finished = time.time()

    async def _job_worker(self, job: PrefetchJob, todo: deque[PrefetchItem]) -> None:
        from swiftshot.api.errors import response_for
        from swiftshot.runtime.worker import Rejected
        from swiftshot.service import Unavailable

        while todo:
            item = todo.popleft()
            spec = job.specs[item.index]
            item.state = "rendering"
            while True:
                item.attempts += 1
                try:
                    r = await self.svc.render(spec, priority="prefetch")
                except (Rejected, Unavailable) as e:
                    if item.attempts < self.settings.max_attempts and e.status in (429, 503):
                        await asyncio.sleep(max(0.05, min(e.retry_after_s, 30.0)))
                        continue
                    item.state = "failed"
                    item.error = orjson.loads(response_for(e).body)["error"]
                    break
                except Exception as e:  # noqa: BLE001 - reported per item
                    item.state = "failed"
                    item.error = orjson.loads(response_for(e).body)["error"]
                    break
                item.key = r.key
                item.state = "done" if r.cache in ("miss", "coalesced") else "cached"
                telemetry.PREFETCHED.labels(kind="render").inc()
                break  # (a miss's variants were queued by Service.render itself)

    # -- warm start ----------------------------------------------------------------------------

    def _popular_path(self) -> Path | None:
        p = self.settings.popular_file
        if p is None:
            return None
        return Path(p)

    def save_popular(self) -> None:
        path = self._popular_path()
        if path is None or not self.popular:
            return
        top = sorted(self.popular.items(), key=lambda kv: -kv[1])[: self.settings.popular_keys]
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps({"saved_at": time.time(), "keys": top}))
        os.replace(tmp, path)

    async def _save_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.save_every_s)
            try:
                await asyncio.to_thread(self.save_popular)
            except Exception:  # noqa: BLE001
                log.exception("saving the popular keys failed")

    def warm(self) -> tuple[int, int]:
        """Fill the memory tier from the disk tier with the most-requested keys (blocking).
        Returns (keys, bytes) loaded."""
        path = self._popular_path()
        if path is None or not path.exists():
            return 0, 0
        try:
            saved = orjson.loads(path.read_bytes())
            keys = [(str(k), int(n)) for k, n in saved.get("keys", [])]
        except (orjson.JSONDecodeError, ValueError, TypeError, AttributeError):
            log.warning("popular-keys file %s is unreadable; starting cold", path)
            return 0, 0
        tiers = self.svc.cache.tiers
        memory = next((t for t in tiers if t.name == "memory"), None)
        lower = [t for t in tiers if t is not memory and t.name == "disk"]
        if memory is None or not lower:
            return 0, 0
        budget = self.settings.warm_bytes
        loaded = size = 0
        ttl = self.svc.cache.promote_ttl_s
        disk = lower[0]
        full = False
        for key, n in keys:
            # a variant key is "<master>.<fmt>-q..", served as is; a delivery request with a
            # Width hint also reads its master's metadata
            master = key.split(".", 1)[0]
            for k in dict.fromkeys((key, master + ":meta")):
                if memory.get(k) is not None:
                    continue
                data = disk.get(k)
                if data is None:
                    continue
                if size + len(data) > budget:
                    full = True
                    break
                memory.put(k, data, ttl)
                size += len(data)
                loaded += 1
            if full:
                break
            # counts from earlier runs age: halved at each start
            self.popular[key] = self.popular.get(key, 0) + n // 2
        self.counts["warmed_keys"], self.counts["warmed_bytes"] = loaded, size
        log.info("warmed the memory tier with %d entries (%d bytes) from the disk tier",
                 loaded, size)
        return loaded, size
