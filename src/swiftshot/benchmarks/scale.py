"""``swiftshot bench scale``: does the executor scale with its workers? (scaling by simulation)

A 2-core box cannot show N GPUs, so the engine is the fake one with a fixed device time per
batch spent *sleeping* (as a process waits on a GPU): N workers can then overlap N batches
whatever the core count. For N = 1, 2, 4, 8 workers of the chosen executor, through the front's
own dispatcher (runtime.Worker: scheduler, slots, executor; no HTTP):

* capacity: closed loop, 3 × N requests kept in flight for ``--duration`` seconds → items/s;
  the goal is ≥ 0.9 × N × one worker's;
* latency at 80 % load: open loop (Poisson) at 0.8 × N × (1 / device time) → p50/p95; the goal
  is a flat p95 (the same for every N).

Batches are one item each (``scheduler.max_batch_size = 1``) so a batch's device time is fixed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
from typing import Any

from swiftshot.benchmarks.machine import print_table, write_result


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", default="1,2,4,8", help="worker counts to run (default 1,2,4,8)")
    p.add_argument("--device-ms", type=float, default=50.0,
                   help="sleeping device time per batch, ms (default 50)")
    p.add_argument("--duration", type=float, default=6.0, help="seconds per phase (default 6)")
    p.add_argument("--executor", choices=["process", "inline", "ray"], default="process")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="JSON result path (default bench/results/scale.json)")


def main(args: argparse.Namespace) -> int:
    counts = [int(x) for x in args.workers.split(",") if x.strip()]
    if not counts or any(not 1 <= n <= 64 for n in counts):
        from swiftshot.cli import CliError

        raise CliError(f"--workers must list counts between 1 and 64; got {args.workers!r}")
    rows = asyncio.run(run(counts, args.device_ms / 1000.0, args.duration, args.executor,
                           args.seed))
    summary = summarise(rows, args.device_ms)
    print_table(rows, ["workers", "capacity_rps", "scaling", "offered_rps", "done", "errors",
                       "p50_ms", "p95_ms", "p95_over_device"])
    load = os.getloadavg()
    path = write_result("scale", {"benchmark": "scale", "executor": args.executor,
                                  "device_ms": args.device_ms, "duration_s": args.duration,
                                  "loadavg": load, "rows": rows, **summary}, args.out)
    print(f"\nscaling min {summary['scaling_min']:.2f} (goal >= 0.9), p95 spread "
          f"{summary['p95_spread']:.2f} (max p95 / min p95 over N; flat = 1)")
    print(f"load average {load[0]:.1f}; wrote {path}")
    return 0


def summarise(rows: list[dict[str, Any]], device_ms: float) -> dict[str, float]:
    """Adds per-row scaling and p95/device; returns the figures the budgets read."""
    base = rows[0]["capacity_rps"] / rows[0]["workers"]
    for r in rows:
        r["scaling"] = round(r["capacity_rps"] / (r["workers"] * base), 3)
        r["p95_over_device"] = round(r["p95_ms"] / device_ms, 2)
    p95s = [r["p95_ms"] for r in rows]
    return {"scaling_min": min(r["scaling"] for r in rows[1:]) if len(rows) > 1 else 1.0,
            "p95_spread": max(p95s) / min(p95s) if min(p95s) > 0 else float("nan")}


def quick() -> dict[str, Any]:
    """What ``bench check --quick`` runs: 1, 2, 4 process workers, 3 s phases."""
    device_ms = 50.0
    rows = asyncio.run(run([1, 2, 4], device_ms / 1000.0, 3.0, "process", 0))
    summary = summarise(rows, device_ms)
    print_table(rows, ["workers", "capacity_rps", "scaling", "p50_ms", "p95_ms"])
    out = {"benchmark": "scale", "executor": "process", "device_ms": device_ms,
           "loadavg": os.getloadavg(), "rows": rows, **summary}
    write_result("scale-check", out)
    return out


async def run(counts: list[int], device_s: float, duration: float, executor: str,
              seed: int) -> list[dict[str, Any]]:
    import tempfile

    from swiftshot.config import Settings
    from swiftshot.runtime.process import make_executor
    from swiftshot.runtime.worker import Worker
    from swiftshot.spec import RenderSpec

    rows = []
    with tempfile.TemporaryDirectory(prefix="swiftshot-scale-") as tmp:
        for n in counts:
            s = Settings(data_dir=f"{tmp}/{n}")
            s.server.warmup_shapes = [(64, 64)]
            s.engine.fake.delay_s = device_s
            s.scheduler.max_batch_size = 1
            s.scheduler.max_wait_ms = 0.0
            s.scheduler.deadline_ms = {p: 120_000 for p in s.scheduler.deadline_ms}
            s.scheduler.queue_limit = {p: 100_000 for p in s.scheduler.queue_limit}
            w = Worker(make_executor(executor, s, "fake", workers=n), s,
                       capacity_hint_s=device_s / n)
            await w.start()
            counter = iter(range(10**9))

            def spec(w: Any = w, counter: Any = counter) -> RenderSpec:
                # distinct specs: no two share a key (used within this iteration only)
                return w.info.normalized(RenderSpec(engine="fake", prompt=f"p{next(counter)}",
                                                    width=64, height=64))

            try:
                cap = await _closed(w, spec, 3 * n, duration)
                offered = 0.8 * n / device_s
                lat, errors = await _open(w, spec, offered, duration, random.Random(seed))
            finally:
                await w.stop()
            lat.sort()
            rows.append({"workers": n, "capacity_rps": round(cap, 1),
                         "offered_rps": round(offered, 1), "done": len(lat), "errors": errors,
                         "p50_ms": round(_q(lat, 0.5) * 1000, 1),
                         "p95_ms": round(_q(lat, 0.95) * 1000, 1)})
    return rows


async def _closed(w: Any, spec: Any, inflight: int, duration: float) -> float:
    end = time.perf_counter() + duration
    done = 0

    async def loop() -> None:
        nonlocal done
        while time.perf_counter() < end:
            await w.submit(spec())
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(inflight)))
    return done / (time.perf_counter() - t0)


async def _open(w: Any, spec: Any, rate: float, duration: float,
                rng: random.Random) -> tuple[list[float], int]:
    lat: list[float] = []
    errors = 0

    async def one() -> None:
        nonlocal errors
        t0 = time.perf_counter()
        try:
            await w.submit(spec())
            lat.append(time.perf_counter() - t0)
        except Exception:  # noqa: BLE001 - counted
            errors += 1

    tasks = []
    t = time.perf_counter()
    end = t + duration
    while t < end:
        t += rng.expovariate(rate)
        delay = t - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    return lat, errors


def _q(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, int(q * len(xs)))]
