"""``swiftshot bench serve``: open-loop load on a loopback server, with a realistic shop mix.

Steps: measure the engine's capacity (closed loop of uncached requests), then per server an
*unloaded* phase (a fifth of capacity) and a *loaded* phase (``--load`` × capacity, 1.5 by
default), both open loop with Poisson or gamma arrivals. ``--compare naive`` repeats the phases on
the naive baseline server (same engine, same encoder, same requests) and prints the ratios.

Reported per priority class: p50/p95/p99, goodput (answers within the SLO per second), throughput,
rejections, errors; the cache-hit ratio (``X-Cache``) and latency of hits and misses; the stage
breakdown the server itself measured (``/metrics`` before and after, diffed); and the client's own
cost (CPU per request, send lag) so a saturated client cannot pass for a slow server.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import dataclasses
import math
import os
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from swiftshot.benchmarks import procs
from swiftshot.benchmarks.arrivals import arrival_times
from swiftshot.benchmarks.http import Client, NotLoopback, loopback_target
from swiftshot.benchmarks.loadgen import HttpTarget, run_closed_loop, run_open_loop
from swiftshot.benchmarks.machine import print_table, write_result
from swiftshot.benchmarks.mix import (
    DEFAULT_PRIORITY_MIX,
    PRIORITIES,
    Mix,
    MixConfig,
    default_prompts,
    parse_shares,
)
from swiftshot.benchmarks.scrape import diff, parse, stage_breakdown
from swiftshot.benchmarks.stats import Outcome, percentile, ratio, summarise

# Routes that take a product photo (remove.bg's form shape); the first the server lists is used.
UPLOAD_ROUTES = ("/v1.0/removebg",)

QUICK = {"calibrate_s": 4.0, "unloaded_s": 8.0, "duration": 15.0, "drain_s": 4.0, "hits_s": 5.0}
FULL = {"calibrate_s": 8.0, "unloaded_s": 15.0, "duration": 60.0, "drain_s": 15.0, "hits_s": 15.0}


def add_arguments(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument("--url", help="a running server on loopback, e.g. http://127.0.0.1:8000")
    where.add_argument("--spawn", action="store_true",
                       help="start `swiftshot serve` on a free port (the default without --url)")
    p.add_argument("--engine", default="studio", help="engine of spawned servers (studio, fake ...)")
    p.add_argument("--compare", choices=["naive"], help="also run the naive baseline server")
    p.add_argument("--executor", choices=["inline", "process", "ray"], default=None,
                   help="executor of the spawned swiftshot server (default: serve's, process)")
    p.add_argument("--workers", type=int, default=None,
                   help="engine workers of the spawned server (process; default 1 per core)")
    p.add_argument("--rate", type=float, help="arrivals per second (default: --load × capacity)")
    p.add_argument("--load", type=float, default=1.5, help="offered load as a multiple of the "
                   "measured capacity (default 1.5)")
    p.add_argument("--burstiness", type=float, default=1.0,
                   help="gamma shape of inter-arrival gaps: 1 Poisson, <1 bursty")
    p.add_argument("--duration", type=float, help="seconds of arrivals in the loaded phase")
    p.add_argument("--max-requests", type=int, help="cap on requests per phase")
    p.add_argument("--unloaded-s", type=float, help="seconds of the unloaded phase (0 skips it)")
    p.add_argument("--unloaded-load", type=float, default=0.2,
                   help="offered load of the unloaded phase, × capacity (default 0.2)")
    p.add_argument("--calibrate-s", type=float,
                   help="seconds of capacity calibration per server (0 skips it; needs --rate)")
    p.add_argument("--hits-s", type=float, help="seconds of the cache-hit-only phase (0 skips it)")
    p.add_argument("--hits-rate", type=float, default=40.0,
                   help="arrivals per second of the cache-hit-only phase (default 40)")
    p.add_argument("--calibrate-concurrency", type=int, default=8)
    p.add_argument("--slo-ms", default="400",
                   help='latency SLO for goodput: "400" or per class "realtime=300,default=400"')
    p.add_argument("--priority-mix", default=DEFAULT_PRIORITY_MIX)
    p.add_argument("--zipf-s", type=float, default=1.1, help="Zipf exponent of prompt popularity")
    p.add_argument("--prompts", type=int, default=600, help="distinct prompts in the mix")
    p.add_argument("--upload-share", type=float,
                   help="share of product uploads (default 0.1 if the server has an upload route, else 0)")
    p.add_argument("--fetch-share", type=float, default=0.5,
                   help="share of generations followed by a GET of the image")
    p.add_argument("--size", default="512x512")
    p.add_argument("--format", default="webp", dest="output_format")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout-s", type=float, default=30.0, help="client timeout per request")
    p.add_argument("--drain-s", type=float, help="wait for in-flight answers after the last arrival")
    p.add_argument("--quick", action="store_true", help="short phases (under a minute) for CI")
    p.add_argument("--out", help="JSON result path (default bench/results/serve.json)")


def main(args: argparse.Namespace) -> int:
    from swiftshot.cli import CliError

    try:
        result = run(args)
    except (NotLoopback, ValueError, procs.ServerFailed) as e:
        raise CliError(str(e)) from None
    report(result)
    path = write_result("serve", json_safe(result), args.out)
    print(f"\nwrote {path}")
    return 0


# -- the benchmark ---------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark; returns the JSON-able result (without the machine block)."""
    base = QUICK if args.quick else FULL
    phases = {k: getattr(args, k) if getattr(args, k, None) is not None else v for k, v in base.items()}
    slo = parse_slo(args.slo_ms)
    if args.url:
        loopback_target(args.url)
    prompts = default_prompts()
    if not 1 <= args.prompts <= len(prompts):
        raise ValueError(f"--prompts must be between 1 and {len(prompts)}; got {args.prompts}")
    parse_shares(args.priority_mix, PRIORITIES, "--priority-mix")
    for name in ("load", "unloaded_load"):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be > 0; got {getattr(args, name)}")
    mix = dict(prompts=tuple(prompts[: args.prompts]), zipf_s=args.zipf_s,
               priority_mix=args.priority_mix, fetch_share=args.fetch_share, size=args.size,
               output_format=args.output_format, model=args.engine, seed=args.seed)
    MixConfig(**mix)  # validate shares before any server starts

    result: dict[str, Any] = {
        "benchmark": "serve",
        # the spawned servers inherit it: at nice 15-19 their lowered work is capped (report)
        "nice": None if args.url else os.nice(0),
        "lowered_by": lowered_by(),
        "command": "swiftshot bench " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["bench"] else sys.argv[1:]),
        "config": {**{k: v for k, v in vars(args).items() if k != "func"}, **phases, "slo_ms": slo},
    }
    with tempfile.TemporaryDirectory(prefix="swiftshot-bench-") as tmp:
        servers = _servers(args, Path(tmp))
        rate = args.rate
        loaded_primaries: dict[str, list[Outcome]] = {}
        capacity: dict[str, Any] = {"rps": math.nan, "measured_on": "given (--rate)"}
        for name, start in servers:
            with start as url:
                upload_route = asyncio.run(_upload_route(url))
                share = _upload_share(args.upload_share, upload_route, name)
                cfg = MixConfig(**mix, upload_share=share)
                # Every server's miss capacity is measured and reported; the first one's sets the
                # offered load: the naive server's when comparing (the engine called once per
                # request, nothing else), else the target's.
                cap = None
                if phases["calibrate_s"] > 0:
                    cap = asyncio.run(calibrate(url, cfg, upload_route, phases["calibrate_s"],
                                                args.calibrate_concurrency))
                if rate is None:
                    if cap is None or not cap["rps"] > 0:
                        raise ValueError(f"capacity calibration on {name} finished no request; "
                                         "is the engine working? (or give --rate)")
                    capacity = {**cap, "measured_on": name}
                    rate = args.load * cap["rps"]
                unloaded_rate = args.unloaded_load * rate / args.load
                result[name], loaded_primaries[name] = asyncio.run(_server_phases(
                    url, cfg, upload_route, rate, unloaded_rate, phases, args, slo,
                    hits=name == "swiftshot"))
                result[name].update(capacity=cap, upload_route=upload_route, upload_share=share)
        result["capacity"] = capacity
        result["rate_rps"] = rate
    for name in ("swiftshot", "naive"):
        if name in result:
            result[name]["derived"] = derived(result[name])
    if "naive" in result and "swiftshot" in result:
        result["ratios"] = compare(result["swiftshot"]["derived"], result["naive"]["derived"],
                                   result["naive"]["loaded"]["window_s"])
        result["same_requests"] = same_requests(loaded_primaries.get("swiftshot", []),
                                                loaded_primaries.get("naive", []))
        result["ratios"]["miss_p50_same_requests"] = result["same_requests"]["ratio"]
        result["swiftshot"]["derived"]["overhead_beyond_naive_ratio"] = beyond_naive(
            result["swiftshot"]["derived"], result["naive"]["derived"])
    return result


