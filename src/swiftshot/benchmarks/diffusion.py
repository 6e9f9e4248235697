"""Per-stage latency of the diffusion engine, per optimisation switch, size and batch.

For each *variant* (a dtype plus switches, e.g. ``bf16``, ``fp32+int8``, ``fp16+compile``) the
same fp32 pipeline is copied, prepared by :meth:`DiffusionEngine.from_pipeline` exactly as the
engine prepares a loaded folder, and timed stage by stage:

  text encoder · one UNet step · VAE decode · tiny VAE (TAESD) decode ·
  end to end through ``DiffusionEngine.run`` (1 step) with the full VAE and with TAESD

plus peak memory (the process's peak RSS, VmHWM, on CPU; ``max_memory_allocated`` on CUDA) and
the output's deviation from the fp32 variant's (same seeds, same decoder), in uint8 grey levels.

Each stage is called once to warm up (oneDNN primitive creation, cuDNN autotune, compilation)
and then ``repeats`` times; the minimum is reported (other processes share the machine, and
the minimum is the least disturbed reading). End-to-end runs reuse the stages' warm-up.

With ``arch`` (``sd-turbo``, ``sdxl-turbo``) the weights are RANDOM: latencies are real, pixels
(and so the deviation figures, which depend on the weights) are not those of the real model.
"""

from __future__ import annotations

import copy
import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DTYPES = ("fp32", "bf16", "fp16")
FLAGS = ("int8", "compile", "cl", "vae32")


@dataclass(frozen=True)
class Variant:
    """A dtype plus switches, named as on the command line: ``bf16+int8``, ``fp16+compile``."""

    dtype: str = "fp32"
    int8: bool = False
    compile: bool = False
    channels_last: bool = False
    vae32: bool = False
    """Decoders in fp32 under a bf16/fp16 UNet and text encoder (vae_dtype=fp32)."""

    @classmethod
    def parse(cls, text: str) -> Variant:
        parts = [p for p in text.strip().lower().split("+") if p]
        dtypes = [p for p in parts if p in DTYPES]
        unknown = [p for p in parts if p not in DTYPES and p not in FLAGS]
        if unknown or len(dtypes) > 1 or not parts:
            raise ValueError(
                f"variant {text!r}: expected one of {'/'.join(DTYPES)} (default fp32) joined by "
                f"'+' with any of {', '.join(FLAGS)} (cl = channels-last; vae32 = decoders in fp32), e.g. bf16+int8"
            )
        return cls(dtype=dtypes[0] if dtypes else "fp32", int8="int8" in parts,
                   compile="compile" in parts, channels_last="cl" in parts,
                   vae32="vae32" in parts)

    @property
    def name(self) -> str:
        flags = (("int8", self.int8), ("compile", self.compile), ("cl", self.channels_last),
                 ("vae32", self.vae32))
        return "+".join([self.dtype] + [f for f, on in flags if on])


@dataclass
class DiffusionBenchConfig:
    arch: str | None = "sd-turbo"
    """Random-weight architecture to build (ignored when ``model`` is given)."""
    model: str | None = None
    """Local diffusers pipeline folder (real weights): measured instead of ``arch``."""
    tiny_vae: str | None = None
    """AutoencoderTiny folder for the TAESD columns (default: MODEL/taesd if present)."""
    sizes: Sequence[int] = (256, 512)
    batches: Sequence[int] = (1, 4)
    variants: Sequence[str] = ("fp32", "bf16", "int8")
    device: str = "auto"
    repeats: int = 1
    steps: int = 1
    prompt: str = "white ceramic mug on a marble counter, soft morning light"
    goal_s: float | None = 2.5
    """End-to-end goal (seconds) for batch 1 at goal_size; None: no goal."""
    goal_size: int = 512
    partial_out: str | None = None
    """Rewritten after every row, so a run killed by a time limit still leaves its rows."""
    extra: dict[str, Any] = field(default_factory=dict)


