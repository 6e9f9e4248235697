"""Tiny random diffusers pipelines, built offline, for tests that go through the real load path.

``build_tiny_sd(path)`` writes a complete ``StableDiffusionPipeline`` folder (``model_index.json``,
UNet, VAE, CLIP text encoder, CLIP tokenizer, Euler scheduler) of a few hundred kilobytes; the
engine loads it with ``from_pretrained`` exactly as it loads SD-Turbo. The tokenizer is a real
byte-level BPE CLIP tokenizer whose ``vocab.json``/``merges.txt`` are generated here from a small
built-in corpus, so nothing is fetched from a model hub.

The pixels are noise (random weights); tests use these pipelines for behaviour (batching,
seeding, cancellation, errors), never for how images look.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Words the BPE merges are learned from: product-photo prompts are what tests send.
_CORPUS = (
    "a photo of a white ceramic mug on a marble counter soft morning light studio backdrop "
    "red leather handbag wooden table shadow product shot catalog clean background linen "
    "sneaker concrete floor plant green blue pastel gradient warm sunset kitchen bathroom "
    "the and with on in of for bottle perfume glass watch gold silver lamp chair sofa"
)
_N_MERGES = 200
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte → printable-character map (byte-level BPE alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1)
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def tiny_clip_vocab() -> tuple[dict[str, int], list[str]]:
    """A CLIP-style vocab (every byte, alone and word-final, plus learned merges) and merges."""
    alphabet = list(_bytes_to_unicode().values())
    tokens = alphabet + [c + "</w>" for c in alphabet]
    words = Counter(_CORPUS.split())
    split = {w: [*w[:-1], w[-1] + "</w>"] for w in words}
    merges: list[str] = []
    for _ in range(_N_MERGES):
        pairs: Counter[tuple[str, str]] = Counter()
        for w, parts in split.items():
            for a, b in zip(parts, parts[1:], strict=False):
                pairs[(a, b)] += words[w]
        if not pairs:
            break
        # Ties broken by the pair itself so the vocab is the same on every run.
        (a, b), _count = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        merges.append(f"{a} {b}")
        tokens.append(a + b)
        for w, parts in split.items():
            out, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == a and parts[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(parts[i])
                    i += 1
            split[w] = out
    tokens += [BOS, EOS]
    return {t: i for i, t in enumerate(dict.fromkeys(tokens))}, merges


def write_tiny_clip_tokenizer(path: str | Path) -> Path:
    """Write vocab.json + merges.txt and save a CLIPTokenizer loaded from them into ``path``."""
    from transformers import CLIPTokenizer

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab, merges = tiny_clip_vocab()
    (path / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tok = CLIPTokenizer.from_pretrained(str(path), model_max_length=77)
    tok.save_pretrained(str(path))
    return path


def tiny_sd_components(*, inpaint: bool = False, seed: int = 0) -> dict:
    """Components of a tiny StableDiffusionPipeline (sizes after diffusers' own dummy tests)."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(16, 32),
        layers_per_block=1,
        sample_size=32,
        in_channels=9 if inpaint else 4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=(2, 4),
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        block_out_channels=(16, 32),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=8,
        sample_size=64,
    )
    # The model's vocab must hold every id the tokenizer can emit.
    vocab, _ = tiny_clip_vocab()
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=vocab[BOS],
            eos_token_id=vocab[EOS],
            pad_token_id=vocab[EOS],
            hidden_size=32,
            intermediate_size=64,
            layer_norm_eps=1e-05,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=len(vocab),
            max_position_embeddings=77,
        )
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        timestep_spacing="trailing", prediction_type="epsilon",
    )
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "scheduler": scheduler}


def build_tiny_sd(path: str | Path, *, inpaint: bool = False, seed: int = 0) -> Path:
    """Save a tiny random SD pipeline (inpainting UNet with 9 input channels if ``inpaint``)."""
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline
    from transformers import CLIPTokenizer

    path = Path(path)
    tok_dir = write_tiny_clip_tokenizer(path / "tokenizer")
    cls = StableDiffusionInpaintPipeline if inpaint else StableDiffusionPipeline
    pipe = cls(
        **tiny_sd_components(inpaint=inpaint, seed=seed),
        tokenizer=CLIPTokenizer.from_pretrained(str(tok_dir)),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(path), safe_serialization=True)
    return path


def build_tiny_taesd(path: str | Path, *, seed: int = 0) -> Path:
    """Save a tiny random AutoencoderTiny that decodes the tiny SD pipeline's latents (×2)."""
    import torch
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    vae = AutoencoderTiny(
        encoder_block_out_channels=(8, 8),
        decoder_block_out_channels=(8, 8),
        num_encoder_blocks=(1, 1),
        num_decoder_blocks=(1, 1),
        latent_channels=4,
    )
    path = Path(path)
    vae.save_pretrained(str(path), safe_serialization=True)
    return path


def build_tiny_sdxl(path: str | Path, *, seed: int = 0) -> Path:
    """Save a tiny random StableDiffusionXLPipeline (two text encoders, text_time conditioning):
    exercises the SDXL code paths (pooled embeddings, time ids) at test speed."""
    import torch
    from diffusers import AutoencoderKL, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
        CLIPTokenizer,
    )

    path = Path(path)
    tok_dir = write_tiny_clip_tokenizer(path / "tokenizer")
    vocab, _ = tiny_clip_vocab()
    torch.manual_seed(seed)
    text_cfg = dict(bos_token_id=vocab[BOS], eos_token_id=vocab[EOS], pad_token_id=vocab[EOS],
                    hidden_size=32, intermediate_size=64, layer_norm_eps=1e-05,
                    num_attention_heads=4, num_hidden_layers=2, vocab_size=len(vocab),
                    max_position_embeddings=77, projection_dim=32)
    pipe = StableDiffusionXLPipeline(
        unet=UNet2DConditionModel(
            block_out_channels=(16, 32), layers_per_block=1, sample_size=32, in_channels=4,
            out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
            use_linear_projection=True, addition_embed_type="text_time",
            addition_time_embed_dim=8, transformer_layers_per_block=(1, 2),
            # pooled text (32) + 6 time ids × 8
            projection_class_embeddings_input_dim=80, cross_attention_dim=64, norm_num_groups=8,
        ),
        vae=AutoencoderKL(
            block_out_channels=(16, 32), in_channels=3, out_channels=3,
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), latent_channels=4,
            norm_num_groups=8, sample_size=64,
        ),
        text_encoder=CLIPTextModel(CLIPTextConfig(**text_cfg)),
        text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**text_cfg)),
        tokenizer=CLIPTokenizer.from_pretrained(str(tok_dir)),
        tokenizer_2=CLIPTokenizer.from_pretrained(str(tok_dir)),
        scheduler=tiny_sd_components()["scheduler"],
    )
    pipe.save_pretrained(str(path), safe_serialization=True)
    return path
