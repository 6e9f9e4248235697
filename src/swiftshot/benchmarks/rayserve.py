"""Ray executor benchmarks on a real Ray cluster on loopback (two nodes, this process the front).

    python -m swiftshot.benchmarks.rayserve [--quick] [--parts timeline,scaling,hop,batcher]
        [--pipeline-depth N] [--router front|serve] [--variants serve:0,front:0,front:1]
        [--transports direct,serve] [--sizes 64,512,1024] [--shm-bytes N] [--heap-bytes N]
        [--out F]

Parts (each prints a table; all go into one JSON with the machine):

``timeline`` Where a batch's time goes at saturation on 1 and 8 replicas (the scaling part's
             engine): submit → replica (routing + transport), waiting inside the replica,
             engine, ops + encode, result back, and each replica's idle time between batches;
             ``hop`` = to the replica + from its gate to the engine thread + result back (what
             the Ray path adds to a batch under load; waiting in the replica is not counted).

``scaling``  The fake engine with a fixed per-batch device time that *sleeps* (like a GPU wait),
             batches of one, on 1, 2, 4, 8 replicas, through the real front path (Worker:
             scheduler + RayExecutor + Serve handle + replica + master encode). Saturation
             throughput (closed loop, 2 requests outstanding per replica) against N x one
             replica's (goal >= 0.9), then an open-loop Poisson load at 80 % of that throughput:
             p50/p95 latency (goal: flat in N).
``hop``      What crossing to a replica costs per request, sequentially on an idle replica:
             front-observed latency minus the engine + ops + master-encode time the replica
             measured itself (BatchResult.infer_s + master_s). Unary and streamed (previews)
             calls, 64² and 1024² masters; the bare Serve round trip (``ping``) and the inline
             executor's thread hop for reference. Goal <= 2 ms. Every transport of
             ``--transports`` (default: direct and serve, ``ray.transport``) is measured, each
             on a replica of its own, alternated in the same rounds. The paths are measured in
             interleaved rounds (5 quick, 9 full): the figure is the median of all samples,
             with the lowest and highest round median beside it (the spread run to run).
``batcher``  The front's batcher (whole batches to a free replica) against ``@serve.batch`` in
             the replica (single requests), same engine (sleeping 50 ms a batch + 10 ms an item,
             batches up to 8), one replica: open-loop p50/p95 and throughput at fixed rates.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
from typing import Any

from swiftshot.benchmarks.arrivals import arrival_times
from swiftshot.benchmarks.machine import print_table, write_result
from swiftshot.benchmarks.stats import percentile

VARIANT: dict[str, Any] = {}
"""``ray.*`` settings from the command line (``--pipeline-depth``, ``--router``), for every
part: the same script measures before (``--pipeline-depth 0 --router serve``) and after."""
VARIANTS: list[dict[str, Any]] = []
"""``--variants serve:0,front:0,front:1`` (router:pipeline_depth): the scaling and timeline
parts run every variant at each replica count in turn, alternated in one window on one
cluster, so a neighbour's burst on a shared box lands on all of them alike."""
TRANSPORTS: list[str] = []
HOP_SIZES: list[int] = []
"""--sizes: the hop part's image sizes (default 64 and 1024)."""
"""``--transports direct,serve``: every variant of the scaling and timeline parts is run with
each transport (``ray.transport``), and the hop part measures each; alternated in one window."""
_APPS = iter(range(1, 10**9))


def _variant_name(v: dict[str, Any]) -> str:
    if not v:
        return "settings"
    name = "+".join(str(v[k]) if k != "pipeline_depth" else f"depth{v[k]}"
                    for k in ("router", "pipeline_depth") if k in v)
    if "transport" in v:
        name = f"{name}+{v['transport']}" if name else v["transport"]
    return name or "settings"


def _variants() -> list[dict[str, Any]]:
    base = VARIANTS or [dict(VARIANT)]
    if not TRANSPORTS:
        return base
    return [{**v, "transport": t} for v in base for t in TRANSPORTS]


