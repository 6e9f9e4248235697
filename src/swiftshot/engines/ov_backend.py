"""The OpenVINO backend of the diffusion engine (CPU): the same diffusers pipeline, with its
UNet, text encoder(s) and final decoder (VAE or tiny VAE) run by OpenVINO.

How it is split (after optimum-intel's ``OVStableDiffusionPipeline``, which exports the same
three parts): each torch module is wrapped in a small ``nn.Module`` whose ``forward`` takes and
returns plain tensors (no dicts, no dataclasses), converted with ``openvino.convert_model`` from
the torch module in memory (nothing is downloaded, no ONNX step), with the batch, height and
width left dynamic, and saved as IR (``.xml`` + ``.bin``, weights stored as fp16) under
``<data_dir>/openvino/<component>-<key>/``, where the key is the weights' fingerprint, the
conversion settings (int8 weight compression) and the OpenVINO and wrapper revisions. Later
starts read the IR instead of converting; OpenVINO's own ``CACHE_DIR`` keeps the compiled blob
beside it, so a warm start skips compilation too.

In the pipeline the converted modules are replaced by thin Python objects that keep the
attributes diffusers reads (``config``, ``dtype``, ``device``, SDXL's ``add_embedding`` in
features) and turn the call into one OpenVINO inference: the diffusers pipeline code
(schedulers, guidance, img2img / inpaint, callbacks, per-item generators) runs unchanged. The
torch side sees fp32 tensors; the precision OpenVINO computes in is a compile hint (bf16 on a
CPU with AVX-512 BF16 or AMX, else fp32). The VAE *encoder* (img2img / inpaint only) stays torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

OV_REVISION = "1"
"""Bump when the wrappers below change what is converted (the IR cache key includes it)."""


def openvino_missing() -> str | None:
    """None when OpenVINO can be imported here, else why not."""
    try:
        import openvino  # noqa: F401
    except Exception as e:  # ImportError, or a broken install
        return f"openvino is not importable ({type(e).__name__}: {e}); pip install 'swiftshot[openvino]'"
    return None


def openvino_version() -> str:
    import openvino as ov

    return ov.get_version().split("-")[0]


def core() -> Any:
    import openvino as ov

    global _CORE
    if _CORE is None:
        _CORE = ov.Core()
    return _CORE


_CORE: Any = None


# -- torch-side wrappers converted to IR --------------------------------------------------------

def _wrappers() -> dict[str, type]:
    import torch

    class UNetFwd(torch.nn.Module):
        def __init__(self, unet: Any, sdxl: bool) -> None:
            super().__init__()
            self.unet, self.sdxl = unet, sdxl

        def forward(self, sample: Any, timestep: Any, encoder_hidden_states: Any,
                    text_embeds: Any = None, time_ids: Any = None) -> Any:
            added = {"text_embeds": text_embeds, "time_ids": time_ids} if self.sdxl else None
            return self.unet(sample, timestep, encoder_hidden_states, added_cond_kwargs=added,
                             return_dict=False)[0]

    class TextFwd(torch.nn.Module):
        def __init__(self, te: Any) -> None:
            super().__init__()
            self.te = te

        def forward(self, input_ids: Any) -> Any:
            out = self.te(input_ids, output_hidden_states=True, return_dict=False)
            # CLIPTextModel: (last_hidden_state, pooler_output, hidden_states);
            # CLIPTextModelWithProjection: (text_embeds, last_hidden_state, hidden_states).
            # SDXL reads hidden_states[-2]; SD reads [0].
            return out[0], out[1], out[2][-2]

    class DecodeFwd(torch.nn.Module):
        def __init__(self, vae: Any) -> None:
            super().__init__()
            self.vae = vae

        def forward(self, latents: Any) -> Any:
            return self.vae.decode(latents, return_dict=False)[0]

    return {"unet": UNetFwd, "text": TextFwd, "decode": DecodeFwd}


def _convert(module: Any, example: tuple, shapes: list[Any]) -> Any:
    import openvino as ov
    import torch

    # Tracing warns about every Python-level shape check in diffusers (TracerWarning); they
    # are expected (the odd example side keeps the shape logic general) and, under a
    # warnings-as-errors filter, would abort the trace.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Traced here without torch's check_trace (which traces the module a second time and
        # compares: 45 % of a tiny UNet's conversion CPU time, measured; the graph OpenVINO
        # builds from the trace is the same, outputs bit-identical).
        traced = torch.jit.trace(module.eval(), example, check_trace=False, strict=False)
        return ov.convert_model(traced, example_input=example,
                                input=[ov.PartialShape(s) for s in shapes])


def convert_unet(unet: Any) -> Any:
    import torch

    cfg = unet.config
    sdxl = getattr(cfg, "addition_embed_type", None) == "text_time"
    ch = cfg.in_channels
    # An odd latent side makes diffusers pass explicit upsample sizes, which then hold for
    # every size (an even example would bake in "×2" and break sides not divisible by 2^k).
    side = 2 ** (len(cfg.block_out_channels) - 1) * 2 + 1
    dim = cfg.cross_attention_dim
    example: list[Any] = [torch.randn(1, ch, side, side), torch.tensor([999.0]),
                          torch.randn(1, 77, dim)]
    shapes: list[Any] = [[-1, ch, -1, -1], [-1], [-1, -1, dim]]
    if sdxl:
        pooled = unet.add_embedding.linear_1.in_features - 6 * cfg.addition_time_embed_dim
        example += [torch.randn(1, pooled), torch.tensor([[64.0, 64, 0, 0, 64, 64]])]
        shapes += [[-1, pooled], [-1, 6]]
    return _convert(_wrappers()["unet"](unet, sdxl), tuple(example), shapes)


def convert_text_encoder(te: Any) -> Any:
    import torch

    n = te.config.max_position_embeddings
    ids = torch.zeros(1, n, dtype=torch.int64)
    return _convert(_wrappers()["text"](te), (ids,), [[-1, n]])


def convert_decoder(vae: Any) -> Any:
    import torch

    lat = vae.config.latent_channels
    return _convert(_wrappers()["decode"](vae), (torch.randn(1, lat, 9, 9),), [[-1, lat, -1, -1]])


def compress_int8(model: Any) -> Any:
    """8-bit weight compression (NNCF, per-channel asymmetric): weights a quarter of fp32's;
    activations stay in the inference precision."""
    try:
        import nncf
    except ImportError as e:
        from swiftshot.engines.base import EngineConfigError

        raise EngineConfigError("engine.diffusion.int8 with backend openvino needs nncf "
                                "(pip install 'swiftshot[openvino]')") from e
    return nncf.compress_weights(model)


def quantize_full_int8(model: Any, samples: list[list[Any]]) -> Any:
    """Post-training int8 quantisation (NNCF ``quantize``): weights AND activations of the
    convolutions and matrix products in 8 bits (VNNI / AMX-INT8 kernels), calibrated on
    ``samples`` (each one call's inputs, recorded from the pipeline); SmoothQuant and fast bias
    correction as NNCF applies them to transformer-type models."""
    try:
        import nncf
    except ImportError as e:
        from swiftshot.engines.base import EngineConfigError

        raise EngineConfigError("engine.diffusion.quantize int8 needs nncf "
                                "(pip install 'swiftshot[openvino]')") from e
    return nncf.quantize(model, nncf.Dataset(samples), model_type=nncf.ModelType.TRANSFORMER,
                         subset_size=len(samples), fast_bias_correction=True)


class Recorder:
    """Wraps a runner and keeps a copy of each call's inputs (calibration data)."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.samples: list[list[Any]] = []

    def __call__(self, *arrays: Any) -> list[Any]:
        import numpy as np

        self.samples.append([np.array(a, copy=True) for a in arrays])
        return self.runner(*arrays)


# -- IR cache ------------------------------------------------------------------------------------

def ir_key(*parts: str) -> str:
    h = hashlib.sha256("\0".join((OV_REVISION, openvino_version(), *parts)).encode())
    return h.hexdigest()[:16]


class IRCache:
    """``root/<name>-<key>/model.xml``: converted models, written atomically (a temp folder
    renamed into place), so a crash mid-conversion leaves nothing half-written behind."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, name: str, key: str) -> Path:
        return self.root / f"{name}-{key}" / "model.xml"

    def has(self, name: str, key: str) -> bool:
        return self.path(name, key).is_file()

    def save(self, name: str, key: str, model: Any, meta: dict[str, Any]) -> Path:
        import openvino as ov

        final = self.path(name, key).parent
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=True)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
        if final.exists():  # another process converted it meanwhile: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.rename(final)
        return final / "model.xml"


def cpu_precision(dtype: str) -> str:
    """The precision OpenVINO's CPU plugin really computes in for the engine's ``dtype``: bf16
    only where the CPU has it (``OPTIMIZATION_CAPABILITIES`` lists BF16: AVX-512 BF16 or AMX);
    elsewhere the plugin ignores a bf16 hint and runs f32 (seen on a 2-core AMD EPYC, Zen 3:
    the compiled model's ``INFERENCE_PRECISION_HINT`` read f32), so the load report says f32
    and the f32 blob folder is used."""
    if dtype != "bf16":
        return "f32"
    caps = core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return "bf16" if "BF16" in caps else "f32"


def compile_ir(xml: Path, precision: str, cache_dir: Path) -> Any:
    """Compile for the CPU: ``precision`` bf16 or f32 as the inference hint, latency mode, and
    OpenVINO's model cache (compiled blobs) in ``cache_dir``, one folder per precision: on a CPU
    with AMX (Sapphire Rapids and later Xeons; OpenVINO 2026.4) compiling a model bf16 into a
    cache folder that holds its f32 blob loads a blob that crashes the process at inference
    (a segfault, not an error; tests/test_diffusion.py reproduced it). A folder per precision
    keeps each blob apart."""
    props = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY",
             "CACHE_DIR": str(Path(cache_dir) / precision)}
    return core().compile_model(str(xml), "CPU", props)


# -- pipeline-side stand-ins -----------------------------------------------------------------------

class _Runner:
    """One compiled model and its infer request (calls are serialised by the engine's lock)."""

    def __init__(self, compiled: Any) -> None:
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.seconds = 0.0
        self.calls = 0

    def __call__(self, *arrays: Any) -> list[Any]:
        import numpy as np

        t = time.perf_counter()
        feeds = [np.ascontiguousarray(a) for a in arrays]
        self.request.infer(feeds)
        out = [self.request.get_output_tensor(i).data.copy()
               for i in range(len(self.compiled.outputs))]
        self.seconds += time.perf_counter() - t
        self.calls += 1
        return out


def _np(x: Any) -> Any:
    return x.detach().to("cpu").float().numpy()


class _Stub:
    """What diffusers asks of any component besides calling it: no torch sub-modules (LoRA
    scaling walks ``modules()``), no parameters."""

    def modules(self) -> Any:
        return iter(())

    def parameters(self) -> Any:
        return iter(())


class OVUNet(_Stub):
    """Stands in for ``pipe.unet``: diffusers reads config / dtype / device and calls it."""

    def __init__(self, runner: _Runner, config: Any) -> None:
        import torch

        self.runner = runner
        self.config = config
        self.dtype = torch.float32
        self.device = torch.device("cpu")
        self.sdxl = getattr(config, "addition_embed_type", None) == "text_time"
        if self.sdxl:  # SDXL's pipeline checks the time-id width against this
            self.add_embedding = SimpleNamespace(linear_1=SimpleNamespace(
                in_features=config.projection_class_embeddings_input_dim))
        self.encoder_hid_proj = None

    def __call__(self, sample: Any, timestep: Any, encoder_hidden_states: Any, *args: Any,
                 added_cond_kwargs: dict | None = None, return_dict: bool = True,
                 timestep_cond: Any = None, cross_attention_kwargs: Any = None,
                 **kwargs: Any) -> Any:
        import numpy as np
        import torch

        if timestep_cond is not None or cross_attention_kwargs:
            raise NotImplementedError("the OpenVINO UNet has no timestep_cond / attention kwargs")
        b = sample.shape[0]
        t = np.broadcast_to(np.asarray(_np(torch.as_tensor(timestep)), np.float32).reshape(-1), (b,))
        feeds = [_np(sample), t, _np(encoder_hidden_states)]
        if self.sdxl:
            added = added_cond_kwargs or {}
            feeds += [_np(added["text_embeds"]), _np(added["time_ids"])]
        (out,) = self.runner(*feeds)
        res = torch.from_numpy(out)
        return (res,) if not return_dict else SimpleNamespace(sample=res)


class _TextOut(tuple):
    hidden_states: tuple


class OVTextEncoder(_Stub):
    """Stands in for a CLIP text encoder: ``[0]``, ``[1]`` and ``hidden_states[-2]`` are what
    the SD and SDXL pipelines read."""

    def __init__(self, runner: _Runner, config: Any) -> None:
        import torch

        self.runner = runner
        self.config = config
        self.dtype = torch.float32
        self.device = torch.device("cpu")

    def __call__(self, input_ids: Any, attention_mask: Any = None, output_hidden_states: bool = False,
                 **kwargs: Any) -> Any:
        import torch

        if attention_mask is not None:
            raise NotImplementedError("the OpenVINO text encoder takes no attention mask")
        a, b, penultimate = (torch.from_numpy(x) for x in self.runner(input_ids.to("cpu").numpy()))
        out = _TextOut((a, b))
        # hidden_states[-2] is the penultimate layer; nothing else of it is read
        out.hidden_states = (penultimate, None)
        return out


def patch_decoder(vae: Any, runner: _Runner) -> None:
    """Replace ``vae.decode`` (of an AutoencoderKL or AutoencoderTiny) by the compiled decoder;
    its encoder stays torch (img2img / inpaint)."""
    import torch
    from diffusers.models.autoencoders.vae import DecoderOutput

    def decode(z: Any, return_dict: bool = True, generator: Any = None, **kwargs: Any) -> Any:
        (img,) = runner(_np(z))
        sample = torch.from_numpy(img)
        return DecoderOutput(sample=sample) if return_dict else (sample,)

    vae.decode = decode
    vae._ov_runner = runner
