"""The OpenVINO parts of the diffusion engine called bare: where the time goes, per variant.

Reads the IRs the engine converted (``--openvino-dir``, the engine's ``openvino_dir``; convert
them first by loading the engine once with ``backend = openvino``) and, per variant, compiles
one of them (UNet, text encoder, tiny decoder) and times single inferences at the request's
shape: wall seconds and CPU seconds (user + system of this process: on a box shared with other
work, CPU time is the load-resistant figure). Variants::

    unet:dyn:bf16            the IR as converted (batch / height / width dynamic), bf16 hint
    unet:static:bf16         reshaped to the request's shape before compiling
    unet:static:bf16:nolat   ... without PERFORMANCE_HINT=LATENCY
    unet:static:bf16:t1      ... with INFERENCE_NUM_THREADS=1
    unet-int8w:static:bf16   NNCF 8-bit weights (engine int8 / quantize=weights)
    unet-int8:static:bf16    NNCF full int8 (activations too; engine quantize=int8)
    tiny_decoder:static:bf16:q8   the TAESD decoder quantised here (NNCF ``quantize``, weights
                             and activations, 4 random latents): not an engine option, measured
                             to decide (its NaN outputs are counted)

``--perf-counts`` adds OpenVINO's per-layer counters (``PERF_COUNT``) of the first variant,
summed by layer type and kernel: the profile the speed work starts from.

    flock /tmp/swiftshot-bench.lock python -m swiftshot.benchmarks.diffusion_ov \\
        --openvino-dir /tmp/dfx/ov --variants unet:dyn:bf16,unet:static:bf16 --perf-counts
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any


def _cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def find_ir(root: Path, component: str) -> Path:
    """The newest ``root/<component>-<key>/model.xml`` (``unet-int8`` / ``unet-int8w``: the
    UNet IR whose meta.json says so)."""
    import json

    base, _, kind = component.partition("-")
    found = []
    for xml in root.glob(f"{base}*-*/model.xml"):
        meta = json.loads((xml.parent / "meta.json").read_text()) if (
            xml.parent / "meta.json").is_file() else {}
        q = meta.get("quantize") or ("weights" if meta.get("int8") else "none")
        want = {"": "none", "int8w": "weights", "int8": "int8"}[kind]
        if q == want:
            found.append(xml)
    if not found:
        raise SystemExit(f"no {component} IR under {root} (load the engine with backend "
                         "openvino once to convert it)")
    return max(found, key=lambda p: p.stat().st_mtime)


def feeds_for(component: str, model: Any, size: int, batch: int) -> list[Any]:
    import numpy as np

    rng = np.random.default_rng(0)
    lat = size // 8
    if component.startswith("unet"):
        dim = model.inputs[2].get_partial_shape()[2].get_length()
        return [rng.standard_normal((batch, 4, lat, lat), np.float32) * 14.6,
                np.full((batch,), 999.0, np.float32),
                rng.standard_normal((batch, 77, dim), np.float32)]
    if component.startswith("text"):
        return [rng.integers(0, 49407, (batch, 77)).astype(np.int64)]
    return [rng.standard_normal((batch, 4, lat, lat), np.float32)]


def run_variant(root: Path, variant: str, size: int, batch: int, n: int,
                perf_counts: bool) -> dict[str, Any]:
    import openvino as ov

    from swiftshot.engines.ov_backend import core

    component, mode, precision, *flags = variant.split(":")
    xml = find_ir(root, component)
    model = core().read_model(str(xml))
    feeds = feeds_for(component, model, size, batch)
    if mode == "static":
        model.reshape({inp: ov.PartialShape(list(f.shape)) for inp, f in zip(model.inputs, feeds,
                                                                             strict=False)})
    quantize_s = None
    if "q8" in flags:  # full int8 of this IR, calibrated on random inputs of the same shape
        import nncf
        import numpy as np

        rng = np.random.default_rng(1)
        calib = [[rng.standard_normal(f.shape).astype(f.dtype) for f in feeds] for _ in range(4)]
        t = time.perf_counter()
        model = nncf.quantize(model, nncf.Dataset(calib), subset_size=len(calib),
                              fast_bias_correction=True)
        quantize_s = round(time.perf_counter() - t, 2)
    props: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision}
    if "nolat" not in flags:
        props["PERFORMANCE_HINT"] = "LATENCY"
    for f in flags:
        if f.startswith("t") and f[1:].isdigit():
            props["INFERENCE_NUM_THREADS"] = int(f[1:])
    if perf_counts:
        props["PERF_COUNT"] = True
    t, c = time.perf_counter(), _cpu()
    compiled = core().compile_model(model, "CPU", props)
    row: dict[str, Any] = {"variant": variant, "ir": xml.parent.name, "quantize_s": quantize_s,
                           "compile_s": round(time.perf_counter() - t, 2),
                           "compile_cpu_s": round(_cpu() - c, 2),
                           "threads": compiled.get_property("INFERENCE_NUM_THREADS"),
                           "load_before": _load()}
    req = compiled.create_infer_request()
    t = time.perf_counter()
    req.infer(feeds)
    row["first_s"] = round(time.perf_counter() - t, 3)
    walls, cpus = [], []
    for _ in range(n):
        t, c = time.perf_counter(), _cpu()
        req.infer(feeds)
        walls.append(time.perf_counter() - t)
        cpus.append(_cpu() - c)
    import numpy as np

    out = req.get_output_tensor(0).data
    row["nan_outputs"] = int(np.isnan(out).sum())
    row.update(wall_s=round(statistics.median(walls), 3), cpu_s=round(statistics.median(cpus), 3),
               wall_min_s=round(min(walls), 3), all_wall_s=[round(w, 3) for w in walls],
               all_cpu_s=[round(x, 3) for x in cpus], load_after=_load())
    if perf_counts:
        row["profile"] = profile(req)
    return row


def profile(req: Any, top: int = 15) -> list[dict[str, Any]]:
    """The last inference's per-layer times summed by (layer type, kernel), largest first."""
    by: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0])
    total = 0.0
    for p in req.profiling_info:
        us = p.real_time.total_seconds() * 1e6 if hasattr(p.real_time, "total_seconds") else float(p.real_time)
        if us <= 0:
            continue
        k = (p.node_type, p.exec_type)
        by[k][0] += us
        by[k][1] += 1
        total += us
    rows = sorted(by.items(), key=lambda kv: -kv[1][0])[:top]
    return [{"layer": t, "kernel": e, "ms": round(v[0] / 1000, 1), "count": int(v[1]),
             "share": round(v[0] / total, 3)} for (t, e), v in rows]


def main(argv: list[str] | None = None) -> int:
    from swiftshot.benchmarks.machine import print_table, write_result

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--openvino-dir", required=True)
    ap.add_argument("--variants", default="unet:dyn:bf16,unet:static:bf16")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("-n", type=int, default=3)
    ap.add_argument("--perf-counts", action="store_true")
    ap.add_argument("--out", default="bench/results/diffusion-ov.json")
    args = ap.parse_args(argv)
    rows = []
    for i, v in enumerate(args.variants.split(",")):
        rows.append(run_variant(Path(args.openvino_dir), v, args.size, args.batch, args.n,
                                args.perf_counts and i == 0))
        print({k: v for k, v in rows[-1].items() if k != "profile"}, flush=True)
    print_table(rows, ["variant", "compile_s", "first_s", "wall_s", "cpu_s", "wall_min_s",
                       "threads", "load_before"])
    for r in rows:
        if "profile" in r:
            print(f"\nper-layer profile of {r['variant']} (one inference):")
            print_table(r["profile"])
    path = write_result("diffusion-ov", {"size": args.size, "batch": args.batch, "n": args.n,
                                         "rows": rows}, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
