"""Benchmark: one 50-image batch, end to end, through the two batch paths.

* ``cli``: ``swiftshot batch`` (``FolderJob``) over a folder of synthetic product photos — decode,
  pipeline (engine + preset), encode, atomic write, manifest;
* ``api``: a real ``swiftshot serve`` subprocess; the photos are POSTed to ``/v1/batches`` as one
  multipart request; timed to the 202 (durably committed) and to the job being done.

``--mode studio`` (or ``auto`` when the preset is unknown to this build) renders prompts with
the studio engine instead of product photos. Prints a table and writes JSON with the machine::

    python -m swiftshot.benchmarks.jobs --photos 50 --preset amazon
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from swiftshot.benchmarks.machine import print_table, write_result
from swiftshot.testing.services import stop_process


def make_photos(folder: Path, n: int, size: tuple[int, int]) -> list[Path]:
    from swiftshot.testing.products import CASES, make_photo

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        case = CASES[i % len(CASES)]
        buf = io.BytesIO()
        make_photo(case, size, seed=i).image.save(buf, "JPEG", quality=90)
        path = folder / f"{i:03d}-{case.name}.jpg"
        path.write_bytes(buf.getvalue())
        paths.append(path)
    return paths


def preset_works(preset: str, settings: Any) -> bool:
    """Whether this build's ops know ``preset`` (the ops may land after the jobs)."""
    try:
        from swiftshot.ops.presets import get_preset

        get_preset(preset, settings.ops.presets)
    except (ImportError, ValueError):
        return False
    return True


def _children_cpu_s() -> float:
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _proc_cpu_s(pid: int) -> float:
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_cli(photos: Path, out: Path, settings: Any, args: argparse.Namespace) -> dict[str, Any]:
    from swiftshot.cli.batch import FolderJob

    job = FolderJob(photos, out, settings, preset=args.preset, fmt=args.format,
                    size=args.size, workers=args.workers)
    cpu0, t0 = _children_cpu_s(), time.perf_counter()
    report = job.run()
    wall, cpu = time.perf_counter() - t0, _children_cpu_s() - cpu0
    n = len(report.outcomes)
    return {"path": f"cli (workers={args.workers})", "images": n,
            "failed": len(report.failed), "accept_s": None, "wall_s": wall, "cpu_s": cpu,
            "ms_per_image": 1000 * wall / max(1, n), "note": "JPEG files written",
            "errors": sorted({o.error or "" for o in report.failed})[:3]}


@contextlib.contextmanager
def _server(tmp: Path, args: argparse.Namespace) -> Iterator[tuple[str, int]]:
    """A real ``swiftshot serve`` on a free port; yields (base URL, pid) once /readyz is 200."""
    import os
    import subprocess
    import sys

    import httpx

    w, h = (args.size or "1024x1024").lower().split("x")
    env = {**os.environ, "SWIFTSHOT_DATA_DIR": str(tmp / "server-var"),
           "SWIFTSHOT_ENGINE__DEFAULT": "studio", "HF_HUB_OFFLINE": "1",
           "SWIFTSHOT_SERVER__WARMUP_SHAPES": f"[[{int(w)}, {int(h)}]]",
           "SWIFTSHOT_JOBS__CONCURRENCY": str(args.concurrency), "SWIFTSHOT_JOBS__POLL_S": "0.02"}
    log = open(tmp / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "swiftshot", "serve", "--port", "0"],
                            env=env, stdout=subprocess.PIPE, stderr=log)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        if not m:
            raise SystemExit(f"server did not start: {(tmp / 'server.log').read_text()[-2000:]}")
        base = f"http://127.0.0.1:{m.group(1)}"
        deadline = time.monotonic() + 180
        while httpx.get(f"{base}/readyz").status_code != 200:
            if time.monotonic() > deadline:
                raise SystemExit("server not ready after 180 s")
            time.sleep(0.1)
        yield base, proc.pid
    finally:
        stop_process(proc, 30)
        log.close()
        if proc.stdout:
            proc.stdout.close()


