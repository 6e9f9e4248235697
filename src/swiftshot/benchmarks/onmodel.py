"""On-model shot speed (CPU): ``dress`` on synthetic model and garment photos.

    flock /tmp/swiftshot-bench.lock python -m swiftshot.benchmarks.onmodel [--size 1024]
        [--iterations 5] [--seeds 1 3 6] [--out FILE]

Each seed's model photo and garment photo are drawn at ``size``² (testing/people.py), then
``dress`` is timed ``iterations`` times (classical person segmentation, classical garment
cutout, no seam inpaint); the table gives p50 and min per seed and the p50 of each stage, and
the score of the result at that size. Writes ``bench/results/onmodel.json`` with the machine
and the load average before and after (the dev VM is shared: say so beside the figures).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from swiftshot.benchmarks.machine import print_table, write_result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 3, 6])
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    from swiftshot.ops.onmodel import dress
    from swiftshot.testing.people import make_garment, make_model, score

    load_before = os.getloadavg()
    rows, raw = [], []
    for seed in a.seeds:
        model = make_model(seed, (a.size, a.size))
        garment = make_garment(seed, (a.size, a.size))
        times, stages = [], []
        res = None
        for _ in range(a.iterations):
            st: dict[str, float] = {}
            t0 = time.perf_counter()
            res = dress(model.image, garment.image, timings=st)
            times.append((time.perf_counter() - t0) * 1000)
            stages.append(st)
        assert res is not None
        sc = score(res.garment_alpha, model, res.neckline_y)
        stage_p50 = {k: round(statistics.median(s[k] for s in stages) * 1000, 1)
                     for k in stages[0]}
        row = {"seed": seed, "size": f"{a.size}x{a.size}", "p50_ms": round(statistics.median(times), 1),
               "min_ms": round(min(times), 1), **{f"{k}_ms": v for k, v in stage_p50.items()},
               "coverage": sc["coverage"], "inside": sc["inside"]}
        rows.append(row)
        raw.append({"seed": seed, "times_ms": times, "stages": stages, "score": sc})
    load_after = os.getloadavg()
    print_table(rows, ["seed", "size", "p50_ms", "min_ms", "coverage", "inside"])
    print()
    print_table([{k: v for k, v in r.items() if k.endswith("_ms") and k not in ("p50_ms", "min_ms")}
                 | {"seed": r["seed"]} for r in rows])
    print(f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f}")
    path = write_result("onmodel", {"rows": rows, "raw": raw, "iterations": a.iterations,
                                    "loadavg_before": load_before, "loadavg_after": load_after},
                        a.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
