"""The diffusion engine: any diffusers text-to-image pipeline from a local folder, never downloaded.

One engine serves one model. Specs that share a :meth:`DiffusionEngine.batch_key` run as ONE
pipeline call with the prompts as a list and one CPU ``torch.Generator`` per item seeded with the
spec's seed, so an image does not depend on what it was batched with (nor on the device: CPU
generators give the same starting noise on CPU and GPU).

Optimisation switches (all in :class:`~swiftshot.config.DiffusionSettings`, measured by
``swiftshot bench models``): dtype (fp32/bf16/fp16), a tiny VAE decoder (TAESD) for previews or
finals, int8 dynamic quantisation of the denoiser's linear layers (torchao), ``torch.compile``
and channels-last. The switches that change pixels (dtype, tiny VAE for finals, int8) are part of
:attr:`DiffusionEngine.version`, and so of every cache key.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from swiftshot.config import DiffusionSettings
from swiftshot.engines.base import (
    Cancelled,
    EngineConfigError,
    EngineError,
    StepCallback,
    preview_steps,
    wanted_previews,
)
from swiftshot.engines.prompt_cache import PromptEmbeddingCache
from swiftshot.spec import RenderSpec

if TYPE_CHECKING:
    import torch

ENGINE_REVISION = "1"
"""Bump when this module changes how pixels are made from the same model and switches."""

# SD 1.x/2.x latent → RGB projection (a linear fit of the VAE decoder): a preview for nothing.
_LATENT_RGB = ((0.298, 0.207, 0.208), (0.187, 0.286, 0.173), (-0.158, 0.189, 0.264),
               (-0.184, -0.271, -0.473))


def _offline() -> None:
    # Set before diffusers/transformers/huggingface_hub read them: nothing may be fetched.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def resolve_model_folder(model: str | None) -> Path:
    """The folder of a diffusers pipeline: a local path, or a repo id in the offline HF cache."""
    if not model:
        raise EngineConfigError(
            "the diffusion engine has no model configured; set engine.diffusion.model "
            "(SWIFTSHOT_ENGINE__DIFFUSION__MODEL) or pass --model to a local folder holding a "
            "diffusers pipeline (with model_index.json) or a repo id in the offline HF cache"
        )
    path = Path(model).expanduser()
    if not path.exists():
        cached = _from_hf_cache(model)
        if cached is None:
            raise EngineConfigError(
                f"diffusion model {model!r} does not exist: it is neither a folder nor a repo id "
                "found in the offline Hugging Face cache (nothing is downloaded); give a folder "
                "holding a diffusers pipeline (with model_index.json)"
            )
        path = cached
    if not path.is_dir():
        raise EngineConfigError(
            f"diffusion model {model!r} is a file; expected a folder holding a diffusers "
            "pipeline (with model_index.json)"
        )
    if not (path / "model_index.json").is_file():
        raise EngineConfigError(
            f"diffusion model folder {str(path)!r} is not a diffusers pipeline: it has no "
            "model_index.json (save one with pipeline.save_pretrained(folder))"
        )
    return path.resolve()


def _from_hf_cache(repo_id: str) -> Path | None:
    if repo_id.count("/") != 1 or repo_id.startswith(("/", ".", "~")):
        return None
    _offline()
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not cached, or not a valid id: both mean "not found offline"
        return None


def folder_fingerprint(path: Path) -> str:
    """Content fingerprint: every config file in full, and each weight file's size plus its
    first and last MiB (reading multi-GB weights in full would make start-up slow)."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = f.relative_to(path).as_posix()
        if rel.startswith(".") or "/." in rel:
            continue
        h.update(rel.encode() + b"\0")
        if f.suffix in (".json", ".txt", ".model"):
            h.update(f.read_bytes())
        elif f.suffix in (".safetensors", ".bin", ".pt", ".ckpt", ".gguf"):
            size = f.stat().st_size
            h.update(str(size).encode())
            with f.open("rb") as fh:
                h.update(fh.read(1 << 20))
                if size > 2 << 20:
                    fh.seek(-(1 << 20), os.SEEK_END)
                    h.update(fh.read())
    return h.hexdigest()[:12]


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EngineConfigError(f"engine.diffusion.device is {device!r} but CUDA is not available; "
                                "use auto or cpu")
    return device


def cpu_has_bf16() -> bool:
    """True when oneDNN has native bf16 kernels here (AVX-512 BF16 / AMX); else bf16 is emulated
    and slower than fp32."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        try:
            flags = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
        return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(dtype: str, device: str) -> str:
    if dtype != "auto":
        if dtype == "fp16" and device == "cpu":
            raise EngineConfigError("engine.diffusion.dtype fp16 is for CUDA; on cpu use bf16, "
                                    "fp32 or auto")
        return dtype
    if device.startswith("cuda"):
        return "fp16"
    return "bf16" if cpu_has_bf16() else "fp32"


def resolve_vae_dtype(vae_dtype: str, dtype: str, device: str) -> str:
    if vae_dtype == "same":
        return dtype
    if vae_dtype == "fp32":
        return "fp32"
    # auto: on the 2-core AMX Xeon measured (docs/PERFORMANCE.md) fp32 decoders were not faster
    # than bf16 ones, so the pipeline's dtype is kept.
    return dtype


def cast_autoencoder(vae: torch.nn.Module, vae_dt: torch.dtype, pipe_dt: torch.dtype) -> None:
    """Run ``vae`` in ``vae_dt`` inside a pipeline whose tensors are ``pipe_dt``.

    Its weights are cast, and its ``encode``/``decode`` are wrapped on the instance to cast their
    inputs in and their latents back out, so the pipeline code needs no change.
    """
    vae.to(vae_dt)
    encode, decode = vae.encode, vae.decode

    def decode_cast(z: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        return decode(z.to(vae_dt), *args, **kwargs)

    def encode_cast(x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        out = encode(x.to(vae_dt), *args, **kwargs)
        found = out[0] if isinstance(out, tuple) else (
            getattr(out, "latent_dist", None) or getattr(out, "latents", None))
        holder = found if not hasattr(out, "latents") else out
        for attr in ("parameters", "mean", "logvar", "std", "var", "latents"):
            value = getattr(holder, attr, None)
            if value is not None and hasattr(value, "to"):
                setattr(holder, attr, value.to(pipe_dt))
        if isinstance(out, tuple) and hasattr(out[0], "to"):
            return (out[0].to(pipe_dt), *out[1:])
        return out

    vae.decode = decode_cast
    vae.encode = encode_cast


def torch_dtype(name: str) -> torch.dtype:
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def quantize_int8(module: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 (activations quantised per call, weights once) of the Linear layers.

    torchao's int8×int8 path is used; it needs fp32/bf16 linears and leaves convs as they are.
    """
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    quantize_(module, Int8DynamicActivationInt8WeightConfig())
    return module


