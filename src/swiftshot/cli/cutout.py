"""``swiftshot cutout IN -o OUT.png``: cut the product out of a photo (transparent background)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from swiftshot.cli import CliError, load_cli_settings
from swiftshot.cli.generate import check_writable, format_for


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cutout", help="cut the product out of a photo", description=__doc__)
    p.add_argument("input", help="product photo: JPEG, PNG, WebP or AVIF")
    p.add_argument("-o", "--output", default="cutout.png",
                   help="output file (.png/.webp/.avif keep transparency; .jpg is flattened)")
    p.add_argument("--segmenter", default=None,
                   help="classical (default) or a rembg model name whose .onnx is in --model-dir")
    p.add_argument("--model-dir", default=None, help="folder of ONNX segmentation models")
    p.add_argument("--bg-color", default=None,
                   help='fill the background with this colour instead ("#ffffff", "white")')
    p.add_argument("--quality", type=int, default=None, help="1-100 for jpeg/webp/avif")
    p.set_defaults(func=run)


def read_product(path: str, settings) -> tuple[bytes, object]:
    """Bytes and decoded image of a product photo, with the service's input rules."""
    from swiftshot.inputs import InputError, load_image

    src = Path(path)
    if not src.is_file():
        raise CliError(f"input {path!r} does not exist or is not a file")
    data = src.read_bytes()
    try:
        return data, load_image(data, settings.limits)
    except InputError as e:
        raise CliError(f"{path}: {e.message}") from None


def run(args: argparse.Namespace) -> int:
    from swiftshot.delivery.codecs import encode
    from swiftshot.ops import parse_colour
    from swiftshot.ops.cutout import create_segmenter, cutout

    settings = load_cli_settings(args)
    out = Path(args.output)
    fmt = format_for(out, None)
    check_writable(out)
    _, image = read_product(args.input, settings)
    name = args.segmenter or settings.ops.segmenter
    model_dir = args.model_dir or settings.ops.model_dir
    try:
        seg = create_segmenter(name, model_dir)
        bg = parse_colour(args.bg_color) if args.bg_color else None
    except (ValueError, FileNotFoundError) as e:
        raise CliError(str(e)) from None
    result = cutout(image, seg)  # type: ignore[arg-type]
    info = dict(result.info)
    if bg is not None:
        # Same canvas and placement as the photo: fill 1.0 of the product's own bbox would
        # rescale it, so paste back at the original geometry instead.
        from PIL import Image

        canvas = Image.new("RGB", result.size, bg)
        canvas.paste(result, (0, 0), result)
        result = canvas
        result.info.update(info)
    out.write_bytes(encode(result, fmt, args.quality, settings=settings.delivery))
    from swiftshot.ops.presets import quality_of

    cut = quality_of(result).get("cutout")
    line = f"{out}  {result.width}x{result.height}  segmenter={name}"
    if cut:
        line += f"  confidence={cut['confidence']:.2f} ({cut['level']})"
    print(line)
    if cut and cut["level"] == "low":
        print("low confidence: " + ("; ".join(cut["notes"]) or "the cutout is a guess")
              + " - check the result before using it", file=sys.stderr)
    return 0