def _settings(**kw: Any) -> Any:
    from swiftshot.config import RaySettings, Settings

    s = Settings(data_dir=f"/tmp/swiftshot-rayserve-{os.getpid()}")
    s.engine.default = "fake"
    s.engine.fake.delay_s = kw.pop("delay_s", 0.0)
    s.engine.fake.per_item_s = kw.pop("per_item_s", 0.0)
    s.engine.fake.steps = kw.pop("steps", 1)
    s.server.warmup_shapes = kw.pop("warmup_shapes", [(64, 64)])
    s.scheduler.max_batch_size = kw.pop("max_batch", 1)
    s.scheduler.max_wait_ms = kw.pop("max_wait_ms", 5.0)
    s.scheduler.deadline_ms = {p: 600_000 for p in ("realtime", "standard", "batch", "prefetch")}
    s.scheduler.queue_limit = {p: 100_000 for p in ("realtime", "standard", "batch", "prefetch")}
    n = kw.pop("replicas", 1)
    variant = kw.pop("variant", VARIANT)
    # a fresh application name each time: the last one's replicas are deleted in the
    # background (a blocking delete waited ~30 s for them on this box)
    opts = {"app_prefix": f"bench{next(_APPS)}", "min_replicas": n, "max_replicas": n,
            "replica_cpus": 0.25, "graceful_shutdown_timeout_s": 0.5, "status_interval_s": 0.5,
            **variant}
    opts.update(kw)
    s.ray = RaySettings(**opts)
    return s


class Front:
    """Worker + RayExecutor for one configuration."""

    def __init__(self, settings: Any) -> None:
        from swiftshot.runtime.ray_executor import RayExecutor
        from swiftshot.runtime.worker import Worker

        self.ex = RayExecutor(settings)
        self.worker = Worker(self.ex, settings)
        self.ex.depth_source = self.worker.depth
        self._n = 0

    async def __aenter__(self) -> Front:
        await self.worker.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        from ray import serve

        await self.worker.stop()
        name = self.ex.app_name
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: serve.delete(name, _blocking=False))

    def spec(self, size: int = 64) -> Any:
        from swiftshot.spec import RenderSpec

        self._n += 1
        return RenderSpec(engine="fake", prompt=f"bench {self._n} {random.random()}",
                          width=size, height=size).normalized()

    async def one(self) -> float:
        t0 = time.perf_counter()
        await self.worker.submit(self.spec())
        return time.perf_counter() - t0


async def closed_loop(front: Front, concurrency: int, duration_s: float,
                      warmup_s: float = 1.0) -> float:
    """Completions per second with ``concurrency`` requests always outstanding."""
    stop_at = time.perf_counter() + warmup_s + duration_s
    window_from = time.perf_counter() + warmup_s
    done: list[float] = []

    async def client() -> None:
        while time.perf_counter() < stop_at:
            await front.one()
            done.append(time.perf_counter())

    await asyncio.gather(*(client() for _ in range(concurrency)))
    n = sum(1 for t in done if window_from <= t <= stop_at)
    return n / duration_s


async def open_loop(front: Front, rate: float, duration_s: float, seed: int = 0
                    ) -> dict[str, float]:
    times = arrival_times(rate, duration_s, rng=random.Random(seed))
    lat: list[float] = []
    t0 = time.perf_counter()

    async def fire(at: float) -> None:
        delay = t0 + at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        lat.append(await front.one())

    await asyncio.gather(*(fire(t) for t in times))
    wall = time.perf_counter() - t0
    return {"sent": len(times), "rate": rate, "achieved": len(lat) / wall,
            "p50_ms": 1000 * percentile(lat, 50), "p95_ms": 1000 * percentile(lat, 95),
            "p99_ms": 1000 * percentile(lat, 99)}


async def bench_scaling(quick: bool) -> list[dict[str, Any]]:
    device_s = 0.2
    dur = 5.0 if quick else 8.0
    rows: list[dict[str, Any]] = []
    one: dict[str, float] = {}
    for n in (1, 2, 4, 8):
        for v in _variants():
            name = _variant_name(v)
            async with Front(_settings(replicas=n, delay_s=device_s, variant=v)) as f:
                await asyncio.gather(*(f.one() for _ in range(2 * n)))  # every replica warm
                tput = await closed_loop(f, 2 * n, dur)
                if n == 1:
                    one[name] = tput
                load = await open_loop(f, 0.8 * tput, dur, seed=n)
            rows.append({"variant": name, "replicas": n, "device_ms": 1000 * device_s,
                         "throughput_rps": tput, "ideal_rps": n / device_s,
                         "vs_n_x_one": tput / (n * one[name]), "goal": ">= 0.9",
                         "load_rps": load["rate"], "p50_ms": load["p50_ms"],
                         "p95_ms": load["p95_ms"], "p99_ms": load["p99_ms"],
                         "load_avg": os.getloadavg()[0]})
            print_table(rows[-1:])
    return rows