def dtype_kwarg(dt: torch.dtype) -> dict[str, Any]:
    """``from_pretrained``'s dtype keyword: ``dtype`` from diffusers 0.42 (``torch_dtype`` warns)."""
    import diffusers
    from packaging.version import Version

    return {"dtype" if Version(diffusers.__version__) >= Version("0.42") else "torch_dtype": dt}


def denoiser_of(pipe: Any) -> tuple[str, Any]:
    for attr in ("unet", "transformer", "prior"):
        mod = getattr(pipe, attr, None)
        if mod is not None:
            return attr, mod
    raise EngineConfigError(f"{type(pipe).__name__} has no unet or transformer to optimise")


def to_pil(arr: Any) -> Image.Image:
    """A float image in [-1, 1], CHW tensor → RGB PIL."""
    import numpy as np

    x = ((arr.float().clamp(-1, 1) + 1) * 127.5).round().to("cpu").numpy().astype(np.uint8)
    return Image.fromarray(x.transpose(1, 2, 0), "RGB")


OV_FAMILIES = ("StableDiffusion", "StableDiffusionXL", "StableDiffusionImg2Img",
               "StableDiffusionInpaint", "StableDiffusionXLImg2Img", "StableDiffusionXLInpaint")
"""Pipelines (``<family>Pipeline``) whose UNet / CLIP text encoders / VAE the OpenVINO backend
converts (what optimum-intel's OVStableDiffusion(XL)Pipeline covers too)."""


def resolve_backend(settings: DiffusionSettings, device: str, pipeline_class: str) -> tuple[str, str]:
    """(backend, why): the backend that runs this model here and the reason, for `engines`."""
    from swiftshot.engines.ov_backend import openvino_missing

    family = pipeline_class.removesuffix("Pipeline")
    if settings.quantize != "none" and settings.int8:
        raise EngineConfigError("engine.diffusion.int8 (8-bit weights) and quantize int8 (weights "
                                "and activations) are alternatives: set one of them")
    if settings.quantize != "none" and settings.backend != "openvino":
        if settings.backend == "torch" or device != "cpu":
            raise EngineConfigError(
                f"engine.diffusion.quantize {settings.quantize} is an option of the OpenVINO "
                "backend (CPU); the torch backend has int8 (dynamic, torchao): set quantize none "
                "or backend openvino")
        settings = settings.model_copy(update={"backend": "openvino"})
        backend, _ = resolve_backend(settings, device, pipeline_class)
        return backend, f"auto: quantize {settings.quantize} is an OpenVINO option → openvino"
    if settings.backend == "torch":
        return "torch", "backend = torch (configured)"
    if settings.backend == "openvino":
        if device != "cpu":
            raise EngineConfigError(f"engine.diffusion.backend openvino runs on the CPU; device is "
                                    f"{device!r}: use backend torch (or auto) on CUDA")
        if settings.compile:
            raise EngineConfigError("engine.diffusion.compile is an option of the torch backend; "
                                    "OpenVINO compiles its own graph: unset compile or use torch")
        missing = openvino_missing()
        if missing:
            raise EngineConfigError(f"engine.diffusion.backend is openvino but {missing}")
        if family not in OV_FAMILIES:
            raise EngineConfigError(
                f"the OpenVINO backend converts Stable Diffusion 1/2 and SDXL pipelines; "
                f"{pipeline_class} is not one of them: use backend torch")
        return "openvino", "backend = openvino (configured)"
    if device != "cpu":
        return "torch", f"auto: {device} → torch (OpenVINO here is the CPU backend)"
    if settings.compile:
        return "torch", "auto: compile is set, a torch option → torch"
    missing = openvino_missing()
    if missing:
        return "torch", f"auto: {missing} → torch"
    if family not in OV_FAMILIES:
        return "torch", f"auto: {pipeline_class} is not a pipeline the OpenVINO backend converts → torch"
    # Both can run it here: the first load measures them (engines/backend_probe.py).
    return PROBE, ("auto: torch and openvino can both run this model on this CPU; the first load "
                   "times each on the model's shape and keeps the faster (cached per machine)")


PROBE = "probe"
"""resolve_backend's answer when ``auto`` is decided by the start-up probe."""


