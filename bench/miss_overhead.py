"""Sequential WebP misses (512² unless --size) against a spawned ``swiftshot serve`` (process executor), with the
Server-Timing split per miss: a quick driver for profiling the miss path's overhead (run py-spy
on the front and the workers beside it with ``--pause``) and for short before/after checks.

    PYTHONPATH=src python bench/miss_overhead.py --n 300 [--workers 2] [--size 512] [--gap-ms 0] [--out FILE]

Prints p50 of each stage, the server's overhead (total − work) and the client-seen overhead
(latency − work), each ÷ ``infer`` (the engine) — the same definitions as ``bench serve``'s
``server_side_overhead_ratio`` / ``server_overhead_ratio``, without the load generator's mix —
and the CPU per miss of the front process and of its engine workers (user + system from
/proc over the measured misses: less moved by neighbours than the latencies), and of the
front's event-loop thread alone from its schedstat (nanoseconds, not clock ticks).
Writes JSON with the machine when ``--out`` is given.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from swiftshot.benchmarks.http import Client
from swiftshot.benchmarks.machine import machine_info
from swiftshot.benchmarks.procs import (
    cpu_seconds,
    free_port,
    pid_of,
    running,
    server_env,
    swiftshot_command,
)
from swiftshot.benchmarks.stats import parse_server_timing, percentile

WORK = ("infer", "master", "variant", "encode")


def _loop_cpu(pid: int | None) -> float | None:
    """Seconds on a CPU of the front's main thread (its event loop), in nanoseconds'
    resolution (``/proc/PID/schedstat``; ``/proc/PID/stat`` counts clock ticks of 10 ms, which
    over a few hundred misses is 0.05-0.07 ms a miss of rounding: coarser than the changes
    measured)."""
    if pid is None:
        return None
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


def _cpu(pid: int | None) -> tuple[float, float] | None:
    """(front, its descendants) CPU seconds."""
    if pid is None:
        return None
    try:
        raw = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    front = (int(raw[11]) + int(raw[12])) / os.sysconf("SC_CLK_TCK")
    total = cpu_seconds(pid)
    return (front, total - front) if total is not None else None


async def drive(url: str, n: int, warm: int, pause: float, size: int = 512,
                cpu: dict[str, float] | None = None, pid: int | None = None,
                gap_s: float = 0.0) -> list[dict[str, float]]:
    host, port = url.split("//")[1].split(":")
    client = Client(host, int(port))
    rows = []
    c0: tuple[float, float] | None = None
    l0: float | None = None
    seed0 = int(time.time() * 1000) % 10_000_000 * 100
    if pause:
        print(f"server up at {url}; profiling window opens in {pause:g} s", flush=True)
        await asyncio.sleep(pause)
    for i in range(n + warm):
        if gap_s and i:
            await asyncio.sleep(gap_s)  # a lone miss after idleness: every process asleep
        body = json.dumps({"model": "studio", "prompt": "white sneaker on a marble plinth",
                           "size": f"{size}x{size}", "n": 1, "response_format": "url",
                           "output_format": "webp", "seed": seed0 + i}).encode()
        t0 = time.perf_counter()
        resp = await client.request("POST", "/v1/images/generations",
                                    {"Content-Type": "application/json",
                                     "X-Priority": "standard"}, body)
        t1 = time.perf_counter()
        assert resp.status == 200, (resp.status, resp.body[:300])
        if i < warm:
            if i == warm - 1:
                c0 = _cpu(pid)
                l0 = _loop_cpu(pid)
            continue
        st = dict(parse_server_timing(resp.headers.get("server-timing")))
        st["latency"] = (t1 - t0) * 1000
        if "infer" not in st:  # not rendered (seen once on a loaded box, 2026-12-06): no miss
            print(f"request {i}: no infer in Server-Timing {resp.headers.get('server-timing')!r}, "
                  f"X-Cache {resp.headers.get('x-cache')!r}: left out", flush=True)
            continue
        rows.append(st)
    c1 = _cpu(pid)
    l1 = _loop_cpu(pid)
    if cpu is not None and c0 is not None and c1 is not None:
        cpu["front"], cpu["workers"] = c1[0] - c0[0], c1[1] - c0[1]
    if cpu is not None and l0 is not None and l1 is not None:
        cpu["loop"] = l1 - l0
    await client.aclose()
    return rows


def summarise(rows: list[dict[str, float]]) -> dict[str, float]:
    work = [sum(r.get(k, 0.0) for k in WORK) for r in rows]
    infer = percentile([r["infer"] for r in rows], 50)
    server = percentile([r["total"] - w for r, w in zip(rows, work, strict=True)], 50)
    seen = percentile([r["latency"] - w for r, w in zip(rows, work, strict=True)], 50)
    keys = sorted({k for r in rows for k in r})
    out = {f"{k}_p50_ms": percentile([r.get(k, 0.0) for r in rows], 50) for k in keys}
    out.update({"misses": len(rows), "work_p50_ms": percentile(work, 50),
                "server_overhead_p50_ms": server, "client_overhead_p50_ms": seen,
                "server_side_overhead_ratio": server / infer,
                "server_overhead_ratio": seen / infer})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--warm", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--executor", default="process")
    ap.add_argument("--pause", type=float, default=0.0,
                    help="seconds to wait after start (attach a profiler), then drive")
    ap.add_argument("--size", type=int, default=512,
                    help="square size rendered (512: the goal's figure; 1024: a slower engine)")
    ap.add_argument("--gap-ms", type=float, default=0.0,
                    help="idle milliseconds before each miss (0: back to back; 50-100: each "
                         "miss alone after idleness, as the unloaded phase's lone misses)")
    ap.add_argument("--out")
    a = ap.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="swiftshot-miss-") as d:
        env = server_env(Path(d), "studio", f"{a.size}x{a.size}")
        cmd = [*swiftshot_command(port, "studio"), "--executor", a.executor,
               "--workers", str(a.workers)]
        with running(cmd, env, port) as url:
            if a.pause:
                print("pids:", os.popen(f"pgrep -f 'swiftshot serve.*{port}'").read().split(),
                      flush=True)
            cpu: dict[str, float] = {}
            rows = asyncio.run(drive(url, a.n, a.warm, a.pause, a.size, cpu, pid_of(url),
                                     a.gap_ms / 1000))
    s = summarise(rows)
    if cpu:
        s["front_cpu_ms_per_miss"] = cpu["front"] / len(rows) * 1000
        s["workers_cpu_ms_per_miss"] = cpu["workers"] / len(rows) * 1000
        if "loop" in cpu:
            s["front_loop_cpu_ms_per_miss"] = cpu["loop"] / len(rows) * 1000
    for k, v in s.items():
        print(f"{k:32s} {v:8.3f}" if isinstance(v, float) else f"{k:32s} {v}")
    if a.out:
        Path(a.out).write_text(json.dumps({"machine": machine_info(), "load": os.getloadavg(), "size": a.size,
                                           "gap_ms": a.gap_ms, "summary": s}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
