"""``swiftshot check IMAGE --preset amazon``: check an image against a marketplace's rules.

Prints one line per rule (PASS/FAIL, what was measured, what is required); exit status 1 when
any rule fails, 2 when the image cannot be read.
"""

from __future__ import annotations

import argparse
import io


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="check an image against a marketplace preset",
                       description=__doc__)
    p.add_argument("image", help="image file to check")
    p.add_argument("--preset", required=True,
                   help="amazon, shopify, etsy, google-merchant or a preset from the config")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from swiftshot.cli import CliError, load_cli_settings
    from swiftshot.cli.cutout import read_product
    from swiftshot.inputs import ALLOWED_FORMATS
    from swiftshot.ops.presets import UnknownPreset, check, get_preset

    settings = load_cli_settings(args)
    try:
        rule = get_preset(args.preset, settings.ops.presets)
    except UnknownPreset as e:
        raise CliError(str(e)) from None
    data, image = read_product(args.image, settings)
    # The file's own metadata (format, ICC profile, XMP) is what a marketplace sees.
    with Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS)) as raw:
        for k in ("icc_profile", "xmp", "XML:com.adobe.xmp"):
            if k in raw.info:
                image.info[k] = raw.info[k]  # type: ignore[attr-defined]
        fmt = raw.format
    results = check(image, rule, file_format=fmt)  # type: ignore[arg-type]
    width = max(len(r.rule) for r in results)
    for r in results:
        print(f"{'PASS' if r.passed else 'FAIL'}  {r.rule.ljust(width)}  {r.measured}"
              f"  (required: {r.required})")
    failed = [r.rule for r in results if not r.passed]
    print(f"{args.preset}: {'all rules pass' if not failed else 'fails ' + ', '.join(failed)}")
    return 1 if failed else 0