def bench_api(photos: list[Path] | None, n: int, args: argparse.Namespace, tmp: Path
              ) -> dict[str, Any]:
    import httpx

    with _server(tmp, args) as (base, pid), httpx.Client(base_url=base, timeout=120) as http:
        fields: dict[str, Any] = {"output_format": args.format}
        if args.size:
            fields["size"] = args.size
        cpu0, t0 = _proc_cpu_s(pid), time.perf_counter()
        if photos is not None:
            files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in photos]
            r = http.post("/v1/batches", files=files, data={"json": orjson.dumps(
                {"preset": args.preset, "defaults": fields,
                 "items": [{"product_file": p.name} for p in photos]}).decode()})
        else:
            items = [{"prompt": f"white marble counter, soft light, shot {i}", **fields}
                     for i in range(n)]
            r = http.post("/v1/batches", json={"items": items})
        accepted = time.perf_counter() - t0
        if r.status_code != 202:
            raise SystemExit(f"batch refused: {r.status_code} {r.text}")
        url = r.json()["url"]
        while (body := http.get(url).json())["status"] != "done":
            time.sleep(0.02)
        wall, cpu = time.perf_counter() - t0, _proc_cpu_s(pid) - cpu0
        t1 = time.perf_counter()
        for item in body["items"]:
            if "url" in item:
                http.get(item["url"]).raise_for_status()
        fetch = time.perf_counter() - t1
    errors = sorted({i.get("error", "") for i in body["items"] if i["status"] == "failed"})
    return {"path": f"api (jobs.concurrency={args.concurrency})", "images": n,
            "failed": body["progress"]["failed"], "accept_s": accepted, "wall_s": wall,
            "cpu_s": cpu, "ms_per_image": 1000 * wall / n,
            "note": f"masters cached; first GET of all {args.format} files took {fetch:.2f} s",
            "errors": errors[:3]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", type=int, default=50, help="images in the batch (≤ 50)")
    p.add_argument("--photo-size", default="1000x1000", help="WxH of the synthetic photos")
    p.add_argument("--preset", default="amazon")
    p.add_argument("--size", default=None, help="output WxH (default: the preset's)")
    p.add_argument("--format", default="jpeg")
    p.add_argument("--mode", choices=("auto", "products", "studio"), default="auto")
    p.add_argument("--workers", type=int, default=2, help="worker processes of the cli path")
    p.add_argument("--concurrency", type=int, default=4, help="jobs.concurrency of the server")
    p.add_argument("--skip", action="append", default=[], choices=("cli", "api"))
    p.add_argument("--out", default=None, help="JSON result (default bench/results/jobs.json)")
    args = p.parse_args(argv)

    from swiftshot.config import Settings

    settings = Settings()
    mode = args.mode
    if mode == "auto":
        mode = "products" if preset_works(args.preset, settings) else "studio"
    w, h = (int(v) for v in args.photo_size.lower().split("x"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="swiftshot-bench-jobs-") as d:
        tmp = Path(d)
        photos = make_photos(tmp / "photos", args.photos, (w, h)) if mode == "products" else None
        if mode == "products" and "cli" not in args.skip:
            rows.append(bench_cli(tmp / "photos", tmp / "out", settings, args))
        if "api" not in args.skip:
            rows.append(bench_api(photos, args.photos, args, tmp))
    print(f"\n50-image batch — mode {mode}"
          + (f", preset {args.preset}, photos {args.photo_size}" if mode == "products" else ""))
    print_table(rows, ["path", "images", "failed", "accept_s", "wall_s", "cpu_s", "ms_per_image",
                       "note"])
    for r in rows:
        for e in r["errors"]:
            print(f"  {r['path']}: error: {e}")
    path = write_result("jobs", {"mode": mode, "preset": args.preset if mode == "products" else None,
                                 "photo_size": args.photo_size, "output_size": args.size,
                                 "format": args.format, "rows": rows}, args.out)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
