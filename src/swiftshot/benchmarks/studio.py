"""Latency of the studio engine and of the encoders; run ``python -m swiftshot.benchmarks.studio``.

``bench_studio`` times renders per size after a warm-up; ``bench_codecs`` times each delivery
format at each speed setting on a 1024² studio render (the numbers the defaults in
``DeliverySettings`` were chosen from) and the lossless master's encode + decode.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

PROMPTS = ("white paper sweep", "white marble", "oak wood table", "terrazzo flat lay", "linen")


def _percentiles(samples: list[float]) -> dict[str, float]:
    ms = np.asarray(samples) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p90_ms": round(float(np.percentile(ms, 90)), 2)}


def _time(fn: Callable[[], Any], repeats: int) -> list[float]:
    fn()  # first call pays lazy imports and allocator growth
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def bench_studio(sizes: Sequence[int] = (512, 1024, 2048), repeats: int = 15,
                 prompts: Sequence[str] = PROMPTS) -> list[dict[str, Any]]:
    """p50/p90 render time per prompt and square size, plus an 'all prompts' row per size."""
    from swiftshot.engines.studio import StudioEngine

    engine = StudioEngine()
    t = time.perf_counter()
    engine.load()
    load_ms = (time.perf_counter() - t) * 1000
    rows: list[dict[str, Any]] = []
    for size in sizes:
        every: list[float] = []
        for prompt in prompts:
            seed = iter(range(10**6))
            samples = _time(lambda p=prompt, s=size, sd=seed: engine.render(p, s, s, next(sd)), repeats)
            every += samples
            rows.append({"bench": "studio", "size": size, "prompt": prompt, **_percentiles(samples)})
        rows.append({"bench": "studio", "size": size, "prompt": "(all)", **_percentiles(every),
                     "load_ms": round(load_ms, 1)})
    return rows


def _psnr(image: Any, data: bytes) -> float:
    """Quality of an encoding against its source: equal bytes mean little at unequal quality."""
    import io

    from PIL import Image

    ref = np.asarray(image.convert("RGB"), np.float32)
    out = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.float32)
    mse = float(np.mean((ref - out) ** 2))
    return round(10 * np.log10(255.0**2 / mse), 2) if mse else float("inf")


def bench_codecs(repeats: int = 5, size: int = 1024,
                 prompt: str = "white marble") -> list[dict[str, Any]]:
    """Encode time and bytes per format and setting for one studio render."""
    from swiftshot.config import DeliverySettings
    from swiftshot.delivery.codecs import decode_master, encode, encode_master
    from swiftshot.engines.studio import StudioEngine

    engine = StudioEngine()
    engine.load()
    image = engine.render(prompt, size, size, 1)
    defaults = DeliverySettings()
    cases: list[tuple[str, str, DeliverySettings]] = []
    for level in (1, 6):
        cases.append(("png", f"compress_level={level}", defaults.model_copy(update={"png_compress_level": level})))
    cases.append(("jpeg", f"q={defaults.quality['jpeg']}", defaults))
    for method in range(7):
        cases.append(("webp", f"method={method}", defaults.model_copy(update={"webp_method": method})))
    for speed in range(6, 11):
        cases.append(("avif", f"speed={speed}", defaults.model_copy(update={"avif_speed": speed})))
    cases.append(("jpeg", "q=85 progressive", defaults.model_copy(update={"jpeg_progressive": True})))
    cases.append(("jpeg", "q=85 +icc", defaults.model_copy(update={"embed_icc": True})))
    rows: list[dict[str, Any]] = []
    for fmt, setting, st in cases:
        data = encode(image, fmt, source_type="algorithmicMedia", settings=st)
        samples = _time(lambda f=fmt, s=st: encode(image, f, source_type="algorithmicMedia", settings=s), repeats)
        rows.append({"bench": "codec", "format": fmt, "setting": setting, "encode_ms": _percentiles(samples)["p50_ms"],
                     "decode_ms": "", "bytes": len(data), "psnr_db": _psnr(image, data)})
    for master in ("raw", "png", "webp"):
        st = defaults.model_copy(update={"master_format": master})
        data = encode_master(image, st)
        enc = _time(lambda s=st: encode_master(image, s), repeats)
        dec = _time(lambda d=data: decode_master(d), repeats)
        rows.append({"bench": "codec", "format": "master", "setting": master,
                     "encode_ms": _percentiles(enc)["p50_ms"], "decode_ms": _percentiles(dec)["p50_ms"],
                     "bytes": len(data)})
    return rows


def main(argv: list[str] | None = None) -> int:
    from swiftshot.benchmarks.machine import machine_info, print_table, write_result

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", default="512,1024,2048")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--out", default=None, help="JSON path (default bench/results/studio.json)")
    args = p.parse_args(argv)
    sizes = tuple(int(s) for s in args.sizes.split(","))
    info = machine_info()
    print(f"# studio + codecs — {info['date']} — {info['cpu']} ({info['cores']} cores)")
    studio = bench_studio(sizes, args.repeats)
    print_table(studio, ["size", "prompt", "p50_ms", "p90_ms"])
    print()
    codecs = bench_codecs(max(3, args.repeats // 3))
    print_table(codecs, ["format", "setting", "encode_ms", "decode_ms", "bytes", "psnr_db"])
    path = write_result("studio", {"studio": studio, "codecs": codecs}, args.out)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
