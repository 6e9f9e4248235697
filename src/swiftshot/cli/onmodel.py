"""``swiftshot onmodel --garment TOP.jpg --model PERSON.jpg -o OUT.jpg``: an on-model shot.

The garment (flat lay, hollow, or an RGBA cutout) is put on the model photo (a person
front-on, head to at least the hips): the ``onmodel`` op of a render, run here as
``swiftshot render`` runs its ops. ``--preset`` fits the result to a marketplace's canvas and
checks it; ``--inpaint-seams`` repaints the garment's outline with the diffusion engine
(``--engine diffusion`` with an inpainting model).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from swiftshot.cli import CliError, load_cli_settings
from swiftshot.cli.generate import check_writable, format_for


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("onmodel", help="garment photo + model photo → on-model shot",
                       description=__doc__)
    p.add_argument("--garment", required=True, help="garment photo: JPEG, PNG, WebP or AVIF")
    p.add_argument("--model", required=True, help="model (person) photo, front-on")
    p.add_argument("--preset", default=None, help="amazon, shopify, etsy, google-merchant ...")
    p.add_argument("--person-segmenter", default="auto", choices=("auto", "classical"))
    p.add_argument("--inpaint-seams", action="store_true",
                   help="repaint the garment's outline (needs --engine diffusion, inpainting)")
    p.add_argument("--light", type=float, default=0.8, help="0-1: take on the model's light")
    p.add_argument("--engine", default=None, help="engine for --inpaint-seams (diffusion)")
    p.add_argument("--quality", type=int, default=None)
    p.add_argument("-o", "--output", default="onmodel.jpg", help="output file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from swiftshot import pipeline
    from swiftshot.cli.cutout import read_product
    from swiftshot.delivery.codecs import encode
    from swiftshot.engines import create_engine
    from swiftshot.inputs import sha256_hex
    from swiftshot.ops import OpsError
    from swiftshot.spec import RenderSpec

    settings = load_cli_settings(args)
    pipeline.configure(settings.ops)
    out = Path(args.output)
    fmt = format_for(out, None)
    check_writable(out)
    g_data, garment = read_product(args.garment, settings)
    m_data, model = read_product(args.model, settings)
    g_sha, m_sha = sha256_hex(g_data), sha256_hex(m_data)
    op = {"op": "onmodel", "model_sha256": m_sha, "person_segmenter": args.person_segmenter,
          "inpaint_seams": args.inpaint_seams, "light": args.light}
    engine_name = args.engine or settings.engine.default
    fields = dict(engine=engine_name, product_sha256=g_sha, ops=[op], preset=args.preset,
                  output_format=fmt, quality=args.quality)
    spec = RenderSpec(**{k: v for k, v in fields.items() if v is not None}).normalized()
    try:
        pipeline.plan(spec)
        engine = create_engine(engine_name, settings)
        if args.inpaint_seams:
            if getattr(engine, "run_inpaint", None) is None:
                raise CliError(f"--inpaint-seams needs an engine that can inpaint (diffusion); "
                               f"{engine_name!r} cannot")
            engine.load()
        image = pipeline.run_batch(engine, [spec], products={g_sha: garment, m_sha: model})[0]
    except (OpsError, ValueError) as e:
        raise CliError(str(e)) from None
    out.write_bytes(encode(image, fmt, args.quality, source_type=pipeline.source_type_for(spec),
                           settings=settings.delivery))
    print(f"{out}  {image.width}x{image.height}" +
          (f"  preset={args.preset}" if args.preset else ""))
    return 0
