"""Server memory under concurrent large uploads (issue 11, part 2).

Starts a real ``swiftshot serve`` (studio engine) on a free loopback port, measures its idle RSS
(after one small upload, so the code paths are loaded), then sends N concurrent ``POST
/v1/render`` uploads of distinct 7000x7000 photos (49 MP; PNG of ~180 KB or JPEG), each placed
on a 1024x1024 white canvas (op ``compose``), and samples the server's RSS every 20 ms until
10 s after the last answer.

Goal: peak RSS <= 1.5 GB above idle, and back within 200 MB of idle 10 s after.

    python bench/memory_uploads.py [--n 8] [--format png|jpeg] [--src DIR] [--env K=V ...]

``--src`` runs the server from another source tree (e.g. a checkout before the fix), ``--env``
sets server settings (e.g. SWIFTSHOT_LIMITS__MEMORY_BUDGET_BYTES=0). Prints a table and writes
bench/results/memory-uploads-<label>.json with the machine and the load average.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from swiftshot.benchmarks import procs
from swiftshot.benchmarks.machine import print_table, write_result

SIDE = 7000
SPEC = {"ops": [{"op": "compose", "backdrop": "color", "color": "#ffffff"}],
        "width": 1024, "height": 1024, "output_format": "jpeg"}


def photos(n: int, fmt: str, cache: Path) -> list[bytes]:
    """n distinct 49 MP product shots (a coloured disc on a light ground), cached on disk."""
    from PIL import Image, ImageDraw

    cache.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        path = cache / f"p{SIDE}-{i}.{fmt}"
        if not path.exists():
            im = Image.new("RGB", (SIDE, SIDE), (246, 245, 243))
            ImageDraw.Draw(im).ellipse((1500, 1400, 5500, 5600), fill=(170 + i, 40, 40 + 3 * i))
            buf = io.BytesIO()
            im.save(buf, "PNG", optimize=True) if fmt == "png" else im.save(buf, "JPEG",
                                                                             quality=88)
            path.write_bytes(buf.getvalue())
        out.append(path.read_bytes())
    return out


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def upload(url: str, data: bytes, fmt: str) -> tuple[int, float, str]:
    t0 = time.perf_counter()
    with httpx.Client(timeout=300) as c:
        r = c.post(f"{url}/v1/render", data={"spec": json.dumps(SPEC)},
                   files={"product": (f"p.{fmt}", data, f"image/{fmt}")})
    code = str(r.status_code)
    if r.status_code != 200:
        try:
            code += f" {r.json()['error']['code']}"
        except (ValueError, KeyError, TypeError):
            pass
    return code, time.perf_counter() - t0, r.headers.get("retry-after", "")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--format", choices=("png", "jpeg"), default="png")
    ap.add_argument("--src", default=None, help="source tree to run the server from")
    ap.add_argument("--env", action="append", default=[], help="K=V server setting")
    ap.add_argument("--label", default="after")
    ap.add_argument("--after-s", type=float, default=10.0)
    args = ap.parse_args()

    data = photos(args.n, args.format, Path(tempfile.gettempdir()) / "swiftshot-bench-photos")
    small = io.BytesIO()
    from PIL import Image, ImageDraw

    warm = Image.new("RGB", (300, 300), (246, 245, 243))
    ImageDraw.Draw(warm).ellipse((60, 60, 240, 240), fill=(170, 40, 40))
    warm.save(small, "PNG")
    port = procs.free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "SWIFTSHOT_DATA_DIR": f"{tmp}/var", "SWIFTSHOT_ENGINE__DEFAULT":
               "studio", "SWIFTSHOT_SERVER__WARMUP_SHAPES": "[[64, 64]]",
               **dict(kv.split("=", 1) for kv in args.env)}
        if args.src:
            env["PYTHONPATH"] = args.src
        # procs.running: started in its own session, ready on GET /readyz, stopped on exit
        with procs.running([sys.executable, "-m", "swiftshot", "serve", "--port", str(port)],
                           env, port) as url:
            pid = procs.pid_of(url)
            assert pid is not None
            status, _, _ = upload(url, small.getvalue(), "png")
            assert status == "200", f"warm-up upload answered {status}"
            time.sleep(1.0)
            idle = rss_mb(pid)
            samples: list[tuple[float, float]] = []
            stop = threading.Event()
            t0 = time.perf_counter()

            def sample() -> None:
                while not stop.is_set():
                    samples.append((time.perf_counter() - t0, rss_mb(pid)))
                    time.sleep(0.02)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            with ThreadPoolExecutor(args.n) as pool:
                results = list(pool.map(lambda d: upload(url, d, args.format), data))
            t_done = time.perf_counter() - t0
            time.sleep(args.after_s)
            stop.set()
            sampler.join()
            after = rss_mb(pid)
    peak = max(r for _, r in samples)
    codes: dict[str, int] = {}
    for code, _, _ in results:
        codes[str(code)] = codes.get(str(code), 0) + 1
    row = {"label": args.label, "format": args.format, "n": args.n, "idle_mb": round(idle),
           "peak_mb": round(peak), "peak_above_idle_mb": round(peak - idle),
           "after_10s_above_idle_mb": round(after - idle), "wall_s": round(t_done, 1),
           "codes": codes, "max_latency_s": round(max(s for _, s, _ in results), 1),
           "goal_peak_ok": peak - idle <= 1536, "goal_after_ok": after - idle <= 200}
    print_table([row])
    path = write_result(f"memory-uploads-{args.label}-{args.format}", {
        "load_avg": os.getloadavg(), "settings": args.env, "src": args.src or "this tree",
        "result": row, "latencies_s": [round(s, 2) for _, s, _ in results],
        "rss_trace_mb": [(round(t, 2), round(r)) for t, r in samples[::10]]})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