class Timeline:
    """Per batch, on the wall clock (one machine: the processes share it): the front's submit
    and its result back (wrapping ``RayExecutor.submit``), and what the replica recorded
    (``queue``: from the request's arrival in the replica to an engine thread taking it;
    ``engine``; ``ops``; ``encode``)."""

    def __init__(self, front: Front) -> None:
        self.rows: list[tuple[int, int, list[Any], str]] = []
        self._submit = front.ex.submit
        self.recording = False

        async def timed(batch: Any, on_event: Any = None) -> Any:
            t0 = time.time_ns()
            r = await self._submit(batch, on_event)
            if self.recording:
                self.rows.append((t0, time.time_ns(), r.spans, r.worker))
            return r

        front.ex.submit = timed  # type: ignore[method-assign]

    def summary(self) -> dict[str, float]:
        parts: dict[str, list[float]] = {k: [] for k in (
            "send", "replica_queue", "to_engine", "engine", "ops_encode", "return", "idle")}
        by_replica: dict[str, list[tuple[int, int]]] = {}
        for t0, t1, spans, worker in self.rows:
            first: dict[str, tuple[int, int]] = {}
            for name, a, b, _ in spans:
                first.setdefault(name, (a, b))
            if "queue" not in first or "engine" not in first:
                continue
            done = max(b for name, _, b, _ in spans)
            q, e = first["queue"], first["engine"]
            parts["send"].append(q[0] - t0)
            parts["replica_queue"].append(q[1] - q[0])
            parts["to_engine"].append(e[0] - q[1])
            parts["engine"].append(e[1] - e[0])
            parts["ops_encode"].append(done - e[1])
            parts["return"].append(t1 - done)
            by_replica.setdefault(worker, []).append((e[0], done))
        for runs in by_replica.values():  # the replica's engine thread with nothing to do
            runs.sort()
            parts["idle"].extend(b[0] - a[1] for a, b in zip(runs, runs[1:], strict=False))
        # the hop: what the Ray path added to a batch — to the replica, from its gate to the
        # engine thread, and the result back (waiting in the replica's queue is not the hop)
        parts["hop"] = [a + b + c for a, b, c in zip(parts["send"], parts["to_engine"],
                                                     parts["return"], strict=True)]
        out: dict[str, float] = {"batches": float(len(self.rows))}
        for k, v in parts.items():
            if v:
                out[f"{k}_p50_ms"] = statistics.median(v) / 1e6
                out[f"{k}_mean_ms"] = statistics.fmean(v) / 1e6
        return out


async def bench_timeline(quick: bool) -> list[dict[str, Any]]:
    """Where a batch's time goes at saturation (closed loop, 2 outstanding per replica, the
    scaling part's engine): submit → replica (routing + transport), waiting in the replica,
    engine, ops + encode, result back; and each replica's idle time between two batches."""
    dur = 4.0 if quick else 8.0
    rows: list[dict[str, Any]] = []
    for n in (1, 8):
        for v in _variants():
            async with Front(_settings(replicas=n, delay_s=0.2, variant=v)) as f:
                tl = Timeline(f)
                await asyncio.gather(*(f.one() for _ in range(2 * n)))
                tl.recording = True
                tput = await closed_loop(f, 2 * n, dur, warmup_s=0.5)
                tl.recording = False
            rows.append({"variant": _variant_name(v), "replicas": n, "throughput_rps": tput,
                         **tl.summary(), "load_avg": os.getloadavg()[0]})
            print_table(rows[-1:])
    return rows


