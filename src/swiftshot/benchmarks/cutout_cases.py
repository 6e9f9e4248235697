"""The classical cutout's time per evaluation category at full size.

    python -m swiftshot.benchmarks.cutout_cases [--size 1500] [--iterations 5] [--seed 0]
                                                [--out FILE]

The ops benchmark times one photo (a bottle on a white sweep); some steps of the cutout run
only on some photos (the white-on-white silhouette closure, the two-plane backdrop). This
times ``cutout`` on one case of each category of the evaluation set (``--seed``, a tuning
seed) at ``--size``², p50 of wall and CPU milliseconds (all threads of the process) after a
warm-up, and writes ``bench/results/cutout-cases.json`` with the machine and load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from swiftshot.benchmarks.machine import print_table, write_result


def main(argv: list[str] | None = None) -> int:
    from swiftshot.ops.cutout import ClassicalSegmenter, cutout
    from swiftshot.testing.products import CATEGORIES, eval_cases, make_photo

    ap = argparse.ArgumentParser(prog="python -m swiftshot.benchmarks.cutout_cases")
    ap.add_argument("--size", type=int, default=1500)
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    seg = ClassicalSegmenter()
    load_before = os.getloadavg()
    rows = []
    for case in eval_cases((args.seed,), CATEGORIES):
        image = make_photo(case, (args.size, args.size)).image
        cutout(image, seg)  # warm-up
        wall, cpu = [], []
        for _ in range(args.iterations):
            c0, t0 = time.process_time(), time.perf_counter()
            out = cutout(image, seg)
            cpu.append((time.process_time() - c0) * 1000)
            wall.append((time.perf_counter() - t0) * 1000)
        rows.append({"category": case.category, "case": case.name,
                     "wall_p50_ms": round(statistics.median(wall), 1),
                     "cpu_p50_ms": round(statistics.median(cpu), 1),
                     "confidence": round(float(out.info["cutout_confidence"]), 2)})
    load_after = os.getloadavg()
    print_table(rows)
    print(f"(size {args.size}², {args.iterations} iterations after a warm-up; load average "
          f"before/after: {load_before[0]:.2f} / {load_after[0]:.2f})")
    path = write_result("cutout-cases", {
        "size": args.size, "iterations": args.iterations, "seed": args.seed,
        "load_before": load_before, "load_after": load_after, "rows": rows}, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
