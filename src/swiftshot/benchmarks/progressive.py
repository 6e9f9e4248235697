"""Time to the first partial image vs time to the final, over the native stream.

    python -m swiftshot.benchmarks.progressive [--n 8] [--cases diffusion-tiny,studio-product,studio]

Each case starts the real server, sends ``n`` uncached renders one after another as
``POST /v1/render?stream=true&partial_images=K`` and reads the SSE as a browser would: the
time from sending the request to the first ``partial`` event, and to ``completed``. Goal
(issue 9): first partial <= 30 % of the final's time.

Cases:
  * ``diffusion-tiny``: the diffusion engine on the tiny random SD pipeline with the tiny TAESD
    (swiftshot.testing.tiny_pipeline: real diffusers code paths, toy-sized UNet/VAE), 4 steps,
    128², previews decoded by TAESD after steps 1 and 3 (K=2). Not the real-size model: the
    split between steps, decodes and overhead differs from SD-Turbo's.
  * ``studio-product``: a product photo (768², the mix's synthetic product) composed onto a
    studio backdrop at 1024² (``compose`` on the engine's backdrop: cutout, contact shadow,
    colour match); the preview is the studio engine's coarse 1/4-side backdrop (K=1).
  * ``studio``: a studio backdrop from a prompt at 1024², K=1; ``studio-2048`` the same at 2048².

Prints a table and writes ``bench/results/progressive.json`` (machine and load average).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from swiftshot.benchmarks.machine import write_result
from swiftshot.benchmarks.mix import product_png
from swiftshot.benchmarks.procs import free_port, running, server_env, swiftshot_command
from swiftshot.benchmarks.stats import percentile


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m swiftshot.benchmarks.progressive",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=8, help="renders per case")
    p.add_argument("--cases", default="diffusion-tiny,studio-product,studio")
    p.add_argument("--out", default=None)
    return p.parse_args(argv)


def stream_once(client: httpx.Client, partials: int, **kw: Any) -> dict[str, float]:
    t0 = time.perf_counter()
    first = None
    kinds: list[str] = []
    with client.stream("POST", f"/v1/render?stream=true&partial_images={partials}", **kw) as r:
        if r.status_code != 200:
            raise RuntimeError(f"{r.status_code}: {r.read()[:300]!r}")
        for line in r.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
                kinds.append(kind)
                if kind == "partial" and first is None:
                    first = time.perf_counter() - t0
                if kind == "error":
                    raise RuntimeError("error event")
    total = time.perf_counter() - t0
    return {"first_partial_s": first if first is not None else float("nan"), "final_s": total,
            "partials": kinds.count("partial")}


def _case_server(case: str, tmp: Path) -> tuple[list[str], dict[str, str], str]:
    port = free_port()
    if case == "diffusion-tiny":
        from swiftshot.testing.tiny_pipeline import build_tiny_sd, build_tiny_taesd

        model = build_tiny_sd(tmp / "tiny-sd")
        taesd = build_tiny_taesd(tmp / "tiny-taesd")
        env = server_env(tmp / "var", "diffusion", "128x128", {
            "SWIFTSHOT_ENGINE__DIFFUSION__MODEL": str(model),
            "SWIFTSHOT_ENGINE__DIFFUSION__TINY_VAE": str(taesd)})
        return swiftshot_command(port, "diffusion"), env, f"http://127.0.0.1:{port}"
    env = server_env(tmp / "var", "studio", "2048x2048" if case == "studio-2048" else "1024x1024")
    return swiftshot_command(port, "studio"), env, f"http://127.0.0.1:{port}"


def run_case(case: str, n: int) -> dict[str, Any]:
    rng = random.Random(3)
    with tempfile.TemporaryDirectory(prefix="swiftshot-progressive-") as tmp:
        command, env, url = _case_server(case, Path(tmp))
        port = int(url.rsplit(":", 1)[1])
        with running(command, env, port) as base, httpx.Client(base_url=base, timeout=300) as c:
            samples = []
            for i in range(n + 1):  # the first is a warm-up, not counted
                if case == "diffusion-tiny":
                    s = stream_once(c, 2, json={"prompt": f"a red sneaker {i}", "size": "128x128",
                                                "steps": 4, "seed": i})
                elif case == "studio-product":
                    spec = {"ops": [{"op": "compose", "backdrop": "engine",
                                     "prompt": "oak table, golden hour"}],
                            "size": "1024x1024", "seed": i}
                    s = stream_once(c, 1, data={"spec": orjson.dumps(spec).decode()},
                                    files={"product": ("p.png", product_png(rng, 768),
                                                       "image/png")})
                else:
                    side = "2048x2048" if case == "studio-2048" else "1024x1024"
                    s = stream_once(c, 1, json={"prompt": f"white marble, morning light {i}",
                                                "size": side, "seed": i})
                if i:
                    samples.append(s)
    first = [s["first_partial_s"] * 1000 for s in samples]
    final = [s["final_s"] * 1000 for s in samples]
    ratios = [a / b for a, b in zip(first, final, strict=True)]
    return {"case": case, "n": len(samples), "partials_each": [s["partials"] for s in samples],
            "first_partial_p50_ms": percentile(first, 50), "final_p50_ms": percentile(final, 50),
            "ratio_p50": percentile(ratios, 50), "ratio_max": max(ratios),
            "first_partial_ms": first, "final_ms": final, "load_avg": os.getloadavg()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result: dict[str, Any] = {"benchmark": "progressive", "command": " ".join(sys.argv),
                              "config": vars(args), "goal": "first partial <= 30% of final",
                              "load_avg_before": os.getloadavg(), "cases": []}
    print(f"{'case':16} {'n':>3} {'first partial p50':>18} {'final p50':>10} {'ratio p50':>9} "
          f"{'ratio max':>9}  load")
    for case in args.cases.split(","):
        r = run_case(case, args.n)
        result["cases"].append(r)
        print(f"{case:16} {r['n']:>3} {r['first_partial_p50_ms']:>15.1f} ms {r['final_p50_ms']:>7.1f} ms "
              f"{r['ratio_p50']:>9.1%} {r['ratio_max']:>9.1%}  {r['load_avg'][0]:.1f}", flush=True)
    path = write_result("progressive", result, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
