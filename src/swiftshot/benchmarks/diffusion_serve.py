"""The diffusion engine end to end through a real server, per backend, against the bare call.

For each backend (torch, openvino) a real ``swiftshot serve --engine diffusion`` process is
started on a loopback port with the model folder, and timed:

* start-up to ready (``/readyz`` 200, after loading and the warm-up render); for OpenVINO once
  with an empty IR folder (cold: the conversion is in it, and reported) and once warm;
* ``requests`` renders with a NEW prompt each (the text encoder runs), then ``requests`` with
  one REPEATED prompt and new seeds (the prompt-embedding cache skips the encoder): client
  wall time and the server's ``Server-Timing: infer``, median;
* the prompt-embedding cache counters from ``/metrics``.

Then, with no server running (one real-size pipeline in memory at a time), the same engine
settings are loaded in this process and the bare ``DiffusionEngine.run`` is timed on the same
specs: ``infer / bare`` is the server's overhead on the same work.

Run under ``flock /tmp/swiftshot-bench.lock``; the JSON (with the machine and load average)
goes to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from swiftshot.testing.services import stop_process

PROMPTS = ["white ceramic mug on a marble counter, soft morning light",
           "red leather handbag on an oak table, golden hour",
           "sneaker on polished concrete, studio light", "perfume bottle on linen, pastel backdrop",
           "silver watch on slate, dramatic light", "green plant in a clay pot, sage paper sweep",
           "glass bottle on terrazzo, soft shadow", "gold lamp on a walnut sideboard"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _metric(text: str, name: str, labels: str = "") -> float:
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+-]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def _infer_ms(header: str) -> float | None:
    m = re.search(r"infer;dur=([0-9.]+)", header or "")
    return float(m.group(1)) if m else None


class Server:
    def __init__(self, model: str, env: dict[str, str], log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.t0 = time.perf_counter()
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "swiftshot", "serve", "--engine", "diffusion", "--model", model,
             "--port", str(self.port)], env=full, stdout=log.open("w"), stderr=subprocess.STDOUT)

    def wait_ready(self, timeout_s: float) -> float:
        import httpx

        while time.perf_counter() - self.t0 < timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited rc={self.proc.returncode}; log: "
                                   + self.log.read_text()[-2000:])
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return time.perf_counter() - self.t0
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"not ready in {timeout_s}s")

    def stop(self) -> None:
        stop_process(self.proc, 30)


def _cpu_s(pid: int | None = None) -> float:
    """CPU seconds (user + system) of a process so far: on a shared box wall time measures the
    neighbours as much as the code, CPU time much less."""
    if pid is None:
        import resource

        u = resource.getrusage(resource.RUSAGE_SELF)
        return u.ru_utime + u.ru_stime
    # the server and its descendants (the process executor's engine workers)
    stats: dict[int, list[str]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stats[int(d.name)] = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # exited meanwhile
                continue
    tree, frontier = set(), {pid}
    while frontier:
        tree |= frontier
        frontier = {p for p, f in stats.items() if int(f[1]) in frontier and p not in tree}
    ticks = sum(int(stats[p][11]) + int(stats[p][12]) for p in tree if p in stats)
    return ticks / os.sysconf("SC_CLK_TCK")


CPU_PID: int | None = None
"""The server process whose CPU time each render records (set while a server runs)."""


def _render(url: str, prompt: str, seed: int, size: int) -> tuple[float, float | None]:
    import httpx

    if CPU_PID is not None:
        c0 = _cpu_s(CPU_PID)

    body = {"prompt": prompt, "width": size, "height": size, "seed": seed, "steps": 1,
            "engine": "diffusion", "output_format": "png"}
    t = time.perf_counter()
    r = httpx.post(url + "/v1/render", json=body, timeout=600)
    wall = time.perf_counter() - t
    if r.status_code != 200:
        raise RuntimeError(f"render answered {r.status_code}: {r.text[:500]}")
    ms = _infer_ms(r.headers.get("server-timing", ""))
    if CPU_PID is not None:
        CPU_LOG.append(_cpu_s(CPU_PID) - c0)
    return wall, (ms / 1000 if ms is not None else None)


CPU_LOG: list[float] = []


def _med(xs: list[float | None]) -> float | None:
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 3) if xs else None


def bursts(url: str, sizes: list[int], size: int, repeats: int, seed0: int) -> list[dict[str, Any]]:
    """B simultaneous requests (distinct prompts and seeds), ``repeats`` times per B: the
    server's worker batches them (scheduler.max_batch_size must be >= B)."""
    from concurrent.futures import ThreadPoolExecutor

    out = []
    seed = seed0
    for b in sizes:
        walls, lats, infers = [], [], []
        for _ in range(repeats + 1):  # the first burst of a size warms its shape (compile)
            jobs = [(f"{PROMPTS[i % len(PROMPTS)]} #{seed + i}", seed + i) for i in range(b)]
            seed += b
            t = time.perf_counter()
            with ThreadPoolExecutor(b) as pool:
                res = list(pool.map(lambda j: _render(url, j[0], j[1], size), jobs))
            walls.append(time.perf_counter() - t)
            lats.append([w for w, _ in res])
            infers.append([i for _, i in res])
        walls, lats, infers = walls[1:], lats[1:], infers[1:]
        flat = sorted(x for xs in lats for x in xs)
        out.append({"batch": b, "first_burst_note": "dropped (warm-up of the shape)",
                    "burst_wall_s": _med(walls), "images_per_s": round(b / statistics.median(walls), 2),
                    "latency_p50_s": _med(flat), "latency_max_s": round(flat[-1], 3),
                    "infer_p50_s": _med([x for xs in infers for x in xs])})
    return out