class PeakMemory:
    """Peak resident memory (CPU) or peak CUDA allocation inside a ``with`` block.

    On Linux the kernel keeps the peak itself (VmHWM), and writing 5 to clear_refs resets it:
    no sampling thread to wake up and steal a core from the measured code.
    """

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        self.peak_bytes = 0

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
        else:
            try:
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:
                pass  # then VmHWM is the process's peak so far: an upper bound
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            import torch

            self.peak_bytes = int(torch.cuda.max_memory_allocated())
            return
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_bytes = int(line.split()[1]) * 1024
        except OSError:
            import resource

            self.peak_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: str, repeats: int, warmup: bool = True) -> tuple[float, Any]:
    """(best seconds of ``repeats`` calls, last result), after one warm-up call."""
    out = fn() if warmup else None
    _sync(device)
    best = float("inf")
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        out = fn()
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return best, out


def _base_pipeline(cfg: DiffusionBenchConfig, device: str) -> tuple[Any, Any, str, bool]:
    """(fp32 pipeline, fp32 tiny VAE or None, identity, random_weights)."""
    import torch

    from swiftshot.engines.architectures import build_architecture, build_taesd

    if cfg.model:
        from diffusers import AutoencoderTiny, AutoPipelineForText2Image
        from diffusers.utils import logging as diffusers_logging

        from swiftshot.engines.diffusion import (
            dtype_kwarg,
            folder_fingerprint,
            resolve_model_folder,
        )

        diffusers_logging.disable_progress_bar()
        folder = resolve_model_folder(cfg.model)
        pipe = AutoPipelineForText2Image.from_pretrained(
            str(folder), **dtype_kwarg(torch.float32), local_files_only=True)
        tiny_dir = Path(cfg.tiny_vae) if cfg.tiny_vae else folder / "taesd"
        tiny = (AutoencoderTiny.from_pretrained(str(tiny_dir), local_files_only=True)
                if (tiny_dir / "config.json").is_file() else None)
        return pipe, tiny, folder_fingerprint(folder), (folder / "RANDOM_WEIGHTS.txt").exists()
    # On a GPU the modules are created there (seconds); on CPU in host memory.
    build_on = device if device.startswith("cuda") else "cpu"
    pipe = build_architecture(cfg.arch or "sd-turbo", device=build_on)
    return pipe, build_taesd(device=build_on), f"random-{cfg.arch}", True


def _encode(pipe: Any, prompts: list[str], device: str) -> tuple[Any, dict[str, Any]]:
    """Prompt embeddings and the UNet's extra conditioning (SDXL's pooled embeds + time ids)."""
    out = pipe.encode_prompt(prompt=prompts, device=device, num_images_per_prompt=1,
                             do_classifier_free_guidance=False)
    if len(out) == 4:  # SDXL: (embeds, neg, pooled, neg_pooled)
        return out[0], {"text_embeds": out[2]}
    return out[0], {}