class DiffusionEngine:
    """Text-to-image (and image-to-image / inpainting) with one diffusers pipeline."""

    name = "diffusion"

    def __init__(self, settings: DiffusionSettings) -> None:
        self.settings = settings
        self.folder: Path | None = resolve_model_folder(settings.model)
        self.tiny_folder = self._tiny_folder(settings.tiny_vae)
        self.device = resolve_device(settings.device)
        self.dtype = resolve_dtype(settings.dtype, self.device)
        self.vae_dtype = resolve_vae_dtype(settings.vae_dtype, self.dtype, self.device)
        self.pipeline_class = json.loads((self.folder / "model_index.json").read_text()).get(
            "_class_name", "?")
        self.backend, self.backend_reason = resolve_backend(settings, self.device,
                                                            self.pipeline_class)
        self.model_id = folder_fingerprint(self.folder)
        self._init_state()
        if self.backend == PROBE:
            self._auto_probe = True
            self._probe_pending = True
            self._read_probe()
        self._version_str: str | None = None

    @classmethod
    def from_pipeline(cls, pipe: Any, settings: DiffusionSettings, *, identity: str,
                      tiny_vae: Any = None) -> DiffusionEngine:
        """An engine over an in-memory pipeline (benchmarks of random-weight architectures).

        ``identity`` stands in for the folder fingerprint in :attr:`version`; ``pipe`` and
        ``tiny_vae`` are moved, cast and optimised in place as ``load()`` would do.
        """
        self = cls.__new__(cls)
        self.settings = settings
        self.folder, self.tiny_folder = None, None
        self.device = resolve_device(settings.device)
        self.dtype = resolve_dtype(settings.dtype, self.device)
        self.vae_dtype = resolve_vae_dtype(settings.vae_dtype, self.dtype, self.device)
        self.pipeline_class = type(pipe).__name__
        self.backend, self.backend_reason = resolve_backend(settings, self.device,
                                                            self.pipeline_class)
        if self.backend == PROBE:  # an in-memory pipeline (benchmarks) is not probed
            self.backend, self.backend_reason = "openvino", (
                "auto: in-memory pipeline, not probed → openvino (fewer CPU-s than torch on the "
                "CPUs measured, docs/PERFORMANCE.md)")
        self.model_id = identity
        self._init_state()
        self._version_str = self._version(identity, "taesd" if tiny_vae is not None else None)
        self._pipe = self._prepare(pipe, tiny_vae)
        return self

    def _init_state(self) -> None:
        self._auto_probe = False
        """``backend = auto`` decided by the start-up probe (its key names the pixels)."""
        self._probe_pending = False
        self.probe: dict[str, Any] | None = None
        self._pipe: Any = None
        self._tiny: Any = None
        self._variants: dict[str, Any] = {}
        self._load_lock = threading.Lock()
        self.load_report: dict[str, Any] = {}
        self.prompt_cache = PromptEmbeddingCache(self.settings.prompt_cache_bytes)
        # One pipeline object is not safe to call from two threads at once.
        self._run_lock = threading.Lock()

    # -- identity --------------------------------------------------------------------------

    @staticmethod
    def _tiny_folder(tiny: str | None) -> Path | None:
        if tiny is None:
            return None
        path = Path(tiny).expanduser()
        if not (path / "config.json").is_file():
            raise EngineConfigError(
                f"engine.diffusion.tiny_vae {tiny!r} is not a folder holding an AutoencoderTiny "
                "(config.json + weights), e.g. madebyollin/taesd saved with save_pretrained"
            )
        return path.resolve()

    @property
    def version(self) -> str:
        """The cache-key identity of the pixels. Under ``auto`` decided by the probe it names the
        probe's key (model, work settings, machine, versions), not the backend: one key has one
        decision (cached on disk), so the version is known without measuring; a front process
        that only asks for it (the process executor's) does not load the model, and the worker's
        first load runs the probe and keeps the winner's pipeline (one load, not two)."""
        if self._version_str is None:
            self._version_str = self._version(self.model_id)
        return self._version_str

    @version.setter
    def version(self, value: str) -> None:
        self._version_str = value

    # -- backend = auto: the start-up probe ----------------------------------------------------

    @property
    def backend_pending(self) -> bool:
        """True while ``auto`` waits for the start-up probe (no cached decision yet)."""
        return self._probe_pending

    def _probe_work(self) -> dict[str, Any]:
        s = self.settings
        return {"dtype": self.dtype, "vae_dtype": self.vae_dtype,
                "tiny": folder_fingerprint(self.tiny_folder) if self.tiny_folder else None,
                "tiny_final": s.tiny_vae_final, "int8": s.int8,
                "quantize": getattr(s, "quantize", "none"), "steps": s.default_steps,
                "guidance": s.default_guidance, "size": self._probe_size()}

    def _probe_size(self) -> int:
        """The model's own default side (the UNet's sample size × the VAE's scale)."""
        assert self.folder is not None
        unet = json.loads((self.folder / "unet" / "config.json").read_text())
        vae = json.loads((self.folder / "vae" / "config.json").read_text())
        side = unet.get("sample_size", 64)
        side = side[0] if isinstance(side, list | tuple) else side
        return int(side) * 2 ** (len(vae.get("block_out_channels", (0, 0, 0, 0))) - 1)

    def _read_probe(self) -> bool:
        from swiftshot.engines import backend_probe as bp

        key, _ = bp.probe_key(self.model_id, self._probe_work())
        found = bp.read_decision(self.openvino_dir, key)
        if found is None:
            self.backend_reason = ("auto: not probed yet on this machine: the first load times "
                                   "torch and openvino on this model and keeps the faster")
            return False
        self.backend, self.probe = found["choice"], found
        self.backend_reason = bp.reason(found, cached=True)
        self._probe_pending = False
        return True

    def _resolve_probe(self, adopt: bool) -> None:
        """Decide ``auto`` by measuring (once per model × settings × machine × versions): each
        candidate engine is loaded and timed, the faster kept; ``adopt`` keeps its loaded
        pipeline as this engine's (a load), else it is dropped (a front process only asks for
        the version)."""
        if not self._probe_pending:
            return
        from swiftshot.engines import backend_probe as bp

        key, ident = bp.probe_key(self.model_id, self._probe_work())
        with bp.probe_lock(self.openvino_dir, key):
            if self._read_probe():  # another process probed meanwhile
                return
            size = self._probe_size()

            def make_engine(backend: str) -> DiffusionEngine:
                return DiffusionEngine(self.settings.model_copy(update={
                    "backend": backend, "openvino_dir": self.openvino_dir}))

            def make_spec(prompt: str, seed: int) -> RenderSpec:
                return RenderSpec(prompt=prompt, width=size, height=size, seed=seed,
                                  engine="diffusion").normalized()

            kept: dict[str, Any] = {}

            def keep(name: str, engine: DiffusionEngine) -> None:
                if adopt:
                    kept["engine"] = engine

            t = time.perf_counter()
            decision = bp.run_probe(["openvino", "torch"], make_engine, make_spec,
                                    self.settings.probe_s, keep)
            decision.update(date=bp.now(), size=size, steps=self.settings.default_steps,
                            probe_s=round(time.perf_counter() - t, 2), key=key, identity=ident)
            if decision["choice"] is None:
                raise EngineConfigError(
                    "backend auto: no backend could run this model here: " + "; ".join(
                        f"{b}: {why}" for b, why in decision["skipped"].items()))
            bp.write_decision(self.openvino_dir, key, decision)
        self.backend, self.probe = decision["choice"], decision
        self.backend_reason = bp.reason(decision, cached=False)
        self._probe_pending = False
        winner = kept.get("engine")
        if winner is not None:
            self._pipe, self._tiny = winner._pipe, winner._tiny
            self.load_report.update(winner.load_report)
        self.load_report["probe_s"] = decision["probe_s"]

    def _version(self, model_id: str, tiny_id: str | None = None) -> str:
        parts = [ENGINE_REVISION, model_id, self.dtype]
        if self.tiny_folder is not None:
            tiny_id = "taesd-" + folder_fingerprint(self.tiny_folder)[:8]
        if tiny_id is not None and self.settings.tiny_vae_final:
            parts.append(tiny_id)
        if self.vae_dtype != self.dtype:
            parts.append(f"vae-{self.vae_dtype}")
        if self._auto_probe:
            from swiftshot.engines import backend_probe as bp
            from swiftshot.engines.ov_backend import OV_REVISION

            key, _ = bp.probe_key(self.model_id, self._probe_work())
            parts.append(f"auto-{key[:12]}-ov{OV_REVISION}")
        elif self.backend == "openvino":
            from swiftshot.engines.ov_backend import OV_REVISION

            parts.append(f"ov{OV_REVISION}")
        if self.settings.int8:
            parts.append("int8")
        if self.settings.quantize == "int8":
            parts.append(f"q8c{self.settings.quantize_samples}")
        return ".".join(parts)

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.settings.model,
            "folder": str(self.folder) if self.folder else None,
            "pipeline": self.pipeline_class,
            "device": self.device,
            "backend": "auto (probe at first load)" if self._probe_pending else self.backend,
            "backend_reason": self.backend_reason,
            **({"probe": {k: self.probe[k] for k in ("date", "size", "steps", "measured",
                                                      "skipped", "choice") if k in self.probe}}
               if self.probe else {}),
            "dtype": self.dtype,
            "vae_dtype": self.vae_dtype,
            "tiny_vae": str(self.tiny_folder) if self.tiny_folder else self._tiny is not None,
            "tiny_vae_for": (None if self.tiny_folder is None and self._tiny is None
                             else "previews+finals" if self.settings.tiny_vae_final else "previews"),
            "int8": self.settings.int8,
            "quantize": self.settings.quantize,
            "compile": (self.settings.compile and self.settings.compile_mode),
            "channels_last": self.settings.channels_last and self.device.startswith("cuda"),
            "default_steps": self.settings.default_steps,
            "default_guidance": self.settings.default_guidance,
            "loaded": self._pipe is not None,
            **({"openvino_dir": str(self.openvino_dir),
                # converted models found: a start without them converts first (minutes)
                "openvino_cached": (self._ov_cached_components() if self.folder else None)}
               if self.backend in ("openvino", PROBE) and self.folder else {}),
            **({"load": self.load_report} if self.load_report else {}),
        }

    @property
    def openvino_dir(self) -> Path:
        # Settings() fills it from data_dir; a bare DiffusionSettings falls back to the env.
        return Path(self.settings.openvino_dir
                    or os.environ.get("SWIFTSHOT_ENGINE__DIFFUSION__OPENVINO_DIR")
                    or Path(os.environ.get("SWIFTSHOT_DATA_DIR", "var")) / "openvino").expanduser()

    # -- loading ---------------------------------------------------------------------------

    def load(self) -> None:
        with self._load_lock:
            if self._probe_pending:
                self._resolve_probe(adopt=True)
            if self._pipe is None:
                self._pipe = self._load_pipeline()

    def _load_pipeline(self) -> Any:
        _offline()
        from diffusers import AutoPipelineForText2Image, DiffusionPipeline
        from diffusers.utils import logging as diffusers_logging
        from transformers.utils import logging as transformers_logging

        # Load bars on a server's stderr are noise; load time is reported by the caller.
        diffusers_logging.disable_progress_bar()
        transformers_logging.disable_progress_bar()
        t0 = time.perf_counter()
        # OpenVINO computes in the precision it is compiled for; the torch side stays fp32.
        dt = torch_dtype("fp32" if self.backend == "openvino" else self.dtype)
        skip: dict[str, Any] = {}
        if self.backend == "openvino":
            # Components whose IR is cached are not loaded at all (a warm start reads no
            # torch weights for them).
            skip = {name: None for name in self._ov_cached_components()}
        try:
            try:
                pipe = AutoPipelineForText2Image.from_pretrained(
                    str(self.folder), **dtype_kwarg(dt), local_files_only=True, **skip)
            except ValueError as e:  # a pipeline family AutoPipeline does not map
                if "AutoPipeline" not in str(e):
                    raise
                pipe = DiffusionPipeline.from_pretrained(
                    str(self.folder), **dtype_kwarg(dt), local_files_only=True, **skip)
        except EngineError:
            raise
        except Exception as e:
            raise EngineConfigError(
                f"could not load the diffusers pipeline in {str(self.folder)!r} "
                f"({type(e).__name__}: {e}); expected a complete pipeline folder as written by "
                "save_pretrained, with the weights of every component"
            ) from e
        self.load_report["torch_load_s"] = round(time.perf_counter() - t0, 3)
        return self._prepare(pipe, self._load_tiny(dt) if self.tiny_folder else None)

    def _prepare(self, pipe: Any, tiny: Any) -> Any:
        """Device, dtype, tiny VAE and the speed switches: the same for folders and in-memory."""
        if self.backend == "openvino":
            return self._prepare_openvino(pipe, tiny)
        pipe.to(self.device, torch_dtype(self.dtype))
        pipe.set_progress_bar_config(disable=True)
        vae_dt = torch_dtype(self.vae_dtype)
        if getattr(pipe, "vae", None) is not None and self.vae_dtype != self.dtype:
            cast_autoencoder(pipe.vae, vae_dt, torch_dtype(self.dtype))
        if tiny is not None:
            self._check_tiny(pipe, tiny)
            self._tiny = tiny.to(self.device).eval()
            cast_autoencoder(self._tiny, vae_dt, torch_dtype(self.dtype))
            if self.settings.tiny_vae_final:
                pipe.vae = self._tiny
        self._optimise(pipe)
        return pipe

    def _load_tiny(self, dt: torch.dtype) -> Any:
        from diffusers import AutoencoderTiny

        try:
            return AutoencoderTiny.from_pretrained(str(self.tiny_folder), **dtype_kwarg(dt),
                                                   local_files_only=True)
        except Exception as e:
            raise EngineConfigError(
                f"could not load the tiny VAE in {str(self.tiny_folder)!r} ({type(e).__name__}: "
                f"{e}); expected an AutoencoderTiny folder"
            ) from e

    def _check_tiny(self, pipe: Any, tiny: Any) -> None:
        vae = getattr(pipe, "vae", None)
        if vae is not None:
            want = (2 ** (len(vae.config.block_out_channels) - 1), vae.config.latent_channels)
            got = (2 ** (len(tiny.config.block_out_channels) - 1), tiny.config.latent_channels)
            if want != got:
                raise EngineConfigError(
                    f"tiny VAE {str(self.tiny_folder)!r} upscales ×{got[0]} from {got[1]} latent "
                    f"channels but the pipeline's VAE needs ×{want[0]} from {want[1]}; use the "
                    "TAESD that matches the model family (taesd for SD 1/2, taesdxl for SDXL)"
                )

    def _optimise(self, pipe: Any) -> None:
        import torch

        attr, denoiser = denoiser_of(pipe)
        if self.settings.int8:
            if self.dtype == "fp16":
                raise EngineConfigError("engine.diffusion.int8 needs dtype fp32 or bf16; got fp16")
            quantize_int8(denoiser)
        if self.settings.channels_last and self.device.startswith("cuda"):
            for mod in (denoiser, getattr(pipe, "vae", None)):
                if mod is not None and attr == "unet":
                    mod.to(memory_format=torch.channels_last)
        if self.settings.compile:
            setattr(pipe, attr, torch.compile(denoiser, fullgraph=False,
                                              mode=self.settings.compile_mode))
            self.load_report["compile"] = ("lazy: torch.compile compiles at the first call "
                                           "(warm-up); its time is in warmup_s")

    # -- OpenVINO ----------------------------------------------------------------------------

    def _ov_components(self, pipe: Any = None) -> dict[str, str]:
        """Converted component → IR cache key (weights' fingerprint + conversion settings)."""
        from swiftshot.engines.ov_backend import ir_key

        names = ["unet", "text_encoder"]
        if (getattr(pipe, "text_encoder_2", None) is not None
                or self.folder is not None and (self.folder / "text_encoder_2").is_dir()):
            names.append("text_encoder_2")
        keys = {n: ir_key(self.model_id, n, "int8" if self.settings.int8 and n == "unet" else "w")
                for n in names}
        tiny_id = (folder_fingerprint(self.tiny_folder) if self.tiny_folder is not None
                   else f"{self.model_id}-tiny")
        keys["tiny_decoder"] = ir_key(tiny_id, "tiny_decoder")
        keys["vae_decoder"] = ir_key(self.model_id, "vae_decoder")
        if self.settings.quantize == "int8":
            # calibrated from this model's own renders: the calibration settings are in the key
            keys["unet_int8"] = ir_key(
                self.model_id, "unet", "int8q", keys["unet"], tiny_id if self.tiny_folder else "",
                str(self.settings.quantize_samples), str(self.settings.default_steps),
                str(self.settings.default_guidance))
        return keys

    def _ov_cached_components(self) -> list[str]:
        """Pipeline components whose torch weights a load does not need (their IR is cached)."""
        from swiftshot.engines.ov_backend import IRCache, ir_key

        cache = IRCache(self.openvino_dir)
        keys = self._ov_components()
        found = [n for n, k in keys.items()
                 if n.startswith(("unet", "text_encoder")) and cache.has(n, k)]
        if self.settings.int8 and "unet" not in found and cache.has(
                "unet", ir_key(self.model_id, "unet", "w")):
            found.append("unet")  # its 8-bit weights are compressed from the converted UNet
        if "unet_int8" in found:
            found.remove("unet_int8")
            if "unet" not in found:  # the quantised UNet is all a start needs
                found.append("unet")
        return found

    def _prepare_openvino(self, pipe: Any, tiny: Any) -> Any:
        import gc

        import torch

        from swiftshot.engines import ov_backend as ob

        pipe.to("cpu", torch.float32)
        pipe.set_progress_bar_config(disable=True)
        cache = ob.IRCache(self.openvino_dir)
        keys = self._ov_components(pipe)
        precision = ob.cpu_precision(self.dtype)
        report = self.load_report
        report.update(precision=precision, converted=[], from_cache=[])

        plain_unet = ob.ir_key(self.model_id, "unet", "w")  # the key without int8 weights

        def runner(name: str, convert: Any, module: Any) -> Any:
            key = keys[name]
            if not cache.has(name, key):
                compress = name == "unet" and self.settings.int8
                if module is None and not (compress and cache.has("unet", plain_unet)):
                    raise EngineError(f"OpenVINO IR of {name} is missing and no torch module to "
                                      "convert it from")
                t = time.perf_counter()
                try:
                    if compress and cache.has("unet", plain_unet):
                        # 8-bit weights from the converted UNet: no second trace of the model
                        model = ob.core().read_model(str(cache.path("unet", plain_unet)))
                    else:
                        model = convert(module)
                    if compress:
                        model = ob.compress_int8(model)
                except EngineError:
                    raise
                except Exception as e:
                    raise EngineConfigError(f"OpenVINO could not convert the {name} of "
                                            f"{self.pipeline_class} ({type(e).__name__}: {e}); "
                                            "use backend torch") from e
                took = round(time.perf_counter() - t, 3)
                cache.save(name, key, model, {"model": self.model_id, "component": name,
                                              "int8": self.settings.int8, "convert_s": took,
                                              "openvino": ob.openvino_version()})
                del model
                report[f"{name}_convert_s"] = took
                report["converted"].append(name)
            else:
                report["from_cache"].append(name)
            t = time.perf_counter()
            compiled = ob.compile_ir(cache.path(name, key), precision, self.openvino_dir / "compiled")
            report[f"{name}_compile_s"] = round(time.perf_counter() - t, 3)
            return ob._Runner(compiled)

        t0 = time.perf_counter()
        unet_config = self._component_config(pipe, "unet")
        quantize = self.settings.quantize == "int8" and not cache.has("unet_int8", keys["unet_int8"])
        if self.settings.quantize == "int8" and not quantize:
            pipe.unet = ob.OVUNet(runner("unet_int8", None, None), unet_config)
        else:
            pipe.unet = ob.OVUNet(runner("unet", ob.convert_unet, pipe.unet), unet_config)
        gc.collect()
        for name in ("text_encoder", "text_encoder_2"):
            if name in keys:
                te_config = self._component_config(pipe, name)
                setattr(pipe, name, ob.OVTextEncoder(
                    runner(name, ob.convert_text_encoder, getattr(pipe, name)), te_config))
                gc.collect()
        vae_dt = torch_dtype(self.vae_dtype)
        if tiny is not None:
            self._check_tiny(pipe, tiny)
            self._tiny = tiny.to("cpu").eval()
            # the encoder (img2img / inpaint) stays torch; the decoder is OpenVINO's
            cast_autoencoder(self._tiny, vae_dt, torch.float32)
            ob.patch_decoder(self._tiny, runner("tiny_decoder", ob.convert_decoder, tiny))
            if self.settings.tiny_vae_final:
                pipe.vae = self._tiny
        if pipe.vae is not self._tiny:
            full = pipe.vae
            decoder = runner("vae_decoder", ob.convert_decoder, full)
            cast_autoencoder(full, vae_dt, torch.float32)
            ob.patch_decoder(full, decoder)
        if quantize:
            self._quantize_unet(pipe, cache, keys, precision)
        report["openvino_s"] = round(time.perf_counter() - t0, 3)
        return pipe

    def _quantize_unet(self, pipe: Any, cache: Any, keys: dict[str, str], precision: str) -> None:
        """quantize int8: record the UNet's inputs over ``quantize_samples`` renders of random
        prompts at the model's default size (the real distribution of latents, timesteps and
        text embeddings), quantise the UNet IR with them, cache it, and swap it in."""
        import torch

        from swiftshot.engines import ov_backend as ob

        report = self.load_report
        t = time.perf_counter()
        unet = pipe.unet
        recorder = ob.Recorder(unet.runner)
        unet.runner = recorder
        side = self._probe_size() if self.folder is not None else 8 * unet.config.sample_size
        words = ("mug", "bottle", "sneaker", "lamp", "watch", "chair", "plant", "bag", "marble",
                 "linen", "studio", "sunset", "concrete", "oak", "soft", "light")
        rng = __import__("random").Random(0)
        try:
            for i in range(self.settings.quantize_samples):
                prompt = " ".join(rng.choice(words) for _ in range(6))
                with torch.inference_mode():
                    pipe(prompt=prompt, num_inference_steps=self.settings.default_steps,
                         guidance_scale=self.settings.default_guidance, width=side, height=side,
                         generator=torch.Generator("cpu").manual_seed(i), output_type="latent")
        finally:
            unet.runner = recorder.runner
        report["calibrate_s"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        fp = ob.core().read_model(str(cache.path("unet", keys["unet"])))
        try:
            model = ob.quantize_full_int8(fp, recorder.samples)
        except EngineError:
            raise
        except Exception as e:
            raise EngineConfigError(f"NNCF could not quantise the UNet of {self.pipeline_class} "
                                    f"({type(e).__name__}: {e}); use quantize none") from e
        took = round(time.perf_counter() - t, 3)
        cache.save("unet_int8", keys["unet_int8"], model, {
            "model": self.model_id, "component": "unet", "quantize": "int8",
            "calibration_samples": len(recorder.samples), "side": side,
            "calibrate_s": report["calibrate_s"], "quantize_s": took,
            "openvino": ob.openvino_version()})
        del model, fp
        report["unet_int8_quantize_s"] = took
        report["converted"].append("unet_int8")
        t = time.perf_counter()
        compiled = ob.compile_ir(cache.path("unet_int8", keys["unet_int8"]), precision,
                                 self.openvino_dir / "compiled")
        report["unet_int8_compile_s"] = round(time.perf_counter() - t, 3)
        unet.runner = ob._Runner(compiled)

    def _component_config(self, pipe: Any, name: str) -> Any:
        """A component's config: from the loaded module, or from the folder when the module was
        not loaded (its IR is cached)."""
        module = getattr(pipe, name, None)
        if module is not None:
            return module.config
        sub = str(self.folder / name)  # type: ignore[operator]
        if name == "unet":
            from diffusers import UNet2DConditionModel
            from diffusers.configuration_utils import FrozenDict

            return FrozenDict(UNet2DConditionModel.load_config(sub))
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(sub, local_files_only=True)

    def warmup(self, shapes: Sequence[tuple[int, int]]) -> None:
        self.load()
        for w, h in shapes:
            t = time.perf_counter()
            self.run([RenderSpec(prompt="warmup", width=w, height=h, engine="diffusion",
                                 seed=0).normalized()])
            # the first render of a shape: torch.compile compiles here, oneDNN / OpenVINO
            # create their kernels
            self.load_report.setdefault("warmup_s", {})[f"{w}x{h}"] = round(
                time.perf_counter() - t, 3)

    # -- running ---------------------------------------------------------------------------

    batch_fields = ("width", "height", "steps", "guidance")
    capabilities = frozenset({"previews"})

    @property
    def spec_defaults(self) -> dict[str, Any]:
        """Filled into requests that leave them out (so ``default_steps`` decides the key)."""
        return {"steps": self.settings.default_steps, "guidance": self.settings.default_guidance}

    @property
    def model_name(self) -> str | None:
        return self.settings.model

    def batch_key(self, spec: RenderSpec) -> Hashable:
        return (self.name, self.version, spec.width, spec.height, self._steps(spec),
                self._guidance(spec))

    def _steps(self, spec: RenderSpec) -> int:
        return spec.steps or self.settings.default_steps

    def _guidance(self, spec: RenderSpec) -> float:
        return self.settings.default_guidance if spec.guidance is None else spec.guidance

    def run(self, specs: Sequence[RenderSpec], on_step: StepCallback | None = None) -> list[Image.Image]:
        return self._call("text2image", specs, on_step)

    def run_img2img(self, specs: Sequence[RenderSpec], init_images: Sequence[Image.Image],
                    strength: float = 0.6, on_step: StepCallback | None = None) -> list[Image.Image]:
        """Repaint ``init_images`` (one per spec) guided by the prompts; ``strength`` in (0, 1]
        is how much noise is added first (1 ignores the image)."""
        self._check_images(specs, init_images, "init_images")
        self._check_strength(specs, strength)
        images = [im.convert("RGB").resize((s.width, s.height)) for im, s in zip(init_images, specs, strict=True)]
        return self._call("img2img", specs, on_step, image=images, strength=strength)

    def run_inpaint(self, specs: Sequence[RenderSpec], images: Sequence[Image.Image],
                    masks: Sequence[Image.Image], strength: float = 1.0,
                    on_step: StepCallback | None = None,
                    keep_unmasked: bool = True) -> list[Image.Image]:
        """Paint where ``masks`` are white (L mode, 255 = repaint), keep the rest.

        ``keep_unmasked`` pastes the input's pixels back where the mask is black, so a product
        photo under a black mask comes back bit-exact (the VAE round trip would soften it).
        """
        self._check_images(specs, images, "images")
        self._check_images(specs, masks, "masks")
        self._check_strength(specs, strength)
        ims = [im.convert("RGB").resize((s.width, s.height)) for im, s in zip(images, specs, strict=True)]
        ms = [m.convert("L").resize((s.width, s.height)) for m, s in zip(masks, specs, strict=True)]
        out = self._call("inpaint", specs, on_step, image=ims, mask_image=ms, strength=strength)
        if keep_unmasked:
            out = [Image.composite(o, im, m) for o, im, m in zip(out, ims, ms, strict=True)]
        return out

    def _check_strength(self, specs: Sequence[RenderSpec], strength: float) -> None:
        if not 0 < strength <= 1:
            raise ValueError(f"strength must be in (0, 1]; got {strength}")
        steps = self._steps(specs[0]) if specs else 1
        if int(steps * strength) < 1:
            raise ValueError(
                f"image-to-image runs int(steps × strength) denoising steps; steps={steps} × "
                f"strength={strength} gives none: raise steps to {math.ceil(1 / strength)} or more")

    @staticmethod
    def _check_images(specs: Sequence[RenderSpec], images: Sequence[Image.Image], what: str) -> None:
        if len(images) != len(specs):
            raise ValueError(f"{what}: need one image per spec; got {len(images)} for {len(specs)}")

    def _pipeline_for(self, task: str) -> Any:
        if task == "text2image":
            return self._pipe
        if task not in self._variants:
            from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting

            auto = AutoPipelineForImage2Image if task == "img2img" else AutoPipelineForInpainting
            try:
                # from_pipe shares the loaded modules: no second copy of the weights.
                variant = auto.from_pipe(self._pipe)
            except Exception as e:
                raise EngineConfigError(
                    f"{self.pipeline_class} has no {task} variant in diffusers ({e})") from e
            variant.set_progress_bar_config(disable=True)
            self._variants[task] = variant
        return self._variants[task]

    def _call(self, task: str, specs: Sequence[RenderSpec], on_step: StepCallback | None,
              **extra: Any) -> list[Image.Image]:
        if not specs:
            return []
        self._check_batch(specs)
        self.load()
        import torch

        first = specs[0]
        steps, guidance = self._steps(first), self._guidance(first)
        with self._run_lock:
            pipe = self._pipeline_for(task)
            params = inspect.signature(pipe.__call__).parameters
            kwargs: dict[str, Any] = {
                "prompt": [s.prompt for s in specs],
                "num_inference_steps": steps,
                "guidance_scale": guidance,
                "width": first.width,
                "height": first.height,
                "generator": [torch.Generator("cpu").manual_seed(int(s.seed or 0)) for s in specs],
                "output_type": "pil",
                **extra,
            }
            embeds = self._prompt_embeds(pipe, specs, guidance)
            if embeds is not None:
                del kwargs["prompt"]
                kwargs.update(embeds)
            elif "negative_prompt" in params and any(s.negative_prompt for s in specs):
                kwargs["negative_prompt"] = [s.negative_prompt for s in specs]
            if on_step is not None and "callback_on_step_end" in params:
                kwargs["callback_on_step_end"] = self._step_callback(on_step, steps)
                kwargs["callback_on_step_end_tensor_inputs"] = ["latents"]
            kwargs = {k: v for k, v in kwargs.items() if k in params}
            try:
                with torch.inference_mode():
                    out = pipe(**kwargs)
            except Cancelled:
                raise
            except torch.OutOfMemoryError as e:
                raise EngineError(f"out of memory rendering {len(specs)}×{first.size}: {e}") from e
            images = [im.convert("RGB") for im in out.images]
        if len(images) != len(specs):
            raise EngineError(f"pipeline returned {len(images)} images for {len(specs)} prompts")
        return images

    def _check_batch(self, specs: Sequence[RenderSpec]) -> None:
        keys = {self.batch_key(s) for s in specs}
        if len(keys) != 1:
            raise ValueError(f"specs in one run must share a batch key; got {len(keys)} keys")
        for s in specs:
            if s.model and s.model not in (self.settings.model, str(self.folder), None):
                raise EngineConfigError(
                    f"this diffusion engine serves model {self.settings.model!r}; the request "
                    f"asked for {s.model!r}"
                )

    def _prompt_embeds(self, pipe: Any, specs: Sequence[RenderSpec],
                       guidance: float) -> dict[str, Any] | None:
        """The pipeline's prompt-embedding keywords for ``specs``, from the prompt cache (the
        text encoder runs only for prompts not cached), or None where the pipeline's
        ``encode_prompt`` is not the SD / SDXL one (the pipeline then encodes as before)."""
        encode_prompt = getattr(pipe, "encode_prompt", None)
        if self.prompt_cache.max_bytes <= 0 or encode_prompt is None:
            return None
        params = inspect.signature(encode_prompt).parameters
        if "do_classifier_free_guidance" not in params or "prompt_embeds" not in inspect.signature(
                pipe.__call__).parameters:
            return None
        import torch

        sdxl = "prompt_2" in params
        unet = getattr(pipe, "unet", None)
        # the pipelines' own rule for classifier-free guidance
        cfg = guidance > 1 and getattr(getattr(unet, "config", None), "time_cond_proj_dim",
                                       None) is None
        # Without guidance the negative prompt is never encoded: it is not part of the key.
        keys = [(self.version, s.prompt, s.negative_prompt if cfg else None, cfg) for s in specs]

        def encode(idx: list[int]) -> list[tuple[Any, ...]]:
            found: dict[int, tuple[Any, ...]] = {}
            # None and "" differ for SDXL (zeros vs the encoded empty prompt): separate calls.
            groups: dict[bool, list[int]] = {}
            for i in idx:
                groups.setdefault(keys[i][2] is None, []).append(i)
            for no_negative, ids in groups.items():
                kw: dict[str, Any] = {"prompt": [keys[i][1] for i in ids], "device": self.device,
                                      "num_images_per_prompt": 1,
                                      "do_classifier_free_guidance": cfg}
                if not no_negative:
                    kw["negative_prompt"] = [keys[i][2] for i in ids]
                with torch.inference_mode():
                    out = encode_prompt(**kw)
                for j, i in enumerate(ids):
                    found[i] = tuple(None if t is None else t[j:j + 1].clone() for t in out)
            return [found[i] for i in idx]

        entries = self.prompt_cache.get_or_encode(keys, encode)
        names = (("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds",
                  "negative_pooled_prompt_embeds") if sdxl else
                 ("prompt_embeds", "negative_prompt_embeds"))
        out: dict[str, Any] = {}
        for k, name in enumerate(names):
            parts = [e[k] for e in entries]
            if all(p is not None for p in parts):
                out[name] = torch.cat(parts)
        return out

    def _step_callback(self, on_step: StepCallback, steps: int) -> Callable[..., dict]:
        wanted = wanted_previews(on_step)

        def callback(pipe: Any, i: int, t: Any, kwargs: dict) -> dict:
            n = int(getattr(pipe, "num_timesteps", None) or getattr(pipe, "_num_timesteps", steps))
            # A preview costs a decode: only at the steps the consumer's cadence asks for, and
            # never after the last step (the final decode is the image itself).
            preview = (self._preview(kwargs.get("latents")) if i + 1 in preview_steps(n, wanted)
                       else None)
            # Raising here stops before the remaining steps and before the VAE decode.
            if on_step(i + 1, n, preview) is False:
                raise Cancelled(f"cancelled after step {i + 1} of {n}")
            return {}

        return callback

    def _preview(self, latents: Any) -> list[Image.Image] | None:
        """One cheap image per item of the batch, in order (the progress contract): the tiny VAE
        if there is one, else a linear latent→RGB projection for 4-channel latents (SD 1/2
        family), else None."""
        if latents is None or latents.ndim != 4:
            return None
        import torch

        with torch.inference_mode():
            if self._tiny is not None and latents.shape[1] == self._tiny.config.latent_channels:
                imgs = self._tiny.decode(latents / self._tiny.config.scaling_factor).sample
                return [to_pil(img) for img in imgs]
            if latents.shape[1] == 4:
                proj = torch.tensor(_LATENT_RGB, dtype=torch.float32, device=latents.device)
                rgb = torch.einsum("bchw,cr->brhw", latents.float(), proj)
                return [to_pil(img) for img in rgb]
        return None
        import torch

        with torch.inference_mode():
            first = latents[:1]
            if self._tiny is not None and first.shape[1] == self._tiny.config.latent_channels:
                img = self._tiny.decode(first / self._tiny.config.scaling_factor).sample[0]
                return to_pil(img)
            if first.shape[1] == 4:
                proj = torch.tensor(_LATENT_RGB, dtype=torch.float32, device=first.device)
                rgb = torch.einsum("chw,cr->rhw", first[0].float(), proj)
                return to_pil(rgb)
        return None
