"""Soak at 80 % of measured capacity (issue 11, part 5): RSS growth and file descriptors.

Starts a real ``swiftshot serve`` (studio engine) on a free loopback port, measures its capacity
on a mixed workload with a closed loop (``--workers`` clients, ``--capacity-s`` seconds), then
drives it open-loop at ``--load`` (0.8) of that rate for ``--duration`` seconds. The mix: 70 %
``GET /i/{key}.webp`` of earlier renders (hits), 20 % repeated generations (memory hits), 10 %
new 256x256 renders (misses, encodes). RSS and open fds of the server are sampled each second;
growth is measured from the end of a warm-up (``--warmup-s``) to the end.

Goal (issue): RSS growth <= 5 %, no fd leak, no 5xx.

    python bench/soak.py [--duration 150] [--load 0.8]

Prints a table and writes bench/results/soak.json with the machine and the load average.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from swiftshot.benchmarks import procs
from swiftshot.benchmarks.machine import print_table, write_result


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Mix:
    def __init__(self, url: str, keys: list[str]) -> None:
        self.url = url
        self.keys = keys
        self.n = 0
        self.lock = threading.Lock()
        self.local = threading.local()

    def client(self) -> httpx.Client:
        c = getattr(self.local, "c", None)
        if c is None:
            c = self.local.c = httpx.Client(base_url=self.url, timeout=60)
        return c

    def one(self, rng: random.Random) -> tuple[str, int, float]:
        c = self.client()
        t0 = time.perf_counter()
        x = rng.random()
        if x < 0.7:
            kind = "hit"
            r = c.get(f"/i/{rng.choice(self.keys)}.webp")
        elif x < 0.9:
            kind = "gen-hit"
            r = c.post("/v1/images/generations", json={
                "prompt": f"soak backdrop {rng.randrange(20)}", "size": "256x256"})
        else:
            with self.lock:
                self.n += 1
                n = self.n
            kind = "miss"
            r = c.post("/v1/render", json={"prompt": f"soak miss {n} linen", "width": 256,
                                           "height": 256, "output_format": "webp"})
        return kind, r.status_code, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=150.0)
    ap.add_argument("--load", type=float, default=0.8)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--capacity-s", type=float, default=15.0)
    ap.add_argument("--warmup-s", type=float, default=20.0)
    args = ap.parse_args()
    port = procs.free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "SWIFTSHOT_DATA_DIR": f"{tmp}/var",
               "SWIFTSHOT_ENGINE__DEFAULT": "studio",
               "SWIFTSHOT_SERVER__WARMUP_SHAPES": "[[256, 256]]"}
        # procs.running: started in its own session, ready on GET /readyz, stopped on exit
        with procs.running([sys.executable, "-m", "swiftshot", "serve", "--port", str(port)],
                           env, port) as url:
            pid = procs.pid_of(url)
            assert pid is not None
            with httpx.Client(base_url=url, timeout=60) as c:
                keys = [c.post("/v1/render", json={"prompt": f"soak seed {i} marble",
                                                   "width": 256, "height": 256}).json()["key"]
                        for i in range(30)]
            mix = Mix(url, keys)

            # capacity: closed loop
            done = [0]
            end = time.perf_counter() + args.capacity_s

            def closed(seed: int) -> None:
                rng = random.Random(seed)
                while time.perf_counter() < end:
                    mix.one(rng)
                    done[0] += 1

            with ThreadPoolExecutor(args.workers) as pool:
                list(pool.map(closed, range(args.workers)))
            capacity = done[0] / args.capacity_s
            rate = capacity * args.load

            # soak: open loop at `rate`
            samples: list[tuple[float, float, int]] = []
            results: list[tuple[str, int, float]] = []
            stop = threading.Event()
            t0 = time.perf_counter()

            def sample() -> None:
                while not stop.is_set():
                    samples.append((time.perf_counter() - t0, rss_mb(pid), fds(pid)))
                    time.sleep(1.0)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            rng = random.Random(7)
            late = 0
            with ThreadPoolExecutor(64) as pool:
                futures = []
                i = 0
                while True:
                    due = t0 + i / rate
                    now = time.perf_counter()
                    if due - t0 > args.duration:
                        break
                    if due > now:
                        time.sleep(due - now)
                    elif now - due > 1.0:
                        late += 1
                    futures.append(pool.submit(mix.one, random.Random(rng.random())))
                    i += 1
                for f in futures:
                    try:
                        results.append(f.result())
                    except httpx.HTTPError as e:
                        results.append(("error", 0, 0.0))
                        print("client error:", e)
            stop.set()
            sampler.join()
    warm = [s for s in samples if s[0] >= args.warmup_s] or samples
    rss0, fd0 = warm[0][1], warm[0][2]
    rss1, fd1 = samples[-1][1], samples[-1][2]
    codes: dict[str, int] = {}
    for _, code, _ in results:
        codes[str(code)] = codes.get(str(code), 0) + 1
    lat = sorted(s for _, c, s in results if c == 200)
    row = {"duration_s": args.duration, "capacity_rps": round(capacity, 1),
           "rate_rps": round(rate, 1), "requests": len(results),
           "rss_start_mb": round(rss0), "rss_end_mb": round(rss1),
           "rss_max_mb": round(max(s[1] for s in warm)),
           "rss_growth_pct": round(100 * (rss1 - rss0) / rss0, 2),
           "fd_start": fd0, "fd_end": fd1, "fd_max": max(s[2] for s in warm),
           "p50_ms": round(1000 * lat[len(lat) // 2]) if lat else None,
           "p99_ms": round(1000 * lat[int(len(lat) * 0.99)]) if lat else None,
           "codes": codes, "late_sends": late}
    print_table([row])
    path = write_result("soak", {"load_avg": os.getloadavg(), "args": vars(args), "result": row,
                                 "samples": [(round(t), round(r), f) for t, r, f in samples]})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