def _bench_one(engine: Any, size: int, batch: int, cfg: DiffusionBenchConfig,
               device: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    import torch

    from swiftshot.spec import RenderSpec

    pipe, tiny = engine._pipe, engine._tiny
    dtype = pipe.unet.dtype if hasattr(pipe, "unet") else torch.float32
    prompts = [f"{cfg.prompt}, view {i}" for i in range(batch)]
    row: dict[str, Any] = {}
    with torch.inference_mode():
        row["text_enc_s"], (emb, added) = timed(lambda: _encode(pipe, prompts, device), device,
                                               cfg.repeats)
        g = torch.Generator("cpu").manual_seed(0)
        f, ch = pipe.vae_scale_factor, pipe.unet.config.in_channels
        lat = torch.randn((batch, ch, size // f, size // f), generator=g).to(device, dtype)
        t = torch.tensor([999], device=device)
        unet_kwargs: dict[str, Any] = {}
        if added:
            time_ids = torch.tensor([[size, size, 0, 0, size, size]], device=device, dtype=dtype)
            unet_kwargs["added_cond_kwargs"] = {**added, "time_ids": time_ids.repeat(batch, 1)}
        row["unet_step_s"], _ = timed(
            lambda: pipe.unet(lat, t, encoder_hidden_states=emb, **unet_kwargs), device, cfg.repeats)
        vae = pipe.vae
        row["vae_decode_s"], _ = timed(
            lambda: vae.decode(lat / vae.config.scaling_factor), device, cfg.repeats)
        if tiny is not None:
            row["taesd_decode_s"], _ = timed(lambda: tiny.decode(lat), device, cfg.repeats)
    specs = [RenderSpec(prompt=p, width=size, height=size, seed=i, steps=cfg.steps, guidance=0.0,
                        engine="diffusion") for i, p in enumerate(prompts)]
    images: dict[str, np.ndarray] = {}
    row["e2e_vae_s"], out = timed(lambda: engine.run(specs), device, cfg.repeats, warmup=False)
    images["vae"] = np.stack([np.asarray(im) for im in out])
    if tiny is not None:
        full = pipe.vae
        pipe.vae = tiny  # what tiny_vae_final=True does at load
        try:
            row["e2e_taesd_s"], out = timed(lambda: engine.run(specs), device, cfg.repeats,
                                            warmup=False)
        finally:
            pipe.vae = full
        images["taesd"] = np.stack([np.asarray(im) for im in out])
    best = row.get("e2e_taesd_s", row["e2e_vae_s"])
    row["per_image_s"] = best / batch
    return row, images


def bench_diffusion(cfg: DiffusionBenchConfig,
                    log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every variant × size × batch; returns ``{"rows": [...], "goal": {...}, ...}``."""
    import torch

    from swiftshot.config import DiffusionSettings
    from swiftshot.engines.diffusion import DiffusionEngine, resolve_device

    device = resolve_device(cfg.device)
    variants = [Variant.parse(v) for v in cfg.variants]
    t0 = time.perf_counter()
    base, base_tiny, identity, random_weights = _base_pipeline(cfg, device)
    build_s = time.perf_counter() - t0
    what = cfg.model or cfg.arch
    log(f"# diffusion: {what} on {device}, built/loaded in {build_s:.1f}s"
        + (" — RANDOM WEIGHTS: latency real, pixels not" if random_weights else ""))
    rows: list[dict[str, Any]] = []
    outputs: dict[tuple[str, int, int, str], np.ndarray] = {}
    for variant in variants:
        settings = DiffusionSettings(device=device, dtype=variant.dtype, int8=variant.int8,
                                     compile=variant.compile, channels_last=variant.channels_last,
                                     tiny_vae_final=False, default_steps=cfg.steps,
                                     vae_dtype="fp32" if variant.vae32 else "auto")
        try:
            engine = DiffusionEngine.from_pipeline(
                copy.deepcopy(base), settings, identity=identity,
                tiny_vae=copy.deepcopy(base_tiny) if base_tiny is not None else None)
        except Exception as e:  # one variant failing (e.g. fp16 on CPU) must not stop the rest
            log(f"  {variant.name}: skipped ({type(e).__name__}: {e})")
            rows.append({"variant": variant.name, "error": f"{type(e).__name__}: {e}"})
            continue
        for size in cfg.sizes:
            for batch in cfg.batches:
                try:
                    with PeakMemory(device) as mem:
                        row, images = _bench_one(engine, size, batch, cfg, device)
                except Exception as e:
                    log(f"  {variant.name} {size}² ×{batch}: failed ({type(e).__name__}: {e})")
                    if device.startswith("cuda"):
                        torch.cuda.empty_cache()
                    rows.append({"variant": variant.name, "size": size, "batch": batch,
                                 "error": f"{type(e).__name__}: {e}"})
                    continue
                row = {"arch": what, "variant": variant.name, "size": size, "batch": batch,
                       "vae_dtype": engine.vae_dtype, **row, "peak_mem_gb": mem.peak_bytes / 1e9}
                for dec, img in images.items():
                    outputs[(variant.name, size, batch, dec)] = img
                rows.append(row)
                log("  " + "  ".join(f"{k}={_fmt(v)}" for k, v in row.items() if k != "arch"))
                if cfg.partial_out:
                    _write_partial(cfg, device, rows)
        del engine
        gc.collect()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    deviations(rows, outputs)
    return {"config": _config_dict(cfg, device), "random_weights": random_weights,
            "build_s": build_s, "rows": rows,
            # the goal is a CPU goal (one 512² image on the 2-core machine)
            "goal": goal(rows, cfg) if device == "cpu" else {}}


def deviations(rows: list[dict[str, Any]],
               outputs: dict[tuple[str, int, int, str], np.ndarray]) -> None:
    """Add dev_{decoder}_max/mean: uint8 grey levels away from the fp32 variant's output (same
    seeds, same decoder). Variants may run in any order; fp32 need only be among them."""
    for row in rows:
        if "error" in row:
            continue
        for dec in ("vae", "taesd"):
            ref = outputs.get(("fp32", row["size"], row["batch"], dec))
            img = outputs.get((row["variant"], row["size"], row["batch"], dec))
            if ref is None or img is None:
                continue
            diff = np.abs(img.astype(np.int16) - ref.astype(np.int16))
            row[f"dev_{dec}_max"] = int(diff.max())
            row[f"dev_{dec}_mean"] = float(diff.mean())


def _write_partial(cfg: DiffusionBenchConfig, device: str, rows: list[dict[str, Any]]) -> None:
    import json

    from swiftshot.benchmarks.machine import machine_info

    path = Path(cfg.partial_out or "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine_info(), "partial": True,
                                "config": _config_dict(cfg, device), "rows": rows},
                               indent=2, default=str))


def goal(rows: list[dict[str, Any]], cfg: DiffusionBenchConfig) -> dict[str, Any]:
    """Best batch-1 end-to-end time at goal_size against the goal, and against naive fp32+VAE."""
    ok = [r for r in rows if "error" not in r and r["size"] == cfg.goal_size and r["batch"] == 1]
    if not ok or cfg.goal_s is None:
        return {}
    cands = [(r.get("e2e_taesd_s", r["e2e_vae_s"]), r["variant"],
              "taesd" if "e2e_taesd_s" in r else "vae") for r in ok]
    cands += [(r["e2e_vae_s"], r["variant"], "vae") for r in ok]
    best_s, variant, decoder = min(cands)
    naive = next((r["e2e_vae_s"] for r in ok if r["variant"] == "fp32"), None)
    return {"size": cfg.goal_size, "goal_s": cfg.goal_s, "best_s": best_s,
            "best": f"{variant} + {decoder} decoder", "met": best_s <= cfg.goal_s,
            "naive_fp32_vae_s": naive,
            "speedup_vs_naive": (naive / best_s) if naive else None}


def _config_dict(cfg: DiffusionBenchConfig, device: str) -> dict[str, Any]:
    return {"arch": cfg.arch, "model": cfg.model, "sizes": list(cfg.sizes),
            "batches": list(cfg.batches), "variants": list(cfg.variants), "device": device,
            "repeats": cfg.repeats, "steps": cfg.steps, "timing": "min of repeats after 1 warm-up"}


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


TABLE_COLUMNS = ["variant", "vae_dtype", "size", "batch", "text_enc_s", "unet_step_s", "vae_decode_s",
                 "taesd_decode_s", "e2e_vae_s", "e2e_taesd_s", "per_image_s", "peak_mem_gb",
                 "dev_vae_max", "dev_vae_mean"]
