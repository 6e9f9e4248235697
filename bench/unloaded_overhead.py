"""Where `bench serve`'s unloaded-phase miss overhead comes from: the same phase, decomposed.

`swiftshot bench serve --load 1.5`'s unloaded phase (0.2 × capacity, open loop, priority mix,
Zipf prompts, half the generations followed by a GET /i/, a tenth product uploads) measures a
server-side overhead about twice the sequential driver's (`bench/miss_overhead.py`). This
driver runs that phase against one spawned `swiftshot serve` (process executor, as `bench
serve` spawns it) in several shapes, one after the other on the same server, and splits the
misses by what else was in flight:

    PYTHONPATH=$PWD/src python bench/unloaded_overhead.py [--rate 26.65] [--seconds 20]
        [--shapes mix,mix-gen,misses,seq,seq-fixed] [--out FILE]

Shapes:
  mix        the unloaded phase as bench serve runs it (--rate, fetches, uploads, priorities)
  mix-gen    the same, generations only (no fetches, no uploads)
  misses     Poisson arrivals of unique misses only (mix prompts, fresh seeds) at --miss-rate
  seq        unique misses back to back (mix prompts, fresh seeds), one at a time
  seq-fixed  back to back with bench/miss_overhead.py's prompt (the engine's cost there)

Per shape: misses, `infer` p50, server overhead p50 (Server-Timing total − work), `hop`,
`queue`, `cache` p50, the ratio, and the same for the misses that had no other request of the
client in flight from their send to their answer ("alone") and those that had ("overlapped");
plus the front's and the workers' CPU per request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from swiftshot.benchmarks import procs
from swiftshot.benchmarks.arrivals import arrival_times
from swiftshot.benchmarks.http import Client, loopback_target
from swiftshot.benchmarks.loadgen import HttpTarget, run_closed_loop, run_open_loop
from swiftshot.benchmarks.machine import machine_info
from swiftshot.benchmarks.mix import Mix, MixConfig, PlannedRequest, default_prompts
from swiftshot.benchmarks.serve import in_flight_beside
from swiftshot.benchmarks.stats import Outcome, percentile

WORK = ("infer", "master", "variant", "encode")
FIXED_PROMPT = "white sneaker on a marble plinth"


def _cpu(pid: int) -> tuple[float, float]:
    raw = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    front = (int(raw[11]) + int(raw[12])) / os.sysconf("SC_CLK_TCK")
    total = procs.cpu_seconds(pid) or front
    return front, total - front


def _sched(pid: int) -> dict[tuple[int, str], tuple[int, int, int]]:
    """(process pid, thread name) → (ns on a CPU, ns runnable but waiting for one, slices),
    summed over the threads of that name, for the front and each of its children."""
    kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    out: dict[tuple[int, str], tuple[int, int, int]] = {}
    for p in [pid, *map(int, kids)]:
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                name = (task / "comm").read_text().strip()
                run, wait, slices = map(int, (task / "schedstat").read_text().split())
            except (OSError, ValueError):
                continue
            name = "main" if int(task.name) == p else name.rstrip("0123456789_")
            a, b, c = out.get((p, name), (0, 0, 0))
            out[(p, name)] = (a + run, b + wait, c + slices)
    return out


def _sched_diff(before: dict, after: dict, pid: int, n: int) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, float]] = {}
    for key, (run, wait, slices) in after.items():
        r0, w0, s0 = before.get(key, (0, 0, 0))
        if run - r0 <= 0 and slices - s0 <= 0:
            continue
        who = ("front" if key[0] == pid else f"child{key[0]}") + ":" + key[1]
        rows[who] = {"cpu_ms_per_req": (run - r0) / 1e6 / n, "runq_wait_ms_per_req": (wait - w0) / 1e6 / n,
                     "slices_per_req": (slices - s0) / n}
    return dict(sorted(rows.items(), key=lambda kv: -kv[1]["cpu_ms_per_req"]))


def _spy(pid: int, folder: Path, shape: str) -> list[subprocess.Popen[bytes]]:
    folder.mkdir(parents=True, exist_ok=True)
    kids = [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                           text=True).stdout.split()]
    spy = str(Path(sys.executable).with_name("py-spy"))
    out = []
    for name, p in [("front", pid), *((f"child{k}", k) for k in kids)]:
        out.append(subprocess.Popen([spy, "record", "-p", str(p), "-r", "250", "--threads",
                                     "-f", "raw", "-o", str(folder / f"{shape}-{name}.txt")],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(1.0)
    return out


def split(outcomes: list[Outcome]) -> dict[str, object]:
    ok = [o for o in outcomes if o.ok]
    misses = [o for o in ok if o.x_cache == "miss" and "infer" in o.server_timing
              and "total" in o.server_timing]

    others = in_flight_beside(ok)  # the same split bench serve's "alone" figure uses

    def figures(ms: list[Outcome]) -> dict[str, float]:
        if not ms:
            return {"misses": 0}
        work = [sum(o.server_timing.get(k, 0.0) for k in WORK) for o in ms]
        over = [o.server_timing["total"] - w for o, w in zip(ms, work, strict=True)]
        seen = [(o.done - o.sent) * 1000 - w for o, w in zip(ms, work, strict=True)]
        infer = percentile([o.server_timing["infer"] for o in ms], 50)
        out = {"misses": len(ms), "infer": infer,
               "server_overhead": percentile(over, 50), "client_overhead": percentile(seen, 50),
               "server_ratio": percentile(over, 50) / infer}
        for k in ("hop", "queue", "cache", "master", "variant", "total"):
            out[k] = percentile([o.server_timing.get(k, 0.0) for o in ms], 50)
        return out

    alone = [m for m in misses if others(m) == 0]
    over = [m for m in misses if others(m) > 0]
    fetch = Counter(o.x_cache for o in ok if o.kind == "fetch")
    fetch_ms = {k: percentile([(o.done - o.sent) * 1000 for o in ok
                               if o.kind == "fetch" and o.x_cache == k], 50) for k in fetch}
    return {"all": figures(misses), "alone": figures(alone), "overlapped": figures(over),
            "requests": len(outcomes), "ok": len(ok), "fetch_x_cache": dict(fetch),
            "fetch_p50_ms": fetch_ms}


async def _unique(url: str, n: int, prompts: list[str] | None, seed0: int,
                  rate: float | None) -> list[Outcome]:
    """n unique misses: back to back (rate None) or Poisson at `rate`."""
    client = Client(*loopback_target(url))
    target = HttpTarget(client)
    rng = random.Random(seed0)

    def req(i: int) -> PlannedRequest:
        prompt = FIXED_PROMPT if prompts is None else rng.choice(prompts)
        body = {"model": "studio", "prompt": prompt, "size": "512x512", "n": 1,
                "response_format": "url", "output_format": "webp", "seed": seed0 + i}
        return PlannedRequest("generate", "standard", body, -1, None)

    try:
        if rate is None:
            outs = []
            for i in range(n):
                o = Outcome(kind="generate", priority="standard", scheduled=time.perf_counter())
                await target.send(req(i), o, outs.append)
                outs.append(o)
            return outs
        schedule = arrival_times(rate, n / rate, rng=random.Random(seed0))
        return await run_open_loop(schedule, [req(i) for i in range(len(schedule))],
                                   target.send, timeout_s=30, drain_s=4)
    finally:
        await client.aclose()


async def _mix(url: str, cfg: MixConfig, rate: float, seconds: float) -> list[Outcome]:
    client = Client(*loopback_target(url))
    target = HttpTarget(client, upload_route="/v1.0/removebg" if cfg.upload_share else None)
    mix = Mix(cfg)
    schedule = arrival_times(rate, seconds, rng=random.Random(cfg.seed))
    planned = [mix.next() for _ in schedule]
    try:
        return await run_open_loop(schedule, planned, target.send, timeout_s=30, drain_s=4)
    finally:
        await client.aclose()


async def _prefetched(url: str) -> float:
    client = Client(*loopback_target(url))
    try:
        text = (await client.request("GET", "/metrics")).body.decode()
    finally:
        await client.aclose()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith('swiftshot_prefetched_total{kind="variant"'))


async def _warm(url: str, cfg: MixConfig) -> None:
    client = Client(*loopback_target(url))
    target = HttpTarget(client)
    try:
        await run_closed_loop(Mix(cfg).unique, target.send, concurrency=8, duration_s=3.0)
    finally:
        await client.aclose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=26.65,
                    help="arrivals/s of the mix shapes (bench serve's unloaded phase: 0.2 × the "
                         "naive capacity; 26.65 in the ninth session's figure of record)")
    ap.add_argument("--miss-rate", type=float, default=10.0,
                    help="arrivals/s of the misses shape (the unloaded phase's misses: ~10/s)")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--n", type=int, default=200, help="misses of the seq shapes")
    ap.add_argument("--shapes", default="mix,mix-gen,misses,seq,seq-fixed")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pyspy", help="folder: py-spy record the front and each engine worker "
                    "during every shape (collapsed stacks, CPU samples only)")
    ap.add_argument("--env", action="append", default=[],
                    help="NAME=VALUE for the server's environment (an A/B of a setting)")
    ap.add_argument("--out")
    a = ap.parse_args()
    shapes = [s.strip() for s in a.shapes.split(",") if s.strip()]
    prompts = default_prompts()
    base = MixConfig(prompts=tuple(prompts), seed=a.seed, upload_share=0.1)
    results: dict[str, object] = {"load_before": os.getloadavg(), "started": time.strftime(
        "%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "rate": a.rate, "miss_rate": a.miss_rate}
    with tempfile.TemporaryDirectory(prefix="swiftshot-unloaded-") as d:
        extra = {"SWIFTSHOT_SERVER__DRAIN_TIMEOUT_S": "5",
                 "SWIFTSHOT_AUTH__ANONYMOUS_TIER": "realtime",
                 "SWIFTSHOT_ENGINE__EXECUTOR": "process"}
        if a.workers:
            extra["SWIFTSHOT_ENGINE__WORKERS"] = str(a.workers)
        extra.update(kv.split("=", 1) for kv in a.env)
        results["env"] = a.env
        env = procs.server_env(Path(d), "studio", "512x512", extra)
        port = procs.free_port()
        with procs.running(procs.swiftshot_command(port, "studio"), env, port) as url:
            pid = procs.pid_of(url)
            assert pid is not None
            asyncio.run(_warm(url, base))
            for i, shape in enumerate(shapes):
                spies = _spy(pid, Path(a.pyspy), shape) if a.pyspy else []
                c0, t0, l0 = _cpu(pid), time.time(), os.getloadavg()[0]
                s0 = _sched(pid)
                p0 = asyncio.run(_prefetched(url))
                seed = a.seed + 1000 * (i + 1)
                if shape == "mix":
                    outs = asyncio.run(_mix(url, MixConfig(prompts=tuple(prompts), seed=seed,
                                                           upload_share=0.1), a.rate, a.seconds))
                elif shape == "mix-gen":
                    outs = asyncio.run(_mix(url, MixConfig(prompts=tuple(prompts), seed=seed,
                                                           fetch_share=0.0), a.rate, a.seconds))
                elif shape == "misses":
                    outs = asyncio.run(_unique(url, int(a.miss_rate * a.seconds), prompts,
                                               10**8 + seed * 10**4, a.miss_rate))
                elif shape == "seq":
                    outs = asyncio.run(_unique(url, a.n, prompts, 2 * 10**8 + seed * 10**4, None))
                elif shape == "seq-fixed":
                    outs = asyncio.run(_unique(url, a.n, None, 3 * 10**8 + seed * 10**4, None))
                else:
                    raise SystemExit(f"unknown shape {shape!r}")
                c1 = _cpu(pid)
                s1 = _sched(pid)
                p1 = asyncio.run(_prefetched(url))
                for spy in spies:
                    spy.send_signal(signal.SIGINT)
                for spy in spies:
                    spy.wait(30)
                r = split(outs)
                n = max(1, r["requests"])
                r.update(front_cpu_ms_per_request=1000 * (c1[0] - c0[0]) / n,
                         workers_cpu_ms_per_request=1000 * (c1[1] - c0[1]) / n,
                         wall_s=time.time() - t0, load=(l0, os.getloadavg()[0]),
                         sched=_sched_diff(s0, s1, pid, n), variants_prefetched=p1 - p0)
                results[shape] = r
                al, ov, all_ = r["alone"], r["overlapped"], r["all"]
                print(f"{shape:10s} n={all_.get('misses')} infer={all_.get('infer', 0):.2f} "
                      f"over={all_.get('server_overhead', 0):.2f} hop={all_.get('hop', 0):.2f} "
                      f"q={all_.get('queue', 0):.2f} ratio={all_.get('server_ratio', 0):.3f} | "
                      f"alone n={al.get('misses')} over={al.get('server_overhead', 0):.2f} "
                      f"hop={al.get('hop', 0):.2f} | overlapped n={ov.get('misses')} "
                      f"over={ov.get('server_overhead', 0):.2f} hop={ov.get('hop', 0):.2f} | "
                      f"front cpu/req {r['front_cpu_ms_per_request']:.2f} ms  "
                      f"prefetched {p1 - p0:.0f}  "
                      f"load {l0:.1f}", flush=True)
                if r["fetch_x_cache"]:
                    print("    fetches:", {k: (v, round(r["fetch_p50_ms"][k], 2))
                                           for k, v in r["fetch_x_cache"].items()})
                for who, v in list(r["sched"].items())[:8]:
                    print(f"    {who:34s} cpu {v['cpu_ms_per_req']:6.2f}  runq wait "
                          f"{v['runq_wait_ms_per_req']:6.2f}  slices {v['slices_per_req']:6.1f}  (per request)")
    results["load_after"] = os.getloadavg()
    results["machine"] = machine_info()
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
