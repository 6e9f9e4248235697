"""``swiftshot generate PROMPT``: render images with an engine and write them to files."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from swiftshot.cli import CliError, load_cli_settings

EXT_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp", ".avif": "avif"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="render images from a prompt", description=__doc__)
    p.add_argument("prompt", help='what to make, e.g. "white marble counter, soft morning light"')
    p.add_argument("--size", default="1024x1024", help="WxH, multiples of 8 in 64-2048")
    p.add_argument("--seed", type=int, default=None, help="seed of the first image (n-th adds n-1)")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (diffusion)")
    p.add_argument("--guidance", type=float, default=None, help="guidance scale (diffusion)")
    p.add_argument("--negative", default="", help="negative prompt (diffusion)")
    p.add_argument("--engine", default=None, help="studio (default) or diffusion")
    p.add_argument("--model", default=None, help="diffusers pipeline folder (diffusion engine)")
    p.add_argument("--quality", type=int, default=None, help="1-100 for jpeg/webp/avif")
    p.add_argument("--format", default=None, help="png, jpeg, webp, avif (default: from -o)")
    p.add_argument("-n", type=int, default=1, help="number of images, rendered as one batch")
    p.add_argument("-o", "--output", default="out.png",
                   help="output file; with -n > 1, NAME-1.EXT, NAME-2.EXT ...")
    p.set_defaults(func=run)


def output_paths(output: str, n: int) -> list[Path]:
    path = Path(output)
    if n == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{i + 1}{path.suffix}") for i in range(n)]


def format_for(path: Path, explicit: str | None) -> str:
    if explicit:
        fmt = explicit.lower()
        fmt = "jpeg" if fmt == "jpg" else fmt
        if fmt not in set(EXT_FORMATS.values()):
            raise CliError(f"unsupported format {explicit!r}; use one of png, jpeg, webp, avif")
        return fmt
    fmt = EXT_FORMATS.get(path.suffix.lower())
    if fmt is None and path.suffix:
        raise CliError(
            f"unsupported output format {path.suffix!r} ({str(path)!r}); "
            "use .png, .jpg, .webp or .avif, or pass --format"
        )
    if fmt is None:
        raise CliError(
            f"cannot tell the format from {str(path)!r}; name the file .png, .jpg, .webp or .avif "
            "or pass --format"
        )
    return fmt


def check_writable(path: Path) -> None:
    """Fail before rendering, not after: a missing or read-only folder is a user error."""
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise CliError(f"cannot write {str(path)!r}: folder {str(parent)!r} does not exist")
    if path.is_dir():
        raise CliError(f"cannot write {str(path)!r}: it is a folder; name a file")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise CliError(f"cannot write {str(path)!r}: permission denied")
    # os.access trusts mode bits, which root ignores and read-only mounts override: probe.
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".swiftshot-probe-"):
            pass
    except OSError as e:
        raise CliError(
            f"cannot write {str(path)!r}: folder {str(parent)!r} is not writable ({e.strerror or e})"
        ) from None


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from swiftshot.delivery.codecs import encode
    from swiftshot.engines import create_engine
    from swiftshot.pipeline import source_type_for
    from swiftshot.spec import RenderSpec

    if not 1 <= args.n <= 50:
        raise CliError(f"-n must be between 1 and 50; got {args.n}")
    settings = load_cli_settings(args)
    paths = output_paths(args.output, args.n)
    fmt = format_for(paths[0], args.format)
    for p in paths:
        check_writable(p)
    engine_name = args.engine or settings.engine.default
    fields = dict(prompt=args.prompt, size=args.size, engine=engine_name, model=args.model,
                  steps=args.steps, guidance=args.guidance, negative_prompt=args.negative,
                  output_format=fmt, quality=args.quality)
    fields = {k: v for k, v in fields.items() if v is not None}
    base = RenderSpec(**fields)
    specs = []
    for i in range(args.n):
        seed = None if args.seed is None else args.seed + i
        if seed is None and args.n > 1:
            seed = base.normalized().seed + i
        specs.append(base.model_copy(update={"seed": seed}).normalized())
    engine = create_engine(engine_name, settings, model=args.model)
    engine.load()
    bar = tqdm(total=args.n, unit="img", disable=args.n == 1, desc="generate")
    images = engine.run(specs)
    for spec, image, path in zip(specs, images, paths, strict=True):
        data = encode(image, fmt, spec.quality, source_type=source_type_for(spec),
                      settings=settings.delivery)
        try:
            path.write_bytes(data)
        except OSError as e:
            raise CliError(f"cannot write {str(path)!r}: {e.strerror or e}") from None
        bar.update(1)
    bar.close()
    for spec, path in zip(specs, paths, strict=True):
        print(f"{path}  {spec.width}x{spec.height} seed={spec.seed}")
    return 0