def serve_phase(model: str, backend: str, env: dict[str, str], n: int, size: int, work: Path,
                tag: str, seed0: int, burst_sizes: list[int] | None = None,
                repeats: int = 3) -> dict[str, Any]:
    import httpx

    row: dict[str, Any] = {"backend": backend, "phase": tag, "load_before": _load()}
    global CPU_PID
    srv = Server(model, env, work / f"server-{tag}.log")
    try:
        row["ready_s"] = round(srv.wait_ready(1800), 2)
        row["ready_cpu_s"] = round(_cpu_s(srv.proc.pid), 2)
        CPU_PID = srv.proc.pid
        if n:
            CPU_LOG.clear()
            new = [_render(srv.url, f"{PROMPTS[i % len(PROMPTS)]} #{seed0 + i}", seed0 + i, size)
                   for i in range(n)]
            rep = [_render(srv.url, PROMPTS[0], seed0 + 100 + i, size) for i in range(n + 1)][1:]
            row["new_prompt_cpu_s"] = _med(CPU_LOG[:n])
            row["repeated_prompt_cpu_s"] = _med(CPU_LOG[n + 1:])
            row.update(new_prompt_wall_s=_med([w for w, _ in new]),
                       new_prompt_infer_s=_med([i for _, i in new]),
                       repeated_prompt_wall_s=_med([w for w, _ in rep]),
                       repeated_prompt_infer_s=_med([i for _, i in rep]),
                       new_prompt_all_infer_s=[i for _, i in new],
                       repeated_all_infer_s=[i for _, i in rep])
        if burst_sizes:
            row["bursts"] = bursts(srv.url, burst_sizes, size, repeats, seed0 + 10_000)
        if n or burst_sizes:
            metrics = httpx.get(srv.url + "/metrics", timeout=10).text
            row["prompt_cache_hits"] = _metric(metrics, "swiftshot_prompt_embedding_cache_total",
                                               '{result="hit"}')
            row["prompt_cache_misses"] = _metric(metrics, "swiftshot_prompt_embedding_cache_total",
                                                 '{result="miss"}')
    finally:
        CPU_PID = None
        srv.stop()
    row["load_after"] = _load()
    return row