def beyond_naive(sw: dict[str, float], naive: dict[str, float]) -> float:
    """The overhead ratio less what a minimal server's own round trip costs on this machine.

    Both servers' unloaded phases in the same run, p50 over their misses: swiftshot's
    overhead (client-seen latency − its work: infer + master + variant) minus the naive
    server's (client-seen latency − its work: infer + encode, from its Server-Timing), ÷
    swiftshot's ``infer`` p50. What is left is what swiftshot's serving machinery adds beyond
    HTTP on loopback, the client and a FastAPI route on a thread — which any server pays
    (``server_overhead_ratio`` keeps them in; this figure is shown beside it, never instead).
    Can be negative (swiftshot's HTTP path is leaner than the naive one's)."""
    return ratio(sw.get("overhead_p50_ms", math.nan) - naive.get("overhead_p50_ms", math.nan),
                 sw.get("infer_p50_ms", math.nan))


def same_requests(sw: list[Outcome], naive: list[Outcome]) -> dict[str, Any]:
    """swiftshot's misses against the naive server's answers to *the same requests*.

    ``sw`` and ``naive``: the loaded phase's generations and uploads (no fetches), in the order
    the mix planned them — both servers get the same schedule and the same requests, so the
    i-th of each is the same request. A swiftshot miss is a request it had not seen before
    (its repeats are cache hits); the naive server answers every request with a render, but
    since c02d36e its studio engine keeps its last frames, so a Zipf repeat of a prompt is a
    kept frame there (``infer`` ~0.14 ms instead of ~3-8). ``miss_p50`` (kept beside) divides
    swiftshot's first-seen renders by the naive server's first-seen *and* repeated ones; this
    pairs each swiftshot miss with the naive server's answer to that very request — a render of
    a frame neither engine had — and takes both p50s (latency from the scheduled arrival, as
    ``miss_p50``) over those pairs. ``naive_rest_*``: the naive server's other answers (the
    requests swiftshot answered from its cache), for context."""
    if not sw or len(sw) != len(naive):
        return {"pairs": 0, "ratio": math.nan}
    pairs = [(s, n) for s, n in zip(sw, naive, strict=True)
             if s.ok and s.x_cache == "miss" and n.ok]
    rest = [n for s, n in zip(sw, naive, strict=True)
            if n.ok and n.kind == "generate" and not (s.ok and s.x_cache == "miss")]
    sw_p50 = percentile([s.latency_ms for s, _ in pairs], 50)
    nv_p50 = percentile([n.latency_ms for _, n in pairs], 50)
    return {"pairs": len(pairs), "swiftshot_miss_p50_ms": sw_p50, "naive_p50_ms": nv_p50,
            "ratio": ratio(sw_p50, nv_p50),
            "naive_infer_p50_ms": percentile([n.server_timing["infer"] for _, n in pairs
                                              if "infer" in n.server_timing], 50),
            "naive_rest": len(rest),
            "naive_rest_p50_ms": percentile([n.latency_ms for n in rest], 50),
            "naive_rest_infer_p50_ms": percentile([n.server_timing["infer"] for n in rest
                                                   if "infer" in n.server_timing], 50)}


