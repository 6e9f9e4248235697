"""``swiftshot bench models``: latency of the engines and encoders, as tables and one JSON file.

Runs the studio engine and the delivery codecs (:mod:`swiftshot.benchmarks.studio`) and the
diffusion engine per stage and per optimisation switch (:mod:`swiftshot.benchmarks.diffusion`),
on a local model folder (``--model``) or a real-size architecture with random weights
(``--arch``), and writes ``bench/results/models.json`` with the machine it ran on.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from swiftshot.benchmarks.diffusion import TABLE_COLUMNS, DiffusionBenchConfig, Variant

QUICK = {"sizes": "256", "batches": "1", "variants": "fp32,bf16", "studio_sizes": "512",
         "repeats": 1}


def _ints(text: str, what: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"{what} must be positive integers joined by commas "
                                         f"(e.g. 256,512); got {text!r}")
    return values


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--only", choices=("all", "studio", "diffusion"), default="all",
                   help="which engines to measure (default all)")
    p.add_argument("--model", default=None,
                   help="local diffusers pipeline folder (real weights) for the diffusion rows")
    p.add_argument("--tiny-vae", default=None, help="AutoencoderTiny folder (default MODEL/taesd)")
    p.add_argument("--arch", default="sd-turbo", choices=("sd-turbo", "sdxl-turbo"),
                   help="random-weight architecture when no --model is given (default sd-turbo)")
    p.add_argument("--dtypes", "--variants", dest="variants", default=None,
                   help="variants: fp32/bf16/fp16 joined by + with int8, compile, cl, vae32 "
                        "(default fp32,bf16,int8; --quick: fp32,bf16)")
    p.add_argument("--sizes", default=None, help="square sides (default 256,512; --quick: 256)")
    p.add_argument("--batches", default=None, help="batch sizes (default 1,4; --quick: 1)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--repeats", type=int, default=None, help="timed calls after the warm-up")
    p.add_argument("--steps", type=int, default=1, help="denoising steps end to end (default 1)")
    p.add_argument("--goal", type=float, default=2.5,
                   help="end-to-end goal in seconds for one 512² image (default 2.5)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice, one per core)")
    p.add_argument("--quick", action="store_true", help="a small run (a minute or two on a CPU)")
    p.add_argument("--out", default=None, help="JSON path (default bench/results/models.json)")


def config_from_args(args: argparse.Namespace) -> DiffusionBenchConfig:
    from swiftshot.cli import CliError

    def pick(name: str, default: str) -> str:
        value = getattr(args, name)
        return value if value is not None else (QUICK[name] if args.quick else default)

    try:
        variants = [v.strip() for v in pick("variants", "fp32,bf16,int8").split(",") if v.strip()]
        for v in variants:
            Variant.parse(v)
        sizes = _ints(pick("sizes", "256,512"), "--sizes")
        batches = _ints(pick("batches", "1,4"), "--batches")
    except (ValueError, argparse.ArgumentTypeError) as e:
        raise CliError(str(e)) from None
    bad = [s for s in sizes if s % 64 or not 64 <= s <= 2048]
    if bad:
        raise CliError(f"--sizes must be multiples of 64 between 64 and 2048; got {bad}")
    repeats = args.repeats if args.repeats is not None else 1
    if repeats < 1:
        raise CliError(f"--repeats must be at least 1; got {repeats}")
    if not 1 <= args.steps <= 100:
        raise CliError(f"--steps must be between 1 and 100; got {args.steps}")
    return DiffusionBenchConfig(
        arch=None if args.model else args.arch, model=args.model, tiny_vae=args.tiny_vae,
        sizes=sizes, batches=batches, variants=variants, device=args.device, repeats=repeats,
        steps=args.steps, goal_s=args.goal, goal_size=512 if 512 in sizes else max(sizes))


def main(args: argparse.Namespace) -> int:
    from swiftshot.benchmarks.machine import RESULTS_DIR, machine_info, write_result
    from swiftshot.cli import CliError

    cfg = config_from_args(args)
    out = Path(args.out) if args.out else RESULTS_DIR / "models.json"
    cfg.partial_out = f"{out}.tmp"
    if cfg.model:  # fail before any slow work when the folder is wrong
        from swiftshot.engines.diffusion import resolve_model_folder

        resolve_model_folder(cfg.model)
    if args.threads is not None:
        if args.threads < 1:
            raise CliError(f"--threads must be at least 1; got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    info = machine_info()
    print(f"# swiftshot bench models — {info['date']} — {info['cpu']} ({info['cores']} cores)"
          + (f" — {info['gpu']}" if "gpu" in info else ""))
    result: dict[str, Any] = {
        "command": " ".join(sys.argv),
        "args": {k: v for k, v in vars(args).items() if k != "func" and not callable(v)},
    }
    if args.only in ("all", "studio"):
        result.update(_studio(args.quick))
    if args.only in ("all", "diffusion"):
        # Other processes on the machine change CPU figures: the load average goes with them.
        result["load_avg_before"] = os.getloadavg()
        result["diffusion"] = _diffusion(cfg)
        result["load_avg_after"] = os.getloadavg()
        import torch

        result["torch_threads"] = torch.get_num_threads()
    path = write_result("models", result, out)
    Path(cfg.partial_out).unlink(missing_ok=True)
    print(f"\nwrote {path}")
    return 0


def _studio(quick: bool) -> dict[str, Any]:
    from swiftshot.benchmarks.machine import print_table

    try:
        from swiftshot.benchmarks.studio import bench_codecs, bench_studio
    except ImportError as e:
        print(f"\n(studio/codec benchmarks not available in this build: {e})")
        return {"studio": None, "codecs": None}
    sizes = (512,) if quick else (512, 1024, 2048)
    repeats = 3 if quick else 15
    print("\n## studio engine (ms per render)")
    studio = bench_studio(sizes, repeats)
    print_table(studio, ["size", "prompt", "p50_ms", "p90_ms"])
    print("\n## codecs (1024² studio render)")
    codecs = bench_codecs(max(3, repeats // 3))
    print_table(codecs, ["format", "setting", "encode_ms", "decode_ms", "bytes"])
    return {"studio": studio, "codecs": codecs}


def _diffusion(cfg: DiffusionBenchConfig) -> dict[str, Any]:
    from swiftshot.benchmarks.diffusion import bench_diffusion
    from swiftshot.benchmarks.machine import print_table

    print(f"\n## diffusion engine ({cfg.model or cfg.arch})")
    result = bench_diffusion(cfg, log=lambda line: print(line, flush=True))
    print()
    rows = [r for r in result["rows"] if "error" not in r]
    cols = [c for c in TABLE_COLUMNS if any(c in r for r in rows)]
    print_table(rows, cols)
    if result["random_weights"]:
        print("RANDOM WEIGHTS: latency is real, pixels (and dev_* deviations) are not the model's")
    g = result["goal"]
    if g:
        verdict = "met" if g["met"] else f"missed by {g['best_s'] - g['goal_s']:.2f}s"
        naive = f"; naive fp32 + full VAE {g['naive_fp32_vae_s']:.2f}s" if g["naive_fp32_vae_s"] else ""
        print(f"goal {g['size']}² 1 image ≤ {g['goal_s']}s: best {g['best_s']:.2f}s "
              f"({g['best']}) — {verdict}{naive}")
    return result
