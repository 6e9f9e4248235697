"""Benchmark of the serving core: cache tier reads, scheduler dispatch cost, worker overhead.

    python -m swiftshot.benchmarks.core [--quick] [--out bench/results/core.json]

Prints one table per part and writes JSON with the machine it ran on. What each figure means:

* tiers: latency of one read of a cached master (sync ``get`` per tier, and ``aget`` through
  TieredCache on an event loop, where memory is read inline and lower tiers from a thread).
  Redis is a real ``redis-server`` on loopback (skipped when the binary is absent).
* scheduler: CPU time of one dispatch (``dispatch_delay`` + ``next_batch``) with every queue at
  its default limit (2,880 items), for the indexed lanes against a scan of the queue, with
  class-default deadlines and with mixed per-request deadlines.
* worker: what the worker itself costs per request around an engine that takes no time
  (queue hop, inference-thread hop, futures), for max_batch_size 1 and 8.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from swiftshot.benchmarks.machine import print_table, write_result
from swiftshot.config import PRIORITIES, SchedulerSettings, Settings
from swiftshot.engines.base import FakeEngine
from swiftshot.runtime.scheduler import Scheduler, WorkItem
from swiftshot.runtime.worker import Worker
from swiftshot.spec import RenderSpec
from swiftshot.store.cache import TieredCache
from swiftshot.store.tiers import CacheTier, DiskTier, MemoryTier, RedisTier


def _pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def _row(part: str, case: str, samples_s: list[float], **extra: Any) -> dict[str, Any]:
    return {"part": part, "case": case, "n": len(samples_s),
            "p50_us": _pct(samples_s, 0.5) * 1e6, "p99_us": _pct(samples_s, 0.99) * 1e6,
            "mean_us": statistics.fmean(samples_s) * 1e6, **extra}


# -- tiers -------------------------------------------------------------------------------------

def bench_tiers(n: int, size: int) -> list[dict[str, Any]]:
    from swiftshot.testing import services

    rows: list[dict[str, Any]] = []
    value = random.Random(0).randbytes(size)
    with tempfile.TemporaryDirectory() as tmp:
        redis_proc = None
        tiers: list[CacheTier] = [MemoryTier(256 << 20), DiskTier(Path(tmp) / "disk", 1 << 30)]
        if services.redis_binary():
            redis_proc = services.start_redis(Path(tmp) / "redis")
            tiers.append(RedisTier(redis_proc.url))
        try:
            for tier in tiers:
                tier.put("k", value)
                samples = []
                for _ in range(n):
                    t = time.perf_counter()
                    got = tier.get("k")
                    samples.append(time.perf_counter() - t)
                    assert got == value
                rows.append(_row("tiers", f"{tier.name}.get {size // 1024} KiB", samples))
            for i, tier in enumerate(tiers):
                # aget of a hit in tier i, through a cache whose faster tiers miss (no promotion
                # into them: each read measures the same path).
                cache = TieredCache([tier], promote_ttl_s=None)
                samples = asyncio.run(_aget_samples(cache, n))
                rows.append(_row("tiers", f"aget hit in {tier.name}", samples,
                                 thread_hop=i > 0))
        finally:
            for tier in tiers:
                tier.close()
            if redis_proc is not None:
                redis_proc.stop()
    return rows


async def _aget_samples(cache: TieredCache, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        assert await cache.aget("k") is not None
        samples.append(time.perf_counter() - t)
    return samples


# -- scheduler ---------------------------------------------------------------------------------

class ScanScheduler(Scheduler):
    """The same rules by scanning every queued item (what the lanes replace)."""

    def _head(self, now: float) -> WorkItem | None:
        return min(self._items.values(), key=lambda it: self.order(it, now), default=None)

    def next_batch(self) -> list[WorkItem]:
        now = self.clock()
        self._drop_expired(now)
        head = self._head(now)
        if head is None or self._delay(head, now) > 0:
            return []
        group = [it for it in self._items.values() if it.batch_key == head.batch_key]
        batch = sorted(group, key=lambda it: self.order(it, now))[: self.max_batch]
        for item in batch:
            self._remove(item)
            self._running_cost += item.cost
        self._running_items += len(batch)
        return batch


def bench_scheduler(n: int) -> list[dict[str, Any]]:
    rows = []
    for mixed in (False, True):
        for cls in (Scheduler, ScanScheduler):
            samples = _dispatch_samples(cls, n, mixed)
            rows.append(_row("scheduler", f"{cls.__name__} deadlines="
                             f"{'mixed' if mixed else 'default'}", samples, queued=2880))
    return rows


def _dispatch_samples(cls: Callable[..., Scheduler], n: int, mixed: bool) -> list[float]:
    now = [0.0]
    settings = SchedulerSettings()
    s = cls(settings, clock=lambda: now[0], capacity_hint_s=1e-6)
    ids = itertools.count()
    rng = random.Random(1)

    def item(priority: Any, key: Any) -> WorkItem:
        life = rng.uniform(60, 1000) if mixed else 1000.0
        return WorkItem(next(ids), key, priority, now[0], now[0] + life)

    for p in PRIORITIES:
        for _ in range(settings.queue_limit[p]):
            now[0] += 0.0001
            s.submit(item(p, rng.choice((512, 768, 1024))))
    samples = []
    for _ in range(n):
        now[0] += 0.01
        t = time.perf_counter()
        s.dispatch_delay()
        batch = s.next_batch()
        samples.append(time.perf_counter() - t)
        s.record(len(batch), 0.0, batch=batch)
        for done in batch:  # keep every queue full
            s.submit(item(done.priority, done.batch_key))
    return samples


# -- worker ------------------------------------------------------------------------------------

def bench_worker(n: int) -> list[dict[str, Any]]:
    rows = []
    for batch in (1, 8):
        settings = Settings(data_dir=Path(tempfile.gettempdir()) / "swiftshot-bench-core")
        settings.scheduler.max_batch_size = batch
        settings.scheduler.max_wait_ms = 0.0
        settings.server.warmup_shapes = []
        wall, calls = asyncio.run(_worker_run(settings, n))
        rows.append({"part": "worker", "case": f"max_batch_size={batch}", "n": n,
                     "engine_calls": calls, "per_request_us": wall / n * 1e6,
                     "requests_per_s": n / wall})
    return rows


async def _worker_run(settings: Settings, n: int) -> tuple[float, int]:
    engine = FakeEngine()
    worker = Worker(engine, settings, capacity_hint_s=1e-6)
    await worker.start()
    specs = [RenderSpec(engine="fake", prompt=f"p{i}", width=64, height=64).normalized()
             for i in range(n)]
    try:
        t = time.perf_counter()
        await asyncio.gather(*(worker.submit(s, priority="batch") for s in specs))
        return time.perf_counter() - t, len(engine.calls)
    finally:
        await worker.stop()


# -- worker + a real-size diffusion engine -----------------------------------------------------

def bench_worker_diffusion(arch: str, size: int, n: int, batches: tuple[int, ...],
                           device: str) -> list[dict[str, Any]]:
    """n concurrent same-size requests through the Worker, per max_batch_size: images/s,
    latency percentiles and engine calls. ``arch``: sd-turbo / sdxl-turbo (real shapes,
    RANDOM weights: latency is real, pixels are noise) or tiny (the test pipeline)."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from swiftshot.config import DiffusionSettings
    from swiftshot.engines.diffusion import DiffusionEngine

    cuda = device.startswith("cuda")
    cfg = DiffusionSettings(device=device, dtype="fp16" if cuda else "fp32", default_steps=1)
    tmp = tempfile.TemporaryDirectory()
    if arch == "tiny":
        from swiftshot.testing.tiny_pipeline import build_tiny_sd

        engine: Any = DiffusionEngine(cfg.model_copy(
            update={"model": str(build_tiny_sd(Path(tmp.name) / "tiny"))}))
    else:
        import torch

        from swiftshot.engines.architectures import build_architecture

        pipe = build_architecture(arch, torch.float16 if cuda else torch.float32, device)
        # build_architecture makes the scheduler under torch.device(device) too, so its tables
        # land on the GPU and set_timesteps (numpy) fails; a fresh one keeps them on the CPU.
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
        engine = DiffusionEngine.from_pipeline(pipe, cfg, identity=f"{arch}-random")
    rows = []
    try:
        for b in batches:
            settings = Settings(data_dir=Path(tmp.name) / "var")
            settings.scheduler.max_batch_size = b
            settings.server.warmup_shapes = [(size, size)]
            rows.append(asyncio.run(_diffusion_run(engine, settings, arch, size, n, b)))
    finally:
        tmp.cleanup()
    return rows