def _servers(args: argparse.Namespace, tmp: Path) -> list[tuple[str, AbstractContextManager[str]]]:
    out: list[tuple[str, AbstractContextManager[str]]] = []
    if args.compare == "naive":
        port = procs.free_port()
        env = procs.server_env(tmp / "naive", args.engine, args.size)
        out.append(("naive", procs.running(procs.naive_command(port, args.engine, args.size), env, port)))
    if args.url:
        out.append(("swiftshot", nullcontext(args.url.rstrip("/"))))
    else:
        port = procs.free_port()
        # Auth is off in the benchmark; the anonymous caller's tier caps X-Priority, so it is
        # raised to realtime for the mix's realtime class to be honoured.
        extra = {"SWIFTSHOT_SERVER__DRAIN_TIMEOUT_S": "5",
                 "SWIFTSHOT_AUTH__ANONYMOUS_TIER": "realtime"}
        if getattr(args, "executor", None):
            extra["SWIFTSHOT_ENGINE__EXECUTOR"] = args.executor
        if getattr(args, "workers", None):
            extra["SWIFTSHOT_ENGINE__WORKERS"] = str(args.workers)
        env = procs.server_env(tmp / "swiftshot", args.engine, args.size, extra)
        out.append(("swiftshot", procs.running(procs.swiftshot_command(port, args.engine), env, port)))
    return out


def _upload_share(asked: float | None, route: str | None, name: str) -> float:
    if asked is None:
        return 0.1 if route else 0.0
    if asked > 0 and route is None:
        raise ValueError(f"--upload-share {asked} asks for product uploads but the {name} server "
                         f"has none of the upload routes {', '.join(UPLOAD_ROUTES)}")
    return asked


async def _upload_route(url: str) -> str | None:
    """The first upload route the server has: probed with an empty form, which a server that
    has the route refuses with 400/422 and one without it answers 404/405."""
    client = Client(*loopback_target(url))
    try:
        for route in UPLOAD_ROUTES:
            resp = await client.request("POST", route, {"Content-Type": "application/json"}, b"{}")
            if resp.status not in (404, 405):
                return route
    except OSError:
        return None
    finally:
        await client.aclose()
    return None


