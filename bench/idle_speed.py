"""How much slower the same code runs right after the process has slept: a tight loop over a tiny
working set (CPU speed: frequency, a halted vCPU's return) against a walk over a large one
(caches and TLB refilled), each timed after 0-100 ms of sleep. No swiftshot code.

    python bench/idle_speed.py [--gaps 0,1,3,10,50,100] [--n 200] [--out FILE]

docs/PERFORMANCE.md, eleventh session: the miss path's front runs 2.3× slower after 50 ms of
idleness than back to back; this separates a slower core from colder caches.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path


def tight(n: int = 2000) -> int:
    s = 0
    for i in range(n):  # a few KB of bytecode and ints: L1-resident
        s += i * i
    return s


def make_big(objects: int = 60_000) -> list[dict[str, int]]:
    rng = random.Random(1)
    big = [{"k": i, "v": rng.randrange(1000)} for i in range(objects)]  # ~10 MB of dicts
    rng.shuffle(big)
    return big


def walk(big: list[dict[str, int]], step: int = 20) -> int:
    s = 0
    for d in big[::step]:  # 3000 dicts scattered over the heap: misses in every cache level
        s += d["v"]
    return s


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gaps", default="0,1,3,10,50,100")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--out")
    a = ap.parse_args()
    big = make_big()
    res: dict[str, object] = {"load_before": os.getloadavg(),
                              "utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}
    gaps = [float(g) for g in a.gaps.split(",")]
    rows: dict[float, dict[str, list[float]]] = {g: {"tight": [], "walk": []} for g in gaps}
    for _ in range(a.n):  # gaps interleaved, so a change in the neighbours hits all alike
        for g in gaps:
            for kind, fn in (("tight", tight), ("walk", lambda: walk(big))):
                if g:
                    time.sleep(g / 1000)
                else:
                    fn()  # warm: the same call just before
                t0 = time.perf_counter_ns()
                fn()
                rows[g][kind].append((time.perf_counter_ns() - t0) / 1e3)
    out = {}
    for g in gaps:
        out[f"{g:g}ms"] = {k: statistics.median(v) for k, v in rows[g].items()}
        t, w = out[f"{g:g}ms"]["tight"], out[f"{g:g}ms"]["walk"]
        print(f"after {g:5g} ms asleep: tight loop {t:7.1f} µs   walk over 10 MB {w:7.1f} µs (p50)")
    res.update(out)
    res["load_after"] = os.getloadavg()
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