async def _diffusion_run(engine: Any, settings: Settings, arch: str, size: int, n: int,
                         batch: int) -> dict[str, Any]:
    worker = Worker(engine, settings)
    await worker.start()

    def specs(tag: str, k: int) -> list[RenderSpec]:
        return [RenderSpec(engine="diffusion", prompt=f"{tag} product photo {i}", width=size,
                           height=size, seed=i).normalized() for i in range(k)]

    async def timed(spec: RenderSpec) -> tuple[float, int]:
        t = time.perf_counter()
        r = await worker.submit(spec, priority="batch")
        return time.perf_counter() - t, r.batch_size

    try:
        await asyncio.gather(*(worker.submit(s, priority="batch") for s in specs("warm", batch)))
        calls0 = _batch_count()
        t0 = time.perf_counter()
        out = await asyncio.gather(*(timed(s) for s in specs("timed", n)))
        wall = time.perf_counter() - t0
    finally:
        await worker.stop()
    lat = [x for x, _ in out]
    return {"part": "worker+diffusion", "arch": arch, "size": f"{size}x{size}", "steps": 1,
            "max_batch_size": batch, "n": n, "images_per_s": n / wall,
            "p50_ms": _pct(lat, 0.5) * 1e3, "p95_ms": _pct(lat, 0.95) * 1e3,
            "mean_batch": statistics.fmean(b for _, b in out),
            "engine_calls": _batch_count() - calls0}