async def calibrate(url: str, cfg: MixConfig, upload_route: str | None, duration_s: float,
                    concurrency: int) -> dict[str, Any]:
    """Closed-loop capacity for uncached requests (each has its own prompt and seed)."""
    client = Client(*loopback_target(url))
    target = HttpTarget(client, upload_route=upload_route)
    mix = Mix(cfg)
    try:
        outs, window = await run_closed_loop(mix.unique, target.send, concurrency=concurrency,
                                             duration_s=duration_s, warmup_s=min(1.0, duration_s / 3))
    finally:
        await client.aclose()
    ok = [o for o in outs if o.ok]
    if outs and len(ok) < 0.9 * len(outs):
        bad = next(o for o in outs if not o.ok)
        raise ValueError(f"capacity calibration: {len(outs) - len(ok)} of {len(outs)} requests "
                         f"failed (first: status {bad.status}, {bad.error})")
    service = [(o.done - o.sent) * 1000 for o in ok]
    return {"rps": len(ok) / window, "concurrency": concurrency, "window_s": window,
            "service_p50_ms": percentile(service, 50), "requests": len(outs)}


async def _server_phases(url: str, cfg: MixConfig, upload_route: str | None, rate: float,
                         unloaded_rate: float, phases: dict[str, float], args: argparse.Namespace,
                         slo: dict[str, float], *, hits: bool
                         ) -> tuple[dict[str, Any], list[Outcome]]:
    """The phases on one server; with them the loaded phase's generations and uploads (not
    the fetches) in the mix's order, for :func:`same_requests`."""
    out: dict[str, Any] = {"url": url}
    common = dict(upload_route=upload_route, burstiness=args.burstiness,
                  max_requests=args.max_requests, slo=slo, timeout_s=args.timeout_s,
                  drain_s=phases["drain_s"])
    if phases["unloaded_s"] > 0:
        out["unloaded"], _ = await run_phase(url, cfg, unloaded_rate, phases["unloaded_s"], **common)
    loaded_cfg = dataclasses.replace(cfg, seed=cfg.seed + 1)
    primaries: list[Outcome] = []
    out["loaded"], answered = await run_phase(url, loaded_cfg, rate, phases["duration"],
                                              primaries=primaries, **common)
    if hits and phases["hits_s"] > 0 and answered:
        # The cache path alone: only prompts already answered, at a modest rate, no misses in
        # flight to compete for the CPU. The cache-hit latency goal is held against this phase.
        hit_cfg = dataclasses.replace(cfg, prompts=tuple(answered[:64]), zipf_s=0.0,
                                      fetch_share=0.0, upload_share=0.0, seed=cfg.seed + 2)
        out["hits"], _ = await run_phase(url, hit_cfg, args.hits_rate, phases["hits_s"], **common)
    return out, primaries


async def run_phase(url: str, cfg: MixConfig, rate: float, duration_s: float, *,
                    upload_route: str | None, burstiness: float, max_requests: int | None,
                    slo: dict[str, float], timeout_s: float, drain_s: float,
                    primaries: list[Outcome] | None = None) -> tuple[dict[str, Any], list[str]]:
    """One open-loop phase: the summary (with the client's own cost and the server's stage
    diff) and the prompts of the generations answered OK, most requested first."""
    client = Client(*loopback_target(url))
    target = HttpTarget(client, upload_route=upload_route)
    mix = Mix(cfg)
    schedule = arrival_times(rate, duration_s, burstiness=burstiness, max_requests=max_requests,
                             rng=random.Random(cfg.seed))
    planned = [mix.next() for _ in schedule]
    try:
        before = await _scrape(client)
        pid = procs.pid_of(url)
        server_cpu0 = procs.cpu_seconds(pid) if pid else None
        cpu0, wall0 = time.process_time(), time.perf_counter()
        outcomes = await run_open_loop(schedule, planned, target.send, timeout_s=timeout_s,
                                       drain_s=drain_s)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        server_cpu1 = procs.cpu_seconds(pid) if pid else None
        after = await _scrape(client)
    finally:
        await client.aclose()
    summary = summarise(outcomes, duration_s, slo)
    summary["rate_rps"] = rate
    summary["client"].update({
        "cpu_ms_per_request": 1000 * cpu / max(1, len(outcomes)),
        "cpu_share_of_one_core": cpu / wall if wall else math.nan,
    })
    if before is not None and after is not None:
        summary["server"] = stage_breakdown(diff(before, after))
    if server_cpu0 is not None and server_cpu1 is not None:
        # CPU time, unlike wall time, does not grow when other jobs crowd the machine: the
        # server's cost per request, whatever the noise.
        summary["server_cpu_ms_per_request"] = 1000 * (server_cpu1 - server_cpu0) / max(1, len(outcomes))
        summary["server_cpu_share_of_one_core"] = (server_cpu1 - server_cpu0) / wall if wall else math.nan
    summary["overhead"] = overhead(outcomes)
    errors = sorted({o.error for o in outcomes if o.error})[:5]
    if errors:
        summary["sample_errors"] = errors
    sent = [o for o in outcomes if o.kind != "fetch"]  # in the order planned
    if primaries is not None:
        primaries.extend(sent)
    answered = Counter(r.body["prompt"] for r, o in zip(planned, sent, strict=True)
                       if o.ok and r.kind == "generate")
    return summary, [p for p, _ in answered.most_common()]