def bare_phase(model: str, backend: str, env: dict[str, str], n: int, size: int,
               seed0: int) -> dict[str, Any]:
    """The bare engine call in this process, same settings as the server's (from its env)."""
    from swiftshot.config import Settings
    from swiftshot.engines import create_engine
    from swiftshot.spec import RenderSpec

    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        settings = Settings()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    row: dict[str, Any] = {"backend": backend, "phase": "bare", "load_before": _load()}
    t, c = time.perf_counter(), _cpu_s()
    engine = create_engine("diffusion", settings, model=model)
    engine.load()
    row["load_s"] = round(time.perf_counter() - t, 2)
    row["load_cpu_s"] = round(_cpu_s() - c, 2)
    row["load_report"] = getattr(engine, "load_report", {})

    def spec(p: str, seed: int) -> RenderSpec:
        return RenderSpec(prompt=p, width=size, height=size, seed=seed, steps=1,
                          engine="diffusion").normalized()

    engine.run([spec("warm-up", 0)])
    new, rep, new_cpu, rep_cpu = [], [], [], []
    for i in range(n):
        s = spec(f"{PROMPTS[i % len(PROMPTS)]} #{seed0 + i}", seed0 + i)
        t, c = time.perf_counter(), _cpu_s()
        engine.run([s])
        new.append(time.perf_counter() - t)
        new_cpu.append(_cpu_s() - c)
    engine.run([spec(PROMPTS[0], seed0 + 100)])
    for i in range(n):
        t, c = time.perf_counter(), _cpu_s()
        engine.run([spec(PROMPTS[0], seed0 + 101 + i)])
        rep.append(time.perf_counter() - t)
        rep_cpu.append(_cpu_s() - c)
    row.update(new_prompt_s=_med(new), repeated_prompt_s=_med(rep), new_all_s=new, rep_all_s=rep,
               new_prompt_cpu_s=_med(new_cpu), repeated_prompt_cpu_s=_med(rep_cpu))
    row["load_after"] = _load()
    del engine
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="diffusers folder (e.g. a save_architecture one)")
    ap.add_argument("--tiny-vae", default=None, help="AutoencoderTiny folder (default MODEL/taesd)")
    ap.add_argument("--backends", default="openvino,torch")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("-n", type=int, default=5, help="renders per kind (new / repeated prompt)")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--int8", action="store_true")
    ap.add_argument("--quantize", default="none", choices=["none", "int8"],
                    help="OpenVINO: int8 = NNCF post-training int8 of the UNet (calibrated at load)")
    ap.add_argument("--executor", default=None, choices=["inline", "process"],
                    help="the server's engine executor (default: serve's own, process)")
    ap.add_argument("--openvino-dir", default=None,
                    help="reuse this OpenVINO folder (converted IR) across runs (default: in --work)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--compile", default=None, choices=["default", "reduce-overhead", "max-autotune"],
                    help="torch.compile the UNet in this mode (torch backend)")
    ap.add_argument("--bursts", default="", help="e.g. 1,4,16: simultaneous requests per burst")
    ap.add_argument("--repeats", type=int, default=3, help="bursts per size (after one warm-up)")
    ap.add_argument("--label", default="", help="name of this configuration in the table")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold OpenVINO start")
    ap.add_argument("--no-bare", action="store_true")
    ap.add_argument("--out", default="bench/results/diffusion-serve.json")
    ap.add_argument("--work", default=None, help="folder for data dirs and logs (default: tmp)")
    ap.add_argument("--markdown", default=None, metavar="JSON",
                    help="print the table of an earlier run's JSON (for docs/PERFORMANCE.md) and exit")
    args = ap.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())))
        return 0
    if not args.model:
        ap.error("--model is required (a diffusers folder)")
    burst_sizes = [int(b) for b in args.bursts.split(",") if b.strip()]
    from swiftshot.benchmarks.machine import machine_info

    work = Path(args.work or tempfile.mkdtemp(prefix="swiftshot-dserve-"))
    work.mkdir(parents=True, exist_ok=True)
    tiny = args.tiny_vae or str(Path(args.model) / "taesd")
    rows: list[dict[str, Any]] = []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        out.write_text(json.dumps({"machine": machine_info(), "model": args.model,
                                   "device": args.device, "compile": args.compile,
                                   "size": args.size, "n": args.n, "dtype": args.dtype,
                                   "int8": args.int8, "quantize": args.quantize,
                                   "executor": args.executor or "process (serve's default)",
                                   "load_avg_at_start": _load(), "rows": rows}, indent=2, default=str))

    for backend in args.backends.split(","):
        ov_dir = Path(args.openvino_dir) if args.openvino_dir else work / (
            f"openvino{'-int8' if args.int8 else ''}")
        env = {"SWIFTSHOT_DATA_DIR": str(work / f"var-{backend}"),
               "SWIFTSHOT_ENGINE__DIFFUSION__BACKEND": backend,
               "SWIFTSHOT_ENGINE__DIFFUSION__DTYPE": args.dtype,
               "SWIFTSHOT_ENGINE__DIFFUSION__INT8": "true" if args.int8 else "false",
               "SWIFTSHOT_ENGINE__DIFFUSION__QUANTIZE": args.quantize,
               "SWIFTSHOT_ENGINE__DIFFUSION__TINY_VAE": tiny,
               "SWIFTSHOT_ENGINE__DIFFUSION__OPENVINO_DIR": str(ov_dir),
               "SWIFTSHOT_SERVER__WARMUP_SHAPES": json.dumps([[args.size, args.size]]),
               # a loaded 2-core box renders slower than the default deadlines allow
               "SWIFTSHOT_SCHEDULER__DEADLINE_MS": json.dumps(
                   dict.fromkeys(("realtime", "standard", "batch", "prefetch"), 600_000)),
               "SWIFTSHOT_ENGINE__DIFFUSION__DEVICE": args.device,
               "SWIFTSHOT_ENGINE__DIFFUSION__COMPILE": "true" if args.compile else "false",
               "SWIFTSHOT_ENGINE__DIFFUSION__COMPILE_MODE": args.compile or "default"}
        if args.executor:
            env["SWIFTSHOT_ENGINE__EXECUTOR"] = args.executor
        if burst_sizes:
            env["SWIFTSHOT_SCHEDULER__MAX_BATCH_SIZE"] = str(max(burst_sizes))
            env["SWIFTSHOT_SCHEDULER__MAX_WAIT_MS"] = "20"
        if backend == "openvino" and not args.no_cold and not (ov_dir / "compiled").exists():
            rows.append(serve_phase(args.model, backend, env, 0, args.size, work, "cold", 0))
            rows[-1]["convert_s"] = {
                m.parent.name.rsplit("-", 1)[0]: json.loads(m.read_text()).get("convert_s")
                for m in sorted(ov_dir.glob("*/meta.json"))}
            print(json.dumps(rows[-1]), flush=True)
            save()
        rows.append(serve_phase(args.model, backend, env, args.n, args.size, work, "warm", 1000,
                                burst_sizes, args.repeats))
        rows[-1]["label"] = args.label or backend + (f"+compile({args.compile})" if args.compile else "")
        print(json.dumps(rows[-1]), flush=True)
        save()
        if not args.no_bare:
            rows.append(bare_phase(args.model, backend, env, args.n, args.size, 1000))
            print(json.dumps(rows[-1], default=str), flush=True)
            save()
    save()
    print(f"wrote {out}")
    return 0


