"""``swiftshot render --product IN --preset amazon -o OUT.jpg``: a product photo made catalog-ready.

The operations come from ``--ops`` (JSON list, e.g. '[{"op":"cutout"},{"op":"compose",
"backdrop":"engine"}]'), or from ``--backdrop PROMPT`` (cut out, then compose on a studio
backdrop described by PROMPT) or ``--backdrop-color``; a ``--preset`` alone cuts the product
out and places it the way the marketplace wants.

In ``--ops``, any ``*_sha256`` field may name a local file as ``"@path"`` (an uploaded backdrop,
a mannequin mask, the inside photo of a garment): it is read with the same input rules and
passed along by its hash, e.g. '[{"op":"mannequin","key_color":"#d6bc9c",
"inside_sha256":"@inside.jpg"}]'.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from swiftshot.cli import CliError, load_cli_settings
from swiftshot.cli.generate import check_writable, format_for


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("render", help="product photo → catalog image (ops and presets)",
                       description=__doc__)
    p.add_argument("--product", default=None, help="product photo: JPEG, PNG, WebP or AVIF")
    p.add_argument("--preset", default=None,
                   help="amazon, shopify, etsy, google-merchant or a preset from the config")
    p.add_argument("--ops", default=None, help="operations as a JSON list")
    p.add_argument("--backdrop", default=None, help='studio backdrop prompt, e.g. "white paper sweep"')
    p.add_argument("--backdrop-color", default=None, help='plain backdrop colour, e.g. "#f4f1ec"')
    p.add_argument("--fill", type=float, default=None, help="product fill of the frame (0-1)")
    p.add_argument("--size", default=None, help="WxH of the canvas (default 1024x1024)")
    p.add_argument("--engine", default=None, help="engine that renders backdrops (studio default)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--quality", type=int, default=None, help="1-100 for jpeg/webp/avif")
    p.add_argument("-o", "--output", default="render.jpg", help="output file")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 when the result fails its preset's check (it is written anyway)")
    p.set_defaults(func=run)


def build_ops(args: argparse.Namespace) -> list[dict]:
    if args.ops is not None:
        if args.backdrop or args.backdrop_color:
            raise CliError("give either --ops or --backdrop/--backdrop-color, not both")
        try:
            ops = json.loads(args.ops)
        except json.JSONDecodeError as e:
            raise CliError(f"--ops is not valid JSON: {e}") from None
        if not isinstance(ops, list) or not all(isinstance(o, dict) for o in ops):
            raise CliError('--ops must be a JSON list of objects, e.g. [{"op":"cutout"}]')
        return ops
    compose: dict = {}
    if args.backdrop:
        compose = {"op": "compose", "backdrop": "engine", "prompt": args.backdrop}
    elif args.backdrop_color:
        compose = {"op": "compose", "backdrop": "color", "color": args.backdrop_color}
    if compose and args.fill is not None:
        compose["fill"] = args.fill
    return [{"op": "cutout"}, compose] if compose else []


def attach_files(ops: list[dict], products: dict, settings) -> list[dict]:
    """Replace ``"@path"`` values of ``*_sha256`` fields by the file's hash; load the file."""
    from swiftshot.cli.cutout import read_product
    from swiftshot.inputs import sha256_hex

    out = []
    for op in ops:
        op = dict(op)
        for key, value in op.items():
            if key.endswith("_sha256") and isinstance(value, str) and value.startswith("@"):
                data, image = read_product(value[1:], settings)
                sha = sha256_hex(data)
                products[sha] = image
                op[key] = sha
        out.append(op)
    return out


def prepare(args: argparse.Namespace) -> tuple[Any, Path, str]:
    """(settings, output path, format) of a rendering command, the pipeline configured and the
    output's folder checked before any work (``render``, ``onmodel``)."""
    from swiftshot import pipeline

    settings = load_cli_settings(args)
    pipeline.configure(settings.ops)
    out = Path(args.output)
    fmt = format_for(out, None)
    check_writable(out)
    return settings, out, fmt


def render_and_write(args: argparse.Namespace, settings: Any, spec: Any, products: dict,
                     out: Path, fmt: str,
                     ready: Callable[[Any, Any], None]) -> int:
    """Run one spec (``ready(plan, engine)`` loads the engine if the spec needs it, or raises
    ``CliError``), write it, print its line (size, preset, cutout confidence, compliance);
    exit 1 on a failed compliance check with ``--strict``."""
    from swiftshot import pipeline
    from swiftshot.delivery.codecs import encode
    from swiftshot.engines import create_engine
    from swiftshot.ops import OpsError
    from swiftshot.ops.presets import get_preset, quality_of

    try:
        plan = pipeline.plan(spec)
        engine = create_engine(spec.engine, settings)
        ready(plan, engine)
        image = pipeline.run_batch(engine, [spec], products=products)[0]
    except (OpsError, ValueError) as e:
        raise CliError(str(e)) from None
    quality = args.quality
    if quality is None and args.preset:
        quality = get_preset(args.preset, settings.ops.presets).quality
    out.write_bytes(encode(image, fmt, quality, source_type=pipeline.source_type_for(spec),
                           settings=settings.delivery))
    q = quality_of(image)
    line = f"{out}  {image.width}x{image.height}" + (f"  preset={args.preset}" if args.preset else "")
    comp, cut = q.get("compliance"), q.get("cutout")
    if cut:
        line += f"  cutout confidence={cut['confidence']:.2f} ({cut['level']})"
    if comp:
        line += "  compliance=" + ("pass" if comp["passed"] else "FAIL")
    print(line)
    if cut and cut["level"] == "low":
        print("low cutout confidence: " + ("; ".join(cut["notes"]) or "the cutout is a guess"),
              file=sys.stderr)
    if comp and not comp["passed"]:
        for r in comp["rules"]:
            if not r["passed"]:
                print(f"FAIL  {r['rule']}  {r['measured']}  (required: {r['required']})",
                      file=sys.stderr)
        if getattr(args, "strict", False):
            return 1
    return 0


def run(args: argparse.Namespace) -> int:
    from swiftshot.ops import needs_engine
    from swiftshot.spec import RenderSpec

    settings, out, fmt = prepare(args)
    ops = build_ops(args)
    products = {}
    sha = None
    if args.product:
        from swiftshot.cli.cutout import read_product
        from swiftshot.inputs import sha256_hex

        data, image = read_product(args.product, settings)
        sha = sha256_hex(data)
        products[sha] = image
    elif not ops and not args.preset and not args.backdrop:
        raise CliError("nothing to render: give --product (and --preset/--ops/--backdrop)")
    ops = attach_files(ops, products, settings)
    engine_name = args.engine or settings.engine.default
    fields = dict(prompt=args.backdrop or "", size=args.size, engine=engine_name, seed=args.seed,
                  product_sha256=sha, ops=ops, preset=args.preset, output_format=fmt,
                  quality=args.quality)
    spec = RenderSpec(**{k: v for k, v in fields.items() if v is not None}).normalized()

    def ready(plan: Any, engine: Any) -> None:
        if needs_engine(plan, sha is not None):
            engine.load()

    return render_and_write(args, settings, spec, products, out, fmt, ready)