async def _scrape(client: Client):
    try:
        resp = await client.request("GET", "/metrics")
    except OSError:
        return None
    return parse(resp.body.decode()) if resp.status == 200 else None


WORK_STAGES = ("infer", "master", "variant", "encode")
"""Server-Timing stages that are rendering work, wherever it ran: the engine and ops
(``infer``), the lossless master encode (``master``), the delivery variant encoded by the
engine worker (``variant``) or by the front (``encode``)."""


def overhead(outcomes: list[Outcome]) -> dict[str, float]:
    """What serving adds around the rendering work on misses, relative to engine time.

    Per miss: *work* = the Server-Timing stages in :data:`WORK_STAGES` (the worker reports its
    own engine, ops and encode seconds with the result, so the split is the same whether the
    work ran in a thread of the front, a worker process or a Ray replica); *overhead* = what
    the client saw from sending the request to the last byte, minus that work: HTTP, validation,
    cache look-ups and stores, queue and batching wait, the executor hop (``hop``: pickling,
    pipe, wake-ups), and the client's and kernel's share. ``ratio`` = overhead p50 ÷ engine
    (``infer``) p50. ``server_ratio`` uses the server's own ``total`` instead of the client's
    latency (leaves out HTTP parsing before the handler, the socket and the client).
    """
    # swiftshot's answers say X-Cache: miss; the naive server's never hit, say nothing, and
    # report their own work (infer, encode) in Server-Timing too
    misses = [o for o in outcomes if o.ok and "infer" in o.server_timing
              and (o.x_cache == "miss" or (o.x_cache is None and o.kind == "generate"))]
    if not misses:
        return {"misses": 0, "ratio": math.nan, "server_ratio": math.nan,
                "client_seen_ratio": math.nan}
    infer = percentile([o.server_timing["infer"] for o in misses], 50)
    work = [sum(o.server_timing.get(k, 0.0) for k in WORK_STAGES) for o in misses]
    seen = [(o.done - o.sent) * 1000 - w for o, w in zip(misses, work, strict=True)]
    server = [o.server_timing["total"] - w for o, w in zip(misses, work, strict=True)
              if "total" in o.server_timing]
    scheduled = [o.latency_ms - w for o, w in zip(misses, work, strict=True)]
    stage_p50 = {k: percentile([o.server_timing.get(k, 0.0) for o in misses], 50)
                 for k in (*WORK_STAGES, "queue", "hop", "cache", "total")}
    # Beside the figure, never instead of it: the same server-side p50 over the misses that had
    # no other request of the client in flight from their send to their answer — the miss
    # path's own overhead, without the phase's concurrent hits, fetches, uploads and renders on
    # the same cores (docs/PERFORMANCE.md, "the unloaded phase's overhead").
    beside = in_flight_beside(outcomes)
    alone = [(o, w) for o, w in zip(misses, work, strict=True)
             if "total" in o.server_timing and beside(o) == 0]
    alone_infer = percentile([o.server_timing["infer"] for o, _ in alone], 50)
    alone_server = percentile([o.server_timing["total"] - w for o, w in alone], 50)
    return {"misses": len(misses), "infer_p50_ms": infer,
            "work_p50_ms": percentile(work, 50),
            "latency_p50_ms": percentile([(o.done - o.sent) * 1000 for o in misses], 50),
            "overhead_p50_ms": percentile(seen, 50),
            "server_overhead_p50_ms": percentile(server, 50),
            "stages_p50_ms": stage_p50,
            "ratio": ratio(percentile(seen, 50), infer),
            "server_ratio": ratio(percentile(server, 50), infer),
            # from the scheduled arrival: adds the client's own send lag on a crowded machine
            "client_seen_ratio": ratio(percentile(scheduled, 50), infer),
            "alone_misses": len(alone), "alone_infer_p50_ms": alone_infer,
            "alone_server_overhead_p50_ms": alone_server,
            "alone_server_ratio": ratio(alone_server, alone_infer)}