def markdown(result: dict[str, Any]) -> str:
    """The table docs/PERFORMANCE.md takes: one line per (configuration, batch)."""
    lines = ["| configuration | phase | batch | ready (s) | infer p50 | latency p50 | images/s "
             "| new-prompt infer | repeated-prompt infer |", "|---" * 9 + "|"]
    for r in result["rows"]:
        label = r.get("label", r["backend"])
        if r["phase"] == "bare":
            lines.append(f"| {label} | bare call | 1 | {r.get('load_s')} | "
                         f"{r.get('new_prompt_s')} s | | | {r.get('new_prompt_s')} s | "
                         f"{r.get('repeated_prompt_s')} s |")
            continue
        if "new_prompt_infer_s" in r or r["phase"] == "cold":
            lines.append(f"| {label} | {r['phase']} server | 1 | {r.get('ready_s')} | "
                         f"{r.get('new_prompt_infer_s')} s | {r.get('new_prompt_wall_s')} s | | "
                         f"{r.get('new_prompt_infer_s')} s | {r.get('repeated_prompt_infer_s')} s |")
        for b in r.get("bursts", []):
            lines.append(f"| {label} | burst | {b['batch']} | {r.get('ready_s')} | "
                         f"{b['infer_p50_s']} s | {b['latency_p50_s']} s | {b['images_per_s']} | | |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