async def bench_hop(quick: bool) -> list[dict[str, Any]]:
    from swiftshot.config import Settings
    from swiftshot.engines.base import FakeEngine
    from swiftshot.runtime.executor import Batch, InlineExecutor, Item
    from swiftshot.spec import RenderSpec

    n = 80 if quick else 200  # the inline reference
    rows: list[dict[str, Any]] = []
    ids = iter(range(1, 10**9))

    def batch(size: int, partials: int = 0) -> Any:
        spec = RenderSpec(engine="fake", prompt=f"hop {random.random()}", width=size,
                          height=size).normalized()
        return Batch(next(ids), [Item(next(ids), spec, partials)])

    def row(path: str, size: int, total: list[float], inner: list[float],
            rounds: list[float] | None = None) -> dict[str, Any]:
        hop = [a - b for a, b in zip(total, inner, strict=True)]
        out = {"path": path, "size": f"{size}²", "n": len(total),
               "total_p50_ms": 1000 * statistics.median(total),
               "inside_p50_ms": 1000 * statistics.median(inner),
               "hop_p50_ms": 1000 * statistics.median(hop),
               "hop_p95_ms": 1000 * percentile(hop, 95), "goal_ms": "<= 2"}
        if rounds:  # each round's own p50: how steady the figure is run to run
            out.update(rounds=len(rounds), round_p50_min_ms=1000 * min(rounds),
                       round_p50_max_ms=1000 * max(rounds),
                       round_p50s_ms=[round(1000 * r, 2) for r in rounds])
        return out

    # Rounds interleave the paths, so a neighbour's burst on the shared box lands on all of
    # them alike; each figure is the median over every round's samples, with the spread of
    # the rounds' own medians beside it.
    rounds = 5 if quick else 9
    per_round = 40 if quick else 60
    transports = TRANSPORTS or [VARIANT.get("transport", "direct"), "serve"]
    transports = list(dict.fromkeys(transports))
    # (label, transport, size, stream): size 0 is the bare Serve round trip
    paths: list[tuple[str, str, int, bool | None]] = [
        ("serve handle ping (no work)", transports[0], 0, None)]
    for t in transports:
        for size in HOP_SIZES or [64, 1024]:
            paths += [(f"{t}: unary", t, size, False),
                      (f"{t}: stream (Started+Partial)", t, size, True)]
    got: dict[int, tuple[list[float], list[float], list[float]]] = {
        i: ([], [], []) for i in range(len(paths))}
    first: dict[int, list[float]] = {i: [] for i in range(len(paths))}
    """The hop of each path's first requests (the warm-up ones, not counted): what a
    server's first requests at that size see."""
    fronts: dict[str, Front] = {}
    try:
        for t in transports:  # one replica each, side by side on the same cluster
            # warm-up shapes as a real server's (the default, 1024²): the replica's engine
            # and both ends of a link's segment are warmed for that size
            fronts[t] = Front(_settings(replicas=1, steps=4, transport=t,
                                        warmup_shapes=Settings().server.warmup_shapes))
            await fronts[t].__aenter__()
        for t, f in fronts.items():
            if t == "direct" and not f.ex._links:
                raise RuntimeError("the direct transport did not link to its replica")
        ping = fronts[transports[0]].ex._handle.options(method_name="ping")
        for _ in range(20):
            await ping.remote()
        for r_i in range(rounds):
            for i, (_, t, size, stream) in enumerate(paths):
                f = fronts[t]
                total, inner, p50s = got[i]
                t_round: list[float] = []
                k_n = per_round // (4 if size >= 512 else 1) + (5 if r_i == 0 else 0)
                for k in range(k_n):
                    if stream is None:
                        t0 = time.perf_counter()
                        await ping.remote()
                        dt, inside = time.perf_counter() - t0, 0.0
                    else:
                        b = batch(size, 1 if stream else 0)
                        cb = (lambda i, e: None) if stream else None
                        t0 = time.perf_counter()
                        r = await f.ex.submit(b, cb)
                        dt, inside = time.perf_counter() - t0, r.infer_s + r.master_s
                    if r_i == 0 and k < 5:
                        first[i].append(dt - inside)
                        continue  # warm-up
                    total.append(dt)
                    inner.append(inside)
                    t_round.append(dt - inside)
                p50s.append(statistics.median(t_round))
        # how the direct results came back: through the link's shared segment or the socket
        shared = {t: sum(ln.via_segment for ln in f.ex._links.values())
                  for t, f in fronts.items() if t == "direct"}
    finally:
        for f in fronts.values():
            await f.__aexit__(None, None, None)
    for i, (path, t, size, _) in enumerate(paths):
        total, inner, p50s = got[i]
        rows.append(row(path, size, total, inner, p50s))
        rows[-1]["first_hops_ms"] = [round(1000 * x, 2) for x in first[i]]
        if t == "direct" and size:
            rows[-1]["results_via"] = "shm" if shared.get(t) else "socket"
        print_table(rows[-1:])
    s = _settings()
    inline = InlineExecutor(FakeEngine(), s)
    await inline.start()
    total, inner = [], []
    for k in range(n + 10):
        b = batch(64)
        t0 = time.perf_counter()
        r = await inline.submit(b)
        if k >= 10:
            total.append(time.perf_counter() - t0)
            inner.append(r.infer_s)
    await inline.stop()
    rows.append(row("inline thread (reference)", 64, total, inner))
    return rows