def in_flight_beside(outcomes: list[Outcome]) -> Callable[[Outcome], int]:
    """A function of one outcome ``o`` of ``outcomes``: how many others were in flight at some
    moment between its send and its answer (sent before it was answered, answered after it
    was sent). Those answered by ``o``'s send were all sent before its answer, so it is the
    number sent before ``o.done`` less the number answered by ``o.sent``, less ``o`` itself."""
    timed = [x for x in outcomes if not (math.isnan(x.sent) or math.isnan(x.done))]
    sends = sorted(x.sent for x in timed)
    answers = sorted(x.done for x in timed)

    def beside(o: Outcome) -> int:
        itself = 1 if o.sent < o.done else 0
        return bisect.bisect_left(sends, o.done) - bisect.bisect_right(answers, o.sent) - itself

    return beside


def parse_slo(text: str) -> dict[str, float]:
    """``"400"`` → every class 400 ms; ``"realtime=300,default=400"`` → per class."""
    allowed = (*PRIORITIES, "default")
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        name, sep, value = part.rpartition("=") if "=" in part else ("default", "=", part)
        if name not in allowed:
            raise ValueError(f"--slo-ms: {name!r} is not one of {', '.join(allowed)}")
        try:
            ms = float(value)
        except ValueError:
            raise ValueError(f"--slo-ms: {value!r} is not a number of milliseconds") from None
        if ms <= 0:
            raise ValueError(f"--slo-ms must be > 0 ms; got {ms:g}")
        out[name] = ms
    out.setdefault("default", 400.0)
    return out


# -- derived figures, ratios, report ---------------------------------------------------------


def derived(server: dict[str, Any]) -> dict[str, float]:
    """The figures the goals and budgets are stated in."""
    loaded, unloaded = server["loaded"], server.get("unloaded", {})
    rt_loaded = loaded["by_priority"].get("realtime", {}).get("p95_ms", math.nan)
    # Unloaded, nothing waits, so the class makes no difference: all classes are pooled for the
    # reference, which gives a p95 of a few dozen samples instead of a handful.
    rt_unloaded = unloaded.get("p95_ms", math.nan)
    cache_u = unloaded.get("cache", {})
    hits = server.get("hits", {}).get("cache", {})
    cap = server.get("capacity") or {}
    return {
        "miss_capacity_rps": cap.get("rps", math.nan),
        "offered_rps": loaded["offered_rps"],
        "goodput_rps": loaded["goodput_rps"],
        "throughput_rps": loaded["throughput_rps"],
        "slo_attainment": loaded["slo_attainment"],
        "p50_ms": loaded["p50_ms"],
        "miss_p50_ms": loaded["cache"].get("miss", {}).get("p50_ms", loaded["p50_ms"]),
        "p95_ms": loaded["p95_ms"],
        "p99_ms": loaded["p99_ms"],
        "realtime_p95_ms": rt_loaded,
        "realtime_p95_unloaded_ms": rt_unloaded,
        "realtime_p95_load_ratio": ratio(rt_loaded, rt_unloaded),
        "realtime_over_batch_p95": ratio(
            rt_loaded, loaded["by_priority"].get("batch", {}).get("p95_ms", math.nan)),
        "cache_hit_ratio": loaded["cache"]["hit_ratio"],
        "cache_hit_p50_ms": hits.get("hit", {}).get("p50_ms", math.nan),
        "cache_hit_p99_ms": hits.get("hit", {}).get("p99_ms", math.nan),
        "cache_hit_p99_loaded_ms": loaded["cache"]["hit"]["p99_ms"],
        "cache_hit_p99_unloaded_ms": cache_u.get("hit", {}).get("p99_ms", math.nan),
        "hit_over_miss_p50": ratio(cache_u.get("hit", {}).get("p50_ms", math.nan),
                                   cache_u.get("miss", {}).get("p50_ms", math.nan)),
        "server_overhead_ratio": unloaded.get("overhead", {}).get("ratio", math.nan),
        "server_side_overhead_ratio": unloaded.get("overhead", {}).get("server_ratio", math.nan),
        "client_seen_overhead_ratio": unloaded.get("overhead", {}).get("client_seen_ratio", math.nan),
        # the server-side ratio over the unloaded misses that had nothing else in flight
        "server_side_overhead_ratio_alone": unloaded.get("overhead", {}).get(
            "alone_server_ratio", math.nan),
        "overhead_alone_misses": unloaded.get("overhead", {}).get("alone_misses", 0),
        "overhead_p50_ms": unloaded.get("overhead", {}).get("overhead_p50_ms", math.nan),
        "infer_p50_ms": unloaded.get("overhead", {}).get("infer_p50_ms", math.nan),
        "rejection_rate": loaded["rejection_rate"],
        "error_rate": loaded["error_rate"],
        "late_rate": loaded["late_rate"],
        "server_cpu_ms_per_hit": server.get("hits", {}).get("server_cpu_ms_per_request", math.nan),
        "server_cpu_ms_per_request_loaded": loaded.get("server_cpu_ms_per_request", math.nan),
        "client_cpu_ms_per_request": loaded["client"]["cpu_ms_per_request"],
        "client_send_lag_p99_ms": loaded["client"]["send_lag_p99_ms"],
    }


