"""``swiftshot onmodel --garment TOP.jpg --model PERSON.jpg -o OUT.jpg``: an on-model shot.

The garment (flat lay, hollow, or an RGBA cutout) is put on the model photo (a person
front-on, head to at least the hips): the ``onmodel`` op of a render, run here as
``swiftshot render`` runs its ops. ``--preset`` fits the result to a marketplace's canvas and
checks it; ``--inpaint-seams`` repaints the garment's outline with the diffusion engine
(``--engine diffusion`` with an inpainting model).
"""

from __future__ import annotations

import argparse

from swiftshot.cli import CliError


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
    from swiftshot.cli.cutout import read_product
    from swiftshot.cli.render import prepare, render_and_write
    from swiftshot.inputs import sha256_hex
    from swiftshot.spec import RenderSpec

    settings, out, fmt = prepare(args)
    g_data, garment = read_product(args.garment, settings)
    m_data, model = read_product(args.model, settings)
    g_sha, m_sha = sha256_hex(g_data), sha256_hex(m_data)
    op = {"op": "onmodel", "model_sha256": m_sha, "person_segmenter": args.person_segmenter,
          "inpaint_seams": args.inpaint_seams, "light": args.light}
    engine_name = args.engine or settings.engine.default
    fields = dict(engine=engine_name, product_sha256=g_sha, ops=[op], preset=args.preset,
                  output_format=fmt, quality=args.quality)
    spec = RenderSpec(**{k: v for k, v in fields.items() if v is not None}).normalized()

    def ready(plan: object, engine: object) -> None:
        if args.inpaint_seams:
            if getattr(engine, "run_inpaint", None) is None:
                raise CliError(f"--inpaint-seams needs an engine that can inpaint (diffusion); "
                               f"{engine_name!r} cannot")
            engine.load()  # type: ignore[attr-defined]

    return render_and_write(args, settings, spec, {g_sha: garment, m_sha: model}, out, fmt,
                            ready)