async def bench_batcher(quick: bool) -> list[dict[str, Any]]:
    dur = 5.0 if quick else 8.0
    rows: list[dict[str, Any]] = []
    for batcher in ("front", "serve"):
        s = _settings(replicas=1, delay_s=0.05, per_item_s=0.01, max_batch=8, batcher=batcher)
        async with Front(s) as f:
            await asyncio.gather(*(f.one() for _ in range(8)))
            sat = await closed_loop(f, 24, dur)
            for rate in (20.0, 40.0):
                r = await open_loop(f, rate, dur, seed=int(rate))
                rows.append({"batcher": batcher, "rate_rps": rate, "p50_ms": r["p50_ms"],
                             "p95_ms": r["p95_ms"], "p99_ms": r["p99_ms"],
                             "achieved_rps": r["achieved"], "saturation_rps": sat})
                print_table(rows[-1:])
    return rows


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    parts = args.parts.split(",")
    if "timeline" in parts:
        out["timeline"] = await bench_timeline(args.quick)
    if "scaling" in parts:
        out["scaling"] = await bench_scaling(args.quick)
    if "hop" in parts:
        out["hop"] = await bench_hop(args.quick)
    if "batcher" in parts:
        out["batcher"] = await bench_batcher(args.quick)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--parts", default="timeline,scaling,hop,batcher")
    p.add_argument("--out", default=None)
    p.add_argument("--pipeline-depth", type=int, default=None,
                   help="ray.pipeline_depth (default: the setting's default)")
    p.add_argument("--router", choices=("front", "serve"), default=None,
                   help="ray.router (default: the setting's default)")
    p.add_argument("--variants", default=None,
                   help="router:depth,... (e.g. serve:0,front:0,front:1): the scaling and "
                        "timeline parts alternate them at each replica count")
    p.add_argument("--transports", default=None,
                   help="direct,serve (ray.transport): the scaling and timeline parts run "
                        "each variant with each, alternated; the hop part measures each "
                        "(default there: both)")
    p.add_argument("--sizes", default=None,
                   help="64,512,1024: the hop part's image sizes, all in one run (default "
                        "64,1024)")
    p.add_argument("--shm-bytes", type=int, default=None,
                   help="ray.result_shm_bytes (0: direct results over the socket)")
    p.add_argument("--heap-bytes", type=int, default=None,
                   help="ray.heap_keep_bytes (0: glibc's malloc defaults in the front and "
                        "the replicas)")
    args = p.parse_args(argv)
    if args.shm_bytes is not None:
        VARIANT["result_shm_bytes"] = args.shm_bytes
    if args.heap_bytes is not None:
        VARIANT["heap_keep_bytes"] = args.heap_bytes
    if args.sizes:
        try:
            HOP_SIZES.extend(int(x) for x in args.sizes.split(","))
        except ValueError:
            p.error(f"--sizes: comma-separated pixel sizes; got {args.sizes!r}")
    if args.transports:
        for t in args.transports.split(","):
            if t not in ("direct", "serve"):
                p.error(f"--transports: direct or serve; got {t!r}")
            TRANSPORTS.append(t)
    if args.variants:
        for spec in args.variants.split(","):
            router, _, depth = spec.partition(":")
            if router not in ("front", "serve") or not depth.isdigit():
                p.error(f"--variants: each is ROUTER:DEPTH, ROUTER front or serve; got {spec!r}")
            VARIANTS.append({"router": router, "pipeline_depth": int(depth)})
    if args.pipeline_depth is not None:
        VARIANT["pipeline_depth"] = args.pipeline_depth
    if args.router is not None:
        VARIANT["router"] = args.router
    import ray

    from swiftshot.testing.ray_cluster import LoopbackCluster

    load_before = os.getloadavg()
    with LoopbackCluster(nodes=2, cpus_per_node=4) as cluster:
        t0 = time.perf_counter()
        out = asyncio.run(_main(args))
        wall = time.perf_counter() - t0
        load_after = os.getloadavg()
        # written before the cluster shuts down: on a crowded box Ray's shutdown was seen to
        # hang (Serve's long-poll thread re-initialising Ray against the shutdown), and the
        # figures must not be lost with it
        data = {"benchmark": "rayserve", "quick": args.quick, "ray_nodes": 2,
                "settings": dict(VARIANT), "variants": [_variant_name(v) for v in _variants()],
                "cluster_start_s": cluster.start_s, "wall_s": wall,
                "load_avg_before": load_before, "load_avg_after": load_after, **out,
                "ray": ray.__version__}
        path = write_result("rayserve" + ("-quick" if args.quick else ""), data, args.out)
        for name, rows in out.items():
            print(f"\n== {name}")
            print_table(rows)
        print(f"\nload avg before {load_before[0]:.2f}, after {load_after[0]:.2f}; wrote {path}",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
