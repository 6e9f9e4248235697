"""Real-size diffusion architectures with RANDOM weights, built from configs written here.

For benchmarks on machines with no model files: SD-Turbo's and SDXL-Turbo's UNet, text
encoders, VAE and TAESD have their real shapes, so the latency measured is the latency of the
real model, but the weights are random, so the pixels are noise. Nothing is downloaded.

The configs are those published with stabilityai/sd-turbo (SD 2.1 UNet, OpenCLIP ViT-H text
encoder as CLIPTextModel) and stabilityai/sdxl-turbo (SDXL UNet, CLIP ViT-L + OpenCLIP ViT-bigG),
and madebyollin/taesd(xl) for the tiny decoders. The tokenizer is the small offline BPE of
:mod:`swiftshot.testing.tiny_pipeline` (tokenising costs microseconds either way; its ids fit
the real 49408-token embedding).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ARCHITECTURES = ("sd-turbo", "sdxl-turbo")
RANDOM_WEIGHTS_NOTE = "RANDOM WEIGHTS: latency is real, pixels are noise"

SD_TURBO_UNET: dict[str, Any] = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                      "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20), use_linear_projection=True,
    norm_num_groups=32, norm_eps=1e-5, act_fn="silu", flip_sin_to_cos=True, freq_shift=0,
    downsample_padding=1, upcast_attention=False,
)
SDXL_TURBO_UNET: dict[str, Any] = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    transformer_layers_per_block=(1, 2, 10), cross_attention_dim=2048,
    attention_head_dim=(5, 10, 20), use_linear_projection=True,
    addition_embed_type="text_time", addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816, norm_num_groups=32, norm_eps=1e-5,
    act_fn="silu", flip_sin_to_cos=True, freq_shift=0, upcast_attention=False,
)
OPENCLIP_H_TEXT: dict[str, Any] = dict(  # SD 2.x: OpenCLIP ViT-H/14, penultimate layer → 23 layers
    vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_attention_heads=16,
    num_hidden_layers=23, max_position_embeddings=77, hidden_act="gelu", projection_dim=512,
    layer_norm_eps=1e-5, bos_token_id=0, eos_token_id=2, pad_token_id=1,
)
CLIP_L_TEXT: dict[str, Any] = dict(
    vocab_size=49408, hidden_size=768, intermediate_size=3072, num_attention_heads=12,
    num_hidden_layers=12, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768,
    layer_norm_eps=1e-5, bos_token_id=0, eos_token_id=2, pad_token_id=1,
)
OPENCLIP_BIGG_TEXT: dict[str, Any] = dict(
    vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_attention_heads=20,
    num_hidden_layers=32, max_position_embeddings=77, hidden_act="gelu", projection_dim=1280,
    layer_norm_eps=1e-5, bos_token_id=0, eos_token_id=2, pad_token_id=1,
)
SD_VAE: dict[str, Any] = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    norm_num_groups=32, act_fn="silu", sample_size=512, scaling_factor=0.18215,
)
SDXL_VAE: dict[str, Any] = {**SD_VAE, "sample_size": 1024, "scaling_factor": 0.13025,
                            "force_upcast": False}
TAESD: dict[str, Any] = dict(  # madebyollin/taesd and taesdxl share this shape
    encoder_block_out_channels=(64, 64, 64, 64), decoder_block_out_channels=(64, 64, 64, 64),
    num_encoder_blocks=(1, 3, 3, 3), num_decoder_blocks=(3, 3, 3, 1), latent_channels=4,
    latent_magnitude=3, latent_shift=0.5, scaling_factor=1.0,
)
TURBO_SCHEDULER: dict[str, Any] = dict(
    beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
    prediction_type="epsilon", timestep_spacing="trailing", steps_offset=1,
)


def _tokenizer() -> Any:
    import tempfile

    from transformers import CLIPTokenizer

    from swiftshot.testing.tiny_pipeline import write_tiny_clip_tokenizer

    with tempfile.TemporaryDirectory() as d:
        return CLIPTokenizer.from_pretrained(str(write_tiny_clip_tokenizer(d)))


def build_architecture(name: str, dtype: Any = None, device: str = "cpu", *,
                       seed: int = 0) -> Any:
    """A diffusers pipeline of architecture ``name`` with random weights, on ``device``.

    Modules are created directly on the device (a GPU builds SDXL in seconds, a CPU in about a
    minute; ``meta`` builds shapes only, for checks) and then cast to ``dtype`` (default fp32).
    """
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}")
    torch.manual_seed(seed)
    # Only the modules are created on the device; schedulers keep their tables on the host.
    scheduler = EulerDiscreteScheduler(**TURBO_SCHEDULER)
    tokenizer = _tokenizer()
    if name == "sd-turbo":
        with torch.device(device):
            modules = dict(unet=UNet2DConditionModel(**SD_TURBO_UNET), vae=AutoencoderKL(**SD_VAE),
                           text_encoder=CLIPTextModel(CLIPTextConfig(**OPENCLIP_H_TEXT)))
        pipe = StableDiffusionPipeline(
            **modules, tokenizer=tokenizer, scheduler=scheduler, safety_checker=None,
            feature_extractor=None, requires_safety_checker=False)
    else:
        with torch.device(device):
            modules = dict(
                unet=UNet2DConditionModel(**SDXL_TURBO_UNET), vae=AutoencoderKL(**SDXL_VAE),
                text_encoder=CLIPTextModel(CLIPTextConfig(**CLIP_L_TEXT)),
                text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**OPENCLIP_BIGG_TEXT)))
        pipe = StableDiffusionXLPipeline(
            **modules, tokenizer=tokenizer, tokenizer_2=tokenizer, scheduler=scheduler,
            force_zeros_for_empty_prompt=True)
    if dtype is not None:
        pipe.to(dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_taesd(dtype: Any = None, device: str = "cpu", *, seed: int = 0) -> Any:
    """TAESD/TAESDXL-shaped AutoencoderTiny with random weights."""
    import torch
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    with torch.device(device):
        vae = AutoencoderTiny(**TAESD)
    return vae.to(dtype=dtype) if dtype is not None else vae


def save_architecture(name: str, path: str | Path, *, with_taesd: bool = True,
                      dtype: Any = None) -> Path:
    """Write the random-weight pipeline as a diffusers folder (loadable by the engine), with a
    ``taesd/`` sub-folder and a RANDOM_WEIGHTS.txt marker so nobody mistakes it for a model."""
    path = Path(path)
    pipe = build_architecture(name, dtype)
    pipe.save_pretrained(str(path), safe_serialization=True)
    if with_taesd:
        build_taesd(dtype).save_pretrained(str(path / "taesd"), safe_serialization=True)
    (path / "RANDOM_WEIGHTS.txt").write_text(
        f"{name}: {RANDOM_WEIGHTS_NOTE}. Built by swiftshot.engines.architectures.\n")
    return path


def parameter_counts(pipe: Any) -> dict[str, int]:
    out = {}
    for attr in ("text_encoder", "text_encoder_2", "unet", "vae"):
        mod = getattr(pipe, attr, None)
        if mod is not None:
            out[attr] = sum(p.numel() for p in mod.parameters())
    return out
