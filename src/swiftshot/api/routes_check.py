"""Marketplace presets over HTTP: ``GET /v1/presets`` lists them, ``POST /v1/check`` checks an
image against one, rule by rule, as ``swiftshot check`` prints it.

Both exist for the seller's page at ``/``: it fills its preset menu from ``/v1/presets`` (user
presets from ``[ops.presets.NAME]`` included, nothing hard-coded in the page) and shows the
check of each finished image beside it. The check itself is
:func:`swiftshot.ops.presets.check`, the function the CLI calls; this module only reads the
upload (through :func:`swiftshot.inputs.load_image`: 413 / 415 / 422 as every upload) and keeps
the file's own metadata (format, ICC profile, XMP), which is what a marketplace sees.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

from fastapi import APIRouter
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from swiftshot.api.common import caller, json_response, load_upload, service
from swiftshot.api.errors import ApiError
from swiftshot.config import LimitsSettings, PresetRule

router = APIRouter()

LABELS = {"amazon": "Amazon", "shopify": "Shopify", "etsy": "Etsy",
          "google-merchant": "Google Merchant"}
_CHECK_FIELDS = ("image", "preset")

def describe(name: str, rule: PresetRule) -> dict[str, Any]:
    """A preset as the page shows it: what it makes and which rules its check holds."""
    checks = []
    if rule.exact_size:
        checks.append(f"exactly {rule.width}x{rule.height}")
    if rule.min_long_side:
        checks.append(f"longest side >= {rule.min_long_side} px")
    if rule.exact_background:
        checks.append("pure white border")
    if rule.light_background:
        checks.append("light border")
    if rule.min_fill is not None or rule.max_fill is not None:
        lo = f"{rule.min_fill:.0%}" if rule.min_fill is not None else ""
        hi = f"{rule.max_fill:.0%}" if rule.max_fill is not None else ""
        checks.append(f"product fills {lo}-{hi}" if lo and hi else
                      f"product fills >= {lo}" if lo else f"product fills <= {hi}")
    checks.append(rule.format.upper())
    checks.append("sRGB")
    if rule.source_type:
        checks.append("IPTC DigitalSourceType")
    return {"name": name, "label": LABELS.get(name, name.replace("-", " ").title()),
            "width": rule.width, "height": rule.height, "format": rule.format,
            "quality": rule.quality,
            "background": "keeps the backdrop" if rule.background is None else
            "#" + "".join(f"{v:02x}" for v in rule.background),
            "checks": checks}


async def list_presets(request: Request) -> Response:
    from swiftshot.ops.presets import presets

    svc = service(request)
    known = presets(svc.settings.ops.presets)
    return json_response({
        "presets": [describe(n, r) for n, r in known.items()],
        # the page offers an "AI backdrop" only when a diffusion model is served here
        "engine": svc.engine.name,
        "max_upload_bytes": svc.settings.limits.max_upload_bytes,
    }, headers={"Cache-Control": "no-cache"})


async def check_image(request: Request) -> Response:
    from swiftshot.ops.presets import UnknownPreset, check, get_preset

    _, prio, _ = caller(request)  # 401 / 429 before any word of the body is read
    svc = service(request)
    settings = svc.settings
    data, preset = await _read_form(request)
    try:
        rule = get_preset(preset, settings.ops.presets)
    except UnknownPreset as e:
        raise ApiError(422, str(e), param="preset", code="unknown_preset") from None
    with svc.gate.hold(prio):  # decoding and the fill rule's cutout are CPU work
        results, (w, h, fmt) = await asyncio.to_thread(_check, data, rule, settings.limits, check)
    failed = [r.rule for r in results if not r.passed]
    return json_response({
        "preset": preset, "passed": not failed, "failed": failed,
        "width": w, "height": h, "format": fmt,
        "rules": [{"rule": r.rule, "passed": r.passed, "measured": r.measured,
                   "required": r.required} for r in results],
    })


def _check(data: bytes, rule: PresetRule, limits: LimitsSettings, check: Any
           ) -> tuple[list[Any], tuple[int, int, str | None]]:
    from PIL import Image

    from swiftshot.inputs import ALLOWED_FORMATS

    image = load_upload(data, limits, "image")
    # as `swiftshot check`: the file's own metadata is what a marketplace sees
    with Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS)) as raw:
        for k in ("icc_profile", "xmp", "XML:com.adobe.xmp"):
            if k in raw.info:
                image.info[k] = raw.info[k]
        fmt = raw.format
    return check(image, rule, file_format=fmt), (image.width, image.height, fmt)


async def _read_form(request: Request) -> tuple[bytes, str]:
    ctype = request.headers.get("content-type", "")
    if ctype.split(";", 1)[0].strip().lower() != "multipart/form-data":
        raise ApiError(415, "send multipart/form-data with the image as the 'image' file part "
                       f"and the preset's name as the 'preset' field; got Content-Type "
                       f"{(ctype or 'none')[:80]!r}", code="unsupported_media_type")
    data: bytes | None = None
    preset: str | None = None
    try:
        async with request.form(max_files=1, max_fields=len(_CHECK_FIELDS)) as form:
            for name, value in form.multi_items():
                if name == "image":
                    if not isinstance(value, UploadFile):
                        raise ApiError(422, "'image' must be a file part holding the image's "
                                       "bytes, not a text field", param="image",
                                       code="invalid_value")
                    data = await value.read()
                elif name == "preset":
                    if not isinstance(value, str):
                        raise ApiError(422, "'preset' must be a text field naming the preset",
                                       param="preset", code="invalid_value")
                    preset = value.strip()
                else:
                    raise ApiError(422, f"unknown form field {name[:40]!r}; allowed: "
                                   f"{', '.join(_CHECK_FIELDS)}", param=name[:40],
                                   code="unknown_field")
    except HTTPException as e:  # the multipart parser's refusals (too many parts, bad framing)
        raise ApiError(400, f"the multipart body could not be read: {e.detail}",
                       code="invalid_multipart") from None
    if data is None:
        raise ApiError(422, "no image: send the image to check as the 'image' file part",
                       param="image", code="missing_image")
    if not preset:
        raise ApiError(422, "no preset: send the preset's name as the 'preset' field (see "
                       "GET /v1/presets)", param="preset", code="missing_preset")
    return data, preset


# Plain Starlette routes, as the other API routes (documented in api/openapi_routes.py).
router.add_route("/v1/presets", list_presets, methods=["GET"])
router.add_route("/v1/check", check_image, methods=["POST"])