def compare(sw: dict[str, float], naive: dict[str, float], window_s: float | None = None
            ) -> dict[str, float]:
    """swiftshot ÷ naive for each figure (goodput: higher is better; latencies: lower is).

    When the naive server answered nothing within the SLO, its goodput is taken as one answer
    per window and the goodput ratio is a lower bound (``goodput_is_lower_bound``)."""
    naive_goodput = naive["goodput_rps"]
    floor = naive_goodput == 0 and bool(window_s)
    if floor:
        naive_goodput = 1.0 / window_s  # type: ignore[operator]
    return {"goodput": ratio(sw["goodput_rps"], naive_goodput),
            "goodput_is_lower_bound": floor,
            # Offered rate ÷ what the naive server actually served under it: the load the
            # comparison really ran at (a capacity calibrated on a noisy machine can be off).
            "naive_effective_load": ratio(naive["offered_rps"], naive["throughput_rps"]),
            "throughput": ratio(sw["throughput_rps"], naive["throughput_rps"]),
            "miss_capacity": ratio(sw["miss_capacity_rps"], naive["miss_capacity_rps"]),
            "p50": ratio(sw["p50_ms"], naive["p50_ms"]),
            # every naive answer is a miss: swiftshot's misses against them (the serving cost)
            "miss_p50": ratio(sw.get("miss_p50_ms", math.nan), naive["p50_ms"]),
            "p95": ratio(sw["p95_ms"], naive["p95_ms"]),
            "p99": ratio(sw["p99_ms"], naive["p99_ms"]),
            "realtime_p95": ratio(sw["realtime_p95_ms"], naive["realtime_p95_ms"])}


def lowered_by() -> int:
    """The least niceness a spawned server adds to its lower-priority work
    (``engine.lower_class_nice``, ``server.cpu_nice``; from this environment, which the
    server inherits), 0 when neither is on."""
    from swiftshot.config import Settings

    s = Settings()
    return min((v for v in (s.engine.lower_class_nice, s.server.cpu_nice) if v > 0), default=0)


def capped_warning(nice: int, by: int) -> str | None:
    """What a run at ``nice`` does not measure: niceness stops at 19, so work lowered by
    ``by`` from there runs level with the realtime path (docs/PERFORMANCE.md, seventeenth
    session: every run through the dev box's slot queue, at nice 19)."""
    if by <= 0 or nice + by <= 19:
        return None
    return (f"warning: run at nice {nice}: the server's lowered work (lower-class renders, "
            f"the upload processes: +{by}) is capped at 19"
            + (", level with its realtime path: realtime isolation is off in this run"
               if nice >= 19 else f", only {19 - nice} below its realtime path"))


