"""The model stable-diffusion.cpp is timed on: our SD 2.1-architecture random-weight real-size
diffusers folder (the one the diffusion benchmarks use, written by
``swiftshot.engines.architectures.save_architecture("sd-turbo", ...)``; built here if absent,
about a minute and 2.6 GB), described for bench/sdcpp_bench.py in ``OUT/sdcpp-model.json``.

sd.cpp's model loader reads a diffusers folder (``ModelLoader::init_from_diffusers_file``:
unet/, vae/, text_encoder/ safetensors, names mapped to its own), including the 23-layer
OpenCLIP-H text encoder diffusers stores for SD 2.x (the loader skips the 24th layer, unused
with SD 2's penultimate-layer conditioning), and its TAESD (``--taesd``) reads diffusers'
AutoencoderTiny names (decoder.layers.N...). One conversion is needed: transformers 5 saves
``CLIPTextModel`` without the ``text_model.`` prefix its 4.x releases (and every SD 2.1 folder
published) wrote, and sd.cpp maps ``te.text_model.*``; so OUT/sd21/ gets the UNet, VAE and
TAESD as links and the text encoder re-written with the prefix (same tensors, same dtype). The
weights are stored bf16; sd.cpp casts them to ``--type`` (f16, q8_0) at load.

    python bench/sdcpp_convert.py --out /work/sdcpp-build/model [--diffusers /tmp/dfx/sd-turbo-random]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def check(folder: Path) -> dict[str, int]:
    from safetensors import safe_open

    files = {"unet": "unet/diffusion_pytorch_model.safetensors",
             "vae": "vae/diffusion_pytorch_model.safetensors",
             "text_encoder": "text_encoder/model.safetensors",
             "taesd": "taesd/diffusion_pytorch_model.safetensors"}
    counts: dict[str, int] = {}
    for name, rel in files.items():
        with safe_open(str(folder / rel), "pt") as f:
            keys = list(f.keys())
        counts[name] = len(keys)
        need = {"unet": "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight",
                "vae": "decoder.conv_in.weight",
                "text_encoder": "text_model.embeddings.token_embedding.weight",
                "taesd": "decoder.layers.0.weight"}[name]
        if need not in keys:
            raise SystemExit(f"{folder / rel}: no {need}; not the diffusers layout sd.cpp reads")
    return counts


def convert(src: Path, dst: Path) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    dst.mkdir(parents=True, exist_ok=True)
    for sub in ("unet", "vae", "taesd", "scheduler", "tokenizer"):
        link = dst / sub
        if not link.exists():
            link.symlink_to(src / sub, target_is_directory=True)
    for f in ("model_index.json", "RANDOM_WEIGHTS.txt"):
        if (src / f).is_file() and not (dst / f).exists():
            (dst / f).symlink_to(src / f)
    te = dst / "text_encoder"
    out = te / "model.safetensors"
    if out.is_file() and out.stat().st_mtime >= (src / "text_encoder/model.safetensors").stat().st_mtime:
        return
    te.mkdir(exist_ok=True)
    tensors = {}
    with safe_open(str(src / "text_encoder/model.safetensors"), "pt") as f:
        for k in f.keys():
            tensors[k if k.startswith("text_model.") else "text_model." + k] = f.get_tensor(k)
    tmp = te / ".model.safetensors.tmp"
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    tmp.rename(out)
    (te / "config.json").write_text((src / "text_encoder/config.json").read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--diffusers", type=Path, default=Path("/tmp/dfx/sd-turbo-random"),
                    help="SD 2.1-architecture diffusers folder (built with random weights if absent)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    src = args.diffusers
    if not (src / "model_index.json").is_file():
        from swiftshot.engines.architectures import save_architecture

        print(f"building the random-weight SD 2.1-architecture folder in {src} ...", flush=True)
        save_architecture("sd-turbo", src)
    dst = args.out / "sd21"
    convert(src.resolve(), dst)
    counts = check(dst)
    meta = {"checkpoint": "sd21", "taesd": "sd21/taesd/diffusion_pytorch_model.safetensors",
            "source": str(src.resolve()),
            "format": "diffusers folder; text encoder names prefixed text_model. (transformers 4 layout)",
            "weights": "random (RANDOM_WEIGHTS.txt): latency is real, pixels are noise",
            "tensors": counts}
    (args.out / "sdcpp-model.json").write_text(json.dumps(meta, indent=2))
    print(json.dumps(meta, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
