"""Prefetch on vs off in the bench mix: hit ratio of *first* requests for a variant, and the
realtime p95 of renders.

    python -m swiftshot.benchmarks.prefetch [--rate 6] [--duration 40] [--think-ms 0 200]

Starts the real server twice (studio engine, the mix's 512² WebP, a fresh data folder each),
``prefetch.enabled`` false then true, and replays the same open-loop schedule of the bench mix
(``benchmarks.mix``: Zipf prompts, priority classes, browser delivery profiles) against each:
``POST /v1/images/generations``, then — for the share of renders a browser shows — after
``think`` ms a ``GET /i/{key}.webp`` with that browser's Accept and Client Hints. A GET is a
*first request for a variant* when no earlier GET of the run asked for the same variant (the
same key, and the format, quality and width the server's negotiation picks for those headers);
its ``X-Cache`` says whether it was ready (``memory``/``disk``), joined an encode already
running (``coalesced``) or was encoded for it (``miss``). Requests in the first ``--warmup-s``
seconds teach the server the profiles and are not counted.

Prints a table and writes ``bench/results/prefetch.json`` with the machine and load average.
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
from typing import Any

from swiftshot.benchmarks.arrivals import arrival_times
from swiftshot.benchmarks.http import Client, loopback_target
from swiftshot.benchmarks.machine import write_result
from swiftshot.benchmarks.mix import Mix, MixConfig
from swiftshot.benchmarks.procs import free_port, running, server_env, swiftshot_command
from swiftshot.benchmarks.stats import percentile
from swiftshot.delivery import negotiate

GENERATE = "/v1/images/generations"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m swiftshot.benchmarks.prefetch",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=6.0, help="renders per second (open loop)")
    p.add_argument("--duration", type=float, default=40.0, help="seconds per arm")
    p.add_argument("--warmup-s", type=float, default=8.0, help="first seconds not counted")
    p.add_argument("--think-ms", type=float, nargs="+", default=[0.0],
                   help="delays between a render's answer and the browser's GET (one run each)")
    p.add_argument("--fetch-share", type=float, default=0.5)
    p.add_argument("--prompts", type=int, default=600)
    p.add_argument("--engine", default="studio")
    p.add_argument("--size", default="512x512")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    return p.parse_args(argv)


def variant_of(key: str, headers: dict[str, str], master_width: int) -> tuple[Any, ...]:
    """The variant ``GET /i/{key}.webp`` with ``headers`` gets (the server's rules)."""
    from swiftshot.config import DeliverySettings

    hints = negotiate.parse_hints({k.lower(): v for k, v in headers.items()})
    base = DeliverySettings().quality["webp"]
    q = negotiate.adapt_quality(base, hints) if hints.any else base
    w = negotiate.adapt_width(master_width, hints) if hints.any else None
    return key, "webp", q, w


async def run_arm(url: str, args: argparse.Namespace, think_s: float) -> dict[str, Any]:
    host, port = loopback_target(url)
    cfg = MixConfig(prompts=MixConfig().prompts[: args.prompts], fetch_share=args.fetch_share,
                    size=args.size, output_format="webp", model=args.engine, seed=args.seed)
    mix = Mix(cfg)
    times = arrival_times(args.rate, args.duration)
    planned = [mix.next() for _ in times]
    width = int(args.size.split("x")[0])
    seen: set[tuple[Any, ...]] = set()
    renders: list[dict[str, Any]] = []
    fetches: list[dict[str, Any]] = []
    clients = [Client(host, port) for _ in range(64)]
    free = list(clients)
    t0 = time.monotonic()

    async def one(at: float, req: Any) -> None:
        await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
        client = free.pop() if free else Client(host, port)
        try:
            start = time.monotonic()
            resp = await client.request("POST", GENERATE, {**req.headers,
                                                           "Content-Type": "application/json"},
                                        json.dumps(req.body).encode())
            done = time.monotonic()
            counted = at >= args.warmup_s
            renders.append({"priority": req.priority, "ms": (done - start) * 1000,
                            "status": resp.status, "counted": counted})
            if resp.status != 200 or req.fetch_headers is None:
                return
            item = json.loads(resp.body)["data"][0]["url"]
            path = "/" + item.split("://", 1)[1].split("/", 1)[1]
            key = path.split("/")[2].split(".")[0]
            if think_s:
                await asyncio.sleep(think_s)
            variant = variant_of(key, req.fetch_headers, width)
            first = variant not in seen
            seen.add(variant)
            s2 = time.monotonic()
            got = await client.request("GET", path, dict(req.fetch_headers))
            fetches.append({"first": first, "x_cache": got.headers.get("x-cache", "?"),
                            "status": got.status, "ms": (time.monotonic() - s2) * 1000,
                            "counted": counted})
        finally:
            free.append(client)

    await asyncio.gather(*(one(at, req) for at, req in zip(times, planned, strict=True)))
    for c in set(clients) | set(free):
        await c.aclose()
    metrics = await _scrape(host, port)
    return summarise(renders, fetches) | {"server": metrics}


async def _scrape(host: str, port: int) -> dict[str, float]:
    c = Client(host, port)
    try:
        text = (await c.request("GET", "/metrics")).body.decode()
    finally:
        await c.aclose()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("swiftshot_prefetched_total{"):
            kind = line.split('kind="', 1)[1].split('"', 1)[0]
            out[f"prefetched_{kind}"] = float(line.rsplit(" ", 1)[1])
    return out


def summarise(renders: list[dict[str, Any]], fetches: list[dict[str, Any]]) -> dict[str, Any]:
    first = [f for f in fetches if f["counted"] and f["first"] and f["status"] == 200]
    n = len(first)

    def share(*states: str) -> float:
        return sum(f["x_cache"] in states for f in first) / n if n else float("nan")

    rt = [r["ms"] for r in renders if r["counted"] and r["priority"] == "realtime"
          and r["status"] == 200]
    allr = [r["ms"] for r in renders if r["counted"] and r["status"] == 200]
    fms = [f["ms"] for f in first]
    return {
        "first_requests": n,
        "first_hit_ratio": share("memory", "disk", "redis"),
        "first_coalesced_ratio": share("coalesced"),
        "first_miss_ratio": share("miss"),
        "first_get_p50_ms": percentile(fms, 50), "first_get_p95_ms": percentile(fms, 95),
        "realtime_renders": len(rt),
        "realtime_p50_ms": percentile(rt, 50), "realtime_p95_ms": percentile(rt, 95),
        "render_p95_ms": percentile(allr, 95),
        "errors": sum(r["status"] != 200 for r in renders if r["counted"])
        + sum(f["status"] != 200 for f in fetches if f["counted"]),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result: dict[str, Any] = {"benchmark": "prefetch", "command": " ".join(sys.argv),
                              "config": vars(args), "load_avg_before": os.getloadavg(),
                              "runs": []}
    for think_ms in args.think_ms:
        for enabled in (False, True):
            with tempfile.TemporaryDirectory(prefix="swiftshot-prefetch-") as tmp:
                port = free_port()
                env = server_env(Path(tmp), args.engine, args.size,
                                 {"SWIFTSHOT_PREFETCH__ENABLED": str(enabled).lower()})
                with running(swiftshot_command(port, args.engine), env, port) as url:
                    arm = asyncio.run(run_arm(url, args, think_ms / 1000))
            arm.update(prefetch=enabled, think_ms=think_ms, load_avg=os.getloadavg())
            result["runs"].append(arm)
            print(f"think {think_ms:>5.0f} ms  prefetch {'on ' if enabled else 'off'}  "
                  f"first requests {arm['first_requests']:>4}  hit {arm['first_hit_ratio']:6.1%}  "
                  f"coalesced {arm['first_coalesced_ratio']:6.1%}  "
                  f"miss {arm['first_miss_ratio']:6.1%}  "
                  f"first GET p95 {arm['first_get_p95_ms']:7.1f} ms  "
                  f"realtime p95 {arm['realtime_p95_ms']:7.1f} ms (n={arm['realtime_renders']})  "
                  f"errors {arm['errors']}  load {arm['load_avg'][0]:.1f}", flush=True)
    path = write_result("prefetch", result, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
