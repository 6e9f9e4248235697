"""What one small step of the miss path costs when it runs after idleness: the disk tier's
probe (one indexed SQLite ``SELECT``, ``DiskTier.probe``), a second probe straight after it, and
a Python set membership test, each timed after ``--gap-ms`` of sleep (docs/PERFORMANCE.md,
"Issue 8, twelfth session").

    PYTHONPATH=$PWD/src python bench/cold_steps.py [--gap-ms 50] [--n 150] [--no-writer]

A writer process stores a miss's three entries every 50 ms into the same cache folder (as
the engine workers do), unless ``--no-writer``. With ``--gap-ms 0`` the steps run back to
back (hot). Prints p50/p90 µs of each.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing as mp
import os
import tempfile
import time
from typing import Any

from swiftshot.benchmarks.stats import percentile
from swiftshot.store.tiers import DiskTier


def _writer(folder: str, stop: Any) -> None:
    tier = DiskTier(folder, 1 << 30)
    i = 0
    while not stop.is_set():
        key = hashlib.sha256(f"w{os.getpid()}-{i}".encode()).hexdigest()
        i += 1
        tier.put_many([(key + ".meta", b"m" * 200, None, ("adhoc",)),
                       (key, os.urandom(30_000), None, ("adhoc", f"master:{key}")),
                       (key + ".webp", os.urandom(20_000), None, ())])
        time.sleep(0.05)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gap-ms", type=float, default=50.0)
    ap.add_argument("--n", type=int, default=150)
    ap.add_argument("--entries", type=int, default=2000, help="rows in the cache beforehand")
    ap.add_argument("--no-writer", action="store_true")
    a = ap.parse_args()
    folder = tempfile.mkdtemp(prefix="swiftshot-cold-")
    tier = DiskTier(folder, 1 << 30)
    keys = [hashlib.sha256(f"x{i}".encode()).hexdigest() for i in range(a.entries)]
    for k in keys:
        tier.put_many([(k, b"v" * 3000, None, ("adhoc",))])
    known = set(keys)
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    writer = None if a.no_writer else ctx.Process(target=_writer, args=(folder, stop))
    if writer is not None:
        writer.start()
    tier.probe("0" * 64)  # the read-only connection opened
    times: dict[str, list[float]] = {"probe": [], "probe again": [], "set": []}
    try:
        for i in range(a.n):
            if a.gap_ms:
                time.sleep(a.gap_ms / 1000)
            key = hashlib.sha256(f"miss{i}-{time.time()}".encode()).hexdigest()
            t0 = time.perf_counter_ns()
            first = tier.probe(key)
            t1 = time.perf_counter_ns()
            tier.probe(key + "x")
            t2 = time.perf_counter_ns()
            _ = key in known
            t3 = time.perf_counter_ns()
            if first is None:
                continue  # busy: the probe did not answer
            times["probe"].append((t1 - t0) / 1000)
            times["probe again"].append((t2 - t1) / 1000)
            times["set"].append((t3 - t2) / 1000)
    finally:
        stop.set()
        if writer is not None:
            writer.join()
        tier.close()
    print(f"after {a.gap_ms:g} ms idle ({'a writer beside' if writer else 'no writer'}, "
          f"load {os.getloadavg()[0]:.1f}):")
    for name, v in times.items():
        print(f"  {name:12s} p50 {percentile(v, 50):7.1f} µs  p90 {percentile(v, 90):7.1f} µs  "
              f"({len(v)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
