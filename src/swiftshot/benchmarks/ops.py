"""Ecommerce operations benchmark: per-stage latency of a product photo made catalog-ready.

    python -m swiftshot.benchmarks.ops [--size 2000] [--iterations 15] [--out FILE]

Paths measured (each stage timed separately, p50/p95 over the iterations, after a warm-up):

* ``studio``: decode JPEG → cutout → studio backdrop (engine, canvas size) → compose + shadow →
  amazon preset (fit to 2000²) → JPEG encode
* ``amazon``: decode JPEG → cutout → amazon preset (pure white, shadow, 2000²) → JPEG encode
* ``amazon-white``: the same for a white box on a white sweep, whose rim on the preset's white
  is faint (``compose.PlacedProduct.faint``): the preset's check segments the 2000² result, as
  ``check`` does with a file, instead of trusting the placed box
* ``cutout@1500``: the cutout alone on a 1500² photo

The studio backdrop is the same spec at each iteration, as for a catalog's products on one
preset: the studio engine keeps the frame and gives it again (``backdrop`` ≈ 0 ms).
``--fresh-backdrop`` gives each iteration its own seed, so the frame is rendered every time.

Prints a table and writes JSON with the machine (``swiftshot.benchmarks.machine``), including
the load average: on a shared machine other work inflates wall-clock numbers.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from swiftshot.benchmarks.machine import print_table, write_result

STAGES = ("decode", "cutout", "backdrop", "compose_shadow", "preset", "encode")


def _photo(size: int, case: str = "bottle_white_sweep") -> bytes:
    from swiftshot.testing.products import make_photo

    buf = io.BytesIO()
    make_photo(case, (size, size)).image.save(buf, "JPEG", quality=90)
    return buf.getvalue()


_CPU: dict[str, float] = {}
"""CPU milliseconds of the last stage timed (all threads of the process)."""


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    _CPU["last"] = (time.process_time() - c0) * 1000
    return out, (time.perf_counter() - t0) * 1000


class _Stages(dict):
    """stage → wall ms, with the CPU ms of each stage kept beside it under "cpu:stage"."""

    def __setitem__(self, key: str, value: float) -> None:
        super().__setitem__(key, value)
        super().__setitem__(f"cpu:{key}", _CPU["last"])


def run_paths(size: int, iterations: int, warmup: int = 2,
              fresh_backdrop: bool = False) -> list[dict[str, Any]]:
    from swiftshot.config import LimitsSettings
    from swiftshot.delivery.codecs import encode
    from swiftshot.engines import create_engine
    from swiftshot.inputs import load_image
    from swiftshot.ops.compose import ComposeParams, Placement, compose
    from swiftshot.ops.cutout import ClassicalSegmenter, cutout
    from swiftshot.ops.presets import BUILTIN_PRESETS, apply_preset
    from swiftshot.spec import RenderSpec

    data = _photo(size)
    limits = LimitsSettings()
    seg = ClassicalSegmenter()
    amazon = BUILTIN_PRESETS["amazon"]
    engine = create_engine("studio")
    engine.load()
    side = min(2048, size // 8 * 8)
    spec = RenderSpec(prompt="white seamless paper sweep, soft light", width=side,
                      height=side).normalized()
    engine.warmup([(side, side)])
    seeds = [1000]

    def studio() -> dict[str, float]:
        t: dict[str, float] = _Stages()
        im, t["decode"] = _timed(lambda: load_image(data, limits))
        cut, t["cutout"] = _timed(lambda: cutout(im, seg))
        this = spec
        if fresh_backdrop:
            seeds[0] += 1
            this = spec.model_copy(update={"seed": seeds[0]})
        bd, t["backdrop"] = _timed(lambda: engine.run([this])[0])
        comp, t["compose_shadow"] = _timed(
            lambda: compose(cut, bd, (side, side), ComposeParams(placement=Placement(0.88))))
        out, t["preset"] = _timed(lambda: apply_preset(comp, amazon))
        _, t["encode"] = _timed(lambda: encode(out, "jpeg", amazon.quality))
        return t

    def amazon_path(photo: bytes = data) -> dict[str, float]:
        t: dict[str, float] = _Stages()
        im, t["decode"] = _timed(lambda: load_image(photo, limits))
        cut, t["cutout"] = _timed(lambda: cutout(im, seg))
        out, t["preset"] = _timed(lambda: apply_preset(cut, amazon))
        _, t["encode"] = _timed(lambda: encode(out, "jpeg", amazon.quality))
        return t

    white = _photo(size, "white_on_white")

    def amazon_white() -> dict[str, float]:
        return amazon_path(white)

    small = load_image(_photo(1500), limits)

    def cutout_only() -> dict[str, float]:
        t: dict[str, float] = _Stages()
        _, t["cutout"] = _timed(lambda: cutout(small, seg))
        return t

    rows = []
    for name, fn in ((f"studio@{size}", studio), (f"amazon@{size}", amazon_path),
                     (f"amazon-white@{size}", amazon_white), ("cutout@1500", cutout_only)):
        for _ in range(warmup):
            fn()
        samples = [fn() for _ in range(iterations)]
        for kind, prefix in (("wall", ""), ("cpu", "cpu:")):
            totals = [sum(v for k, v in s.items() if k.startswith(prefix) and
                          (prefix or not k.startswith("cpu:"))) for s in samples]
            row: dict[str, Any] = {"path": name, "clock": kind}
            for stage in STAGES:
                vals = [s[prefix + stage] for s in samples if prefix + stage in s]
                row[stage] = round(statistics.median(vals), 1) if vals else ""
            row["total_p50"] = round(statistics.median(totals), 1)
            row["total_p95"] = round(sorted(totals)[max(0, int(0.95 * len(totals)) - 1)], 1)
            rows.append(row)
    return rows


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", type=int, default=2000, help="product photo side (px)")
    p.add_argument("--iterations", type=int, default=15)
    p.add_argument("--out", default=None, help="JSON file (default bench/results/ops.json)")
    p.add_argument("--threads", type=int, default=None,
                   help="OpenCV threads (match the cores the run is pinned to, e.g. 2)")
    p.add_argument("--fresh-backdrop", action="store_true",
                   help="a new backdrop seed per studio iteration (the engine renders the frame "
                        "each time instead of giving its kept one)")


def main(args: argparse.Namespace) -> int:
    if args.threads:
        import cv2

        cv2.setNumThreads(args.threads)
    load_before = os.getloadavg()
    rows = run_paths(args.size, args.iterations, fresh_backdrop=args.fresh_backdrop)
    load_after = os.getloadavg()
    print_table(rows, ["path", "clock", *STAGES, "total_p50", "total_p95"])
    print(f"(milliseconds, p50 per stage; wall = elapsed, cpu = CPU time of all the process's "
          f"threads; load average before/after: "
          f"{load_before[0]:.2f} / {load_after[0]:.2f} on {os.cpu_count()} cores)")
    path = write_result("ops", {"rows": rows, "size": args.size, "iterations": args.iterations,
                                "loadavg_before": load_before, "loadavg_after": load_after,
                                "affinity": sorted(os.sched_getaffinity(0)),
                                "cv2_threads": args.threads,
                                "fresh_backdrop": args.fresh_backdrop},
                        args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    raise SystemExit(main(parser.parse_args()))
