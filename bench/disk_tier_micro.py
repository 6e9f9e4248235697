"""The disk cache tier on a miss, in-process: CPU of a miss's three writes, and the look-up.

Backs two figures of docs/PERFORMANCE.md ("second pass on the miss path", 2026-12-04):

* **writes** — CPU per miss of ``DiskTier.put`` for a miss's three values (300 B meta, a 1 MB
  random master, a 40 KB variant), with and without tags, for the tier as shipped (its
  ``_BytesDisk`` writes a large value in one call, one folder level deep) and for diskcache's
  stock ``Disk`` (which wrote a ``bytes`` value line by line, two folder levels deep),
  alternated round by round; and ``DiskTier.put_many`` of the three with tags, which is how a
  miss's write-behind goes to disk since 2026-12-04 evening (one job, one transaction each);
* **look-up of a missing key** — ``DiskTier.probe`` on the event loop against the hop it
  replaced, ``asyncio.to_thread(tier.get)``, wall time per look-up on an idle loop.

Prints a table and writes bench/results/disk_tier_micro.json with the machine.

    PYTHONPATH=src .venv/bin/python bench/disk_tier_micro.py [--misses 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import diskcache

from swiftshot.benchmarks.machine import print_table, write_result
from swiftshot.store import tiers
from swiftshot.store.tiers import DiskTier


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def writes(n: int, stock: bool, tagged: bool, many: bool = False) -> float:
    """CPU ms per miss (three puts, or with ``many`` one ``put_many`` of the three, as the
    server's write-behind now does) into a fresh tier."""
    values = (os.urandom(300), os.urandom(1 << 20), os.urandom(40 << 10))
    tags = ("product:bench", "tenant:bench") if tagged else ()
    with tempfile.TemporaryDirectory(prefix="swiftshot-disk-micro-") as d:
        patch = mock.patch.object(tiers, "_BytesDisk", diskcache.Disk) if stock else None
        if patch:
            patch.start()
        try:
            tier = DiskTier(Path(d), 4 << 30)
        finally:
            if patch:
                patch.stop()
        try:
            # a tier that has served a while: its folders exist (the shipped layout has 256;
            # diskcache's own 65 536, so it keeps making new ones), untimed
            for i in range(n):
                for j, v in enumerate(values):
                    tier.put(f"warm{i}-{j}", v, tags=tags)
            c = _cpu()
            for i in range(n):
                if many:
                    tier.put_many([(f"k{i}-{j}", v, None, tags) for j, v in enumerate(values)])
                    continue
                for j, v in enumerate(values):
                    tier.put(f"k{i}-{j}", v, tags=tags)
            return (_cpu() - c) * 1000 / n
        finally:
            tier.close()


async def _lookups(tier: DiskTier, n: int) -> tuple[float, float]:
    t = time.perf_counter()
    for i in range(n):
        assert tier.probe(f"missing-{i}") is False
    probe = (time.perf_counter() - t) * 1e6 / n
    t = time.perf_counter()
    for i in range(n):
        assert await asyncio.to_thread(tier.get, f"missing-{i}") is None
    thread = (time.perf_counter() - t) * 1e6 / n
    return probe, thread


def lookups(n: int) -> tuple[float, float]:
    """µs per missing-key look-up: the probe on the loop, and the thread hop."""
    with tempfile.TemporaryDirectory(prefix="swiftshot-disk-micro-") as d:
        tier = DiskTier(Path(d), 1 << 30)
        try:
            for i in range(200):  # a cache with rows in it, as a server's is
                tier.put(f"present-{i}", os.urandom(300))
            return asyncio.run(_lookups(tier, n))
        finally:
            tier.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--misses", type=int, default=200)
    ap.add_argument("--lookups", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    load0 = os.getloadavg()[0]
    rows = []
    for r in range(1, args.rounds + 1):
        row: dict[str, float | int] = {"round": r}
        for tagged in (False, True):
            for stock in (True, False):  # alternated within the round
                name = ("stock" if stock else "shipped") + ("_tags" if tagged else "")
                row[f"{name}_ms"] = round(writes(args.misses, stock, tagged), 3)
        # a miss's write-behind as shipped: one job, one transaction per table
        row["shipped_put_many_tags_ms"] = round(writes(args.misses, False, True, many=True), 3)
        probe, thread = lookups(args.lookups)
        row["probe_us"], row["thread_us"] = round(probe, 1), round(thread, 1)
        rows.append(row)
    print_table(rows)
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0] if k != "round"}
    print(f"\nmedians: {med}")
    print(f"(CPU ms per miss of three puts; µs per missing-key look-up, wall; load average "
          f"{load0:.2f} -> {os.getloadavg()[0]:.2f})")
    path = write_result("disk_tier_micro", {
        "args": vars(args), "rows": rows, "medians": med,
        "load_avg": [load0, os.getloadavg()[0]]}, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
