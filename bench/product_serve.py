"""A product photo made catalog-ready through the server, as a seller's client sees it.

    flock /tmp/swiftshot-bench.lock .venv/bin/python bench/product_serve.py \
        [--size 2000] [--requests 12] [--preset amazon] [--executor process] [--accept 'image/*']

Starts `swiftshot serve` (studio engine, the given executor, one worker) on loopback, sends
``--requests`` different product photos (each a miss: same case, other seeds) one after the
other as `POST /v1/render` multipart with ``{"preset": ...}`` and answers as image bytes
(``Accept``), after one warm-up request. Per request: client-seen wall time, the server's
Server-Timing stages (decode = the front's check of the upload — its header only since the
upload is decoded once, in the worker, inside infer —, queue, infer = the photo's decode +
engine + ops in the worker, master, variant = the worker's encode of the delivered format,
hop, encode = the front's encode) and the front's and workers' CPU time. Prints p50/p95 and writes JSON with the machine
(bench/results/product-serve.json by default).

What it measures is the end-to-end path of a product render; `swiftshot.benchmarks.ops`
measures the same ops in one process with no server.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from swiftshot.benchmarks.machine import print_table, write_result
from swiftshot.benchmarks.procs import (
    cpu_seconds,
    free_port,
    pid_of,
    running,
    server_env,
    swiftshot_command,
)
from swiftshot.benchmarks.stats import parse_server_timing, percentile

STAGES = ("decode", "queue", "infer", "master", "variant", "hop", "encode", "total")


def photos(size: int, n: int) -> list[bytes]:
    from swiftshot.testing.products import make_photo

    out = []
    for seed in range(n):
        buf = io.BytesIO()
        make_photo("bottle_white_sweep", (size, size), seed=seed).image.save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2000, help="product photo side (px)")
    ap.add_argument("--requests", type=int, default=12)
    ap.add_argument("--preset", default="amazon")
    ap.add_argument("--executor", default="process", choices=("inline", "process"))
    ap.add_argument("--accept", default="image/*")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    shots = photos(args.size, args.requests + 1)
    port = free_port()
    load_before = __import__("os").getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="swiftshot-product-") as tmp:
        env = server_env(Path(tmp), "studio", "64x64", {
            "SWIFTSHOT_ENGINE__EXECUTOR": args.executor, "SWIFTSHOT_ENGINE__WORKERS": "1",
            "SWIFTSHOT_LIMITS__MAX_UPLOAD_BYTES": str(64 * 1024 * 1024)})
        with running(swiftshot_command(port, "studio"), env, port) as url, \
                httpx.Client(base_url=url, timeout=120) as client:
            pid = pid_of(url)

            def post(photo: bytes) -> httpx.Response:
                r = client.post("/v1/render", headers={"Accept": args.accept}, files=[
                    ("spec", (None, json.dumps({"preset": args.preset}))),
                    ("product", ("photo.jpg", photo, "image/jpeg"))])
                if r.status_code != 200:
                    raise SystemExit(f"render failed: {r.status_code} {r.text[:300]}")
                return r

            post(shots[0])  # warm-up: the worker's first cutout and the encoders' first call
            rows, walls, cpus = [], [], []
            for photo in shots[1:]:
                c0 = cpu_seconds(pid) if pid else None
                t0 = time.perf_counter()
                r = post(photo)
                wall = (time.perf_counter() - t0) * 1000
                c1 = cpu_seconds(pid) if pid else None
                assert r.headers.get("X-Cache") == "miss", r.headers
                st = parse_server_timing(r.headers.get("server-timing"))
                rows.append({"wall_ms": wall, **{s: st.get(s, 0.0) for s in STAGES},
                             "cpu_ms": (c1 - c0) * 1000 if c0 is not None and c1 is not None
                             else None, "bytes": len(r.content),
                             "content_type": r.headers.get("content-type")})
                walls.append(wall)
                if c0 is not None and c1 is not None:
                    cpus.append((c1 - c0) * 1000)
    summary = [{"figure": "client-seen wall ms", "p50": statistics.median(walls),
                "p95": percentile(walls, 95)}]
    for s in STAGES:
        vals = [r[s] for r in rows]
        summary.append({"figure": f"server {s} ms", "p50": statistics.median(vals),
                        "p95": percentile(vals, 95)})
    if cpus:
        summary.append({"figure": "server CPU ms (front + worker)", "p50": statistics.median(cpus),
                        "p95": percentile(cpus, 95)})
    load_after = __import__("os").getloadavg()[0]
    print(f"\nproduct render through the server: {args.size}² photo, preset {args.preset}, "
          f"{args.executor} executor, Accept {args.accept!r}, {len(rows)} misses "
          f"(load {load_before:.1f} → {load_after:.1f})")
    print_table(summary)
    path = write_result("product-serve", {
        "config": vars(args), "load_before": load_before, "load_after": load_after,
        "summary": summary, "rows": rows,
        "content_type": rows[0]["content_type"] if rows else None}, args.out)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