def report(result: dict[str, Any]) -> None:
    warn = capped_warning(result.get("nice") or 0, result.get("lowered_by", 0))
    if warn:
        print(warn)
    cap = result["capacity"]
    print(f"capacity {cap['rps']:.1f} req/s (closed loop, uncached, on {cap['measured_on']}); "
          f"offered load {result['rate_rps']:.1f} req/s")
    lag = max((result[n][p]["client"]["send_lag_p99_ms"] for n in ("swiftshot", "naive")
               for p in ("unloaded", "loaded", "hits") if p in result.get(n, {})), default=0.0)
    if lag > 20:
        print(f"warning: the client sent up to {lag:.0f} ms late (p99): the machine is short of "
              "CPU, and latencies include that delay")
    rows, cache_rows, stage_rows = [], [], []
    for name in ("swiftshot", "naive"):
        for phase in ("unloaded", "loaded", "hits"):
            summary = result.get(name, {}).get(phase)
            if not summary:
                continue
            blocks = {"all": summary, **summary["by_priority"]}
            if "upload" in summary["by_kind"]:
                blocks["uploads"] = summary["by_kind"]["upload"]
            if "fetch" in summary["by_kind"]:
                blocks["GET /i/"] = summary["by_kind"]["fetch"]
            for cls, b in blocks.items():
                rows.append({"server": name, "phase": phase, "class": cls, "req": b["requests"],
                             "offered/s": b["offered_rps"], "p50 ms": b["p50_ms"],
                             "p95 ms": b["p95_ms"], "p99 ms": b["p99_ms"],
                             "goodput/s": b["goodput_rps"], "in SLO": _pct(b["slo_attainment"]),
                             "refused": _pct(b["rejection_rate"]), "late": _pct(b["late_rate"]),
                             "errors": _pct(b["error_rate"])})
            c = summary["cache"]
            cache_rows.append({"server": name, "phase": phase, "hit": _pct(c["hit_ratio"]),
                               "coalesced": _pct(c["coalesced_ratio"]),
                               "hit p50 ms": c["hit"]["p50_ms"], "hit p99 ms": c["hit"]["p99_ms"],
                               "miss p50 ms": c["miss"]["p50_ms"], "miss p99 ms": c["miss"]["p99_ms"],
                               "server cpu ms/req": summary.get("server_cpu_ms_per_request", math.nan),
                               "client cpu ms/req": summary["client"]["cpu_ms_per_request"],
                               "send lag p99 ms": summary["client"]["send_lag_p99_ms"]})
            for stage, s in summary.get("server", {}).get("stages_ms", {}).items():
                stage_rows.append({"server": name, "phase": phase, "stage": stage,
                                   "count": int(s["count"]), "mean ms": s["mean"],
                                   "p50 ms": s["p50"], "p95 ms": s["p95"],
                                   "batch mean": summary["server"]["mean_batch_size"]})
    print("\nlatency from scheduled arrival, by priority class")
    print_table(rows)
    print("\ncache (X-Cache) and client cost")
    print_table(cache_rows)
    if stage_rows:
        print("\nserver-side stages (from /metrics, diffed over the phase)")
        print_table(stage_rows)
    tail_rows = []
    for phase in ("unloaded", "loaded"):
        for cls, b in result.get("swiftshot", {}).get(phase, {}).get("by_priority", {}).items():
            bd = b.get("breakdown") or {}
            for what, key in (("slowest 10%", "tail_mean_ms"), ("misses p50", "miss_p50_ms"),
                              ("slowest 10% of misses", "miss_tail_mean_ms")):
                m = bd.get(key)
                if not m:
                    continue
                tail_rows.append({"phase": phase, "class": cls, "answers": what,
                                  "misses": _pct(bd["tail_miss_share"]) if key == "tail_mean_ms"
                                  else "100.0%",
                                  **{k: m[k] for k in ("latency", "send_lag", "front", "handler",
                                                       "cache", "queue", "hop", "infer",
                                                       "variant", "master", "encode",
                                                       "coalesced")}})
    if tail_rows:
        print("\nswiftshot: where the time went (ms; latency = send_lag + front + handler + stages)")
        print_table(tail_rows)
    if "ratios" in result:
        sw, nv = result["swiftshot"]["derived"], result["naive"]["derived"]
        print("\nswiftshot vs naive (loaded phase; ratio = swiftshot ÷ naive)")
        print_table([
            {"figure": "goodput req/s", "swiftshot": sw["goodput_rps"], "naive": nv["goodput_rps"],
             "ratio": (("≥ " if result["ratios"]["goodput_is_lower_bound"] else "")
                       + f"{result['ratios']['goodput']:.3g}")},
            {"figure": "miss capacity req/s", "swiftshot": sw["miss_capacity_rps"],
             "naive": nv["miss_capacity_rps"], "ratio": result["ratios"]["miss_capacity"]},
            {"figure": "throughput req/s", "swiftshot": sw["throughput_rps"],
             "naive": nv["throughput_rps"], "ratio": result["ratios"]["throughput"]},
            {"figure": "p95 ms", "swiftshot": sw["p95_ms"], "naive": nv["p95_ms"],
             "ratio": result["ratios"]["p95"]},
            {"figure": "realtime p95 ms", "swiftshot": sw["realtime_p95_ms"],
             "naive": nv["realtime_p95_ms"], "ratio": result["ratios"]["realtime_p95"]},
            {"figure": "miss p50 ms, the same requests (swiftshot's misses, the naive "
                       "server's answers to them)",
             "swiftshot": result["same_requests"].get("swiftshot_miss_p50_ms", math.nan),
             "naive": result["same_requests"].get("naive_p50_ms", math.nan),
             "ratio": result["ratios"]["miss_p50_same_requests"]},
            {"figure": "miss p50 ms against all the naive server's answers (before 2026-12-05)",
             "swiftshot": sw.get("miss_p50_ms", math.nan), "naive": nv["p50_ms"],
             "ratio": result["ratios"]["miss_p50"]},
            {"figure": "unloaded miss overhead ms (latency − work, p50)",
             "swiftshot": sw.get("overhead_p50_ms", math.nan),
             "naive": nv.get("overhead_p50_ms", math.nan),
             "ratio": ratio(sw.get("overhead_p50_ms", math.nan),
                            nv.get("overhead_p50_ms", math.nan))},
        ])
    if "swiftshot" in result:
        d = result["swiftshot"]["derived"]
        print("\nswiftshot goal figures")
        print_table([{"figure": k, "value": v} for k, v in d.items()])


def json_safe(value: Any) -> Any:
    """NaN (a figure that could not be measured) → null: strict JSON readers reject NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _pct(x: float) -> str:
    return "-" if x is None or math.isnan(x) else f"{100 * x:.1f}%"