def _batch_count() -> int:
    from swiftshot import telemetry

    for metric in telemetry.BATCH_SIZE.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count"):
                return int(sample.value)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples (CI)")
    ap.add_argument("--out", default=None, help="JSON path (default bench/results/core.json)")
    ap.add_argument("--diffusion", metavar="ARCH", default=None,
                    help="instead: worker batching over a diffusion engine "
                         "(sd-turbo, sdxl-turbo: random weights; tiny: test pipeline)")
    ap.add_argument("--device", default="cuda", help="torch device for --diffusion")
    ap.add_argument("--size", type=int, default=512, help="image side for --diffusion")
    ap.add_argument("--n", type=int, default=64, help="concurrent requests for --diffusion")
    ap.add_argument("--batches", default="1,4,8", help="max_batch_size values for --diffusion")
    args = ap.parse_args(argv)
    n = 200 if args.quick else 2000
    if args.diffusion:
        batches = tuple(int(b) for b in args.batches.split(","))
        results: dict[str, list[dict[str, Any]]] = {"worker+diffusion": bench_worker_diffusion(
            args.diffusion, args.size, args.n, batches, args.device)}
        name = f"core-{args.diffusion}"
    else:
        results = {
            "tiers": bench_tiers(n, 256 * 1024) + bench_tiers(n, 16 * 1024),
            "scheduler": bench_scheduler(n // 4),
            "worker": bench_worker(n),
        }
        name = "core"
    for part, rows in results.items():
        print(f"\n== {part}")
        print_table(rows)
    path = write_result(name, {"quick": args.quick, **results}, args.out)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
