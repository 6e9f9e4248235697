"""``POST /v1/onmodel``: an on-model shot — a garment photo worn by a model photo.

multipart/form-data with two file parts, ``garment`` (the top: flat lay, hollow/ghost
mannequin, or an RGBA cutout) and ``model`` (a person front-on, head to at least the hips),
and optional text fields: ``preset`` (amazon, shopify ... : fitted to its canvas and checked),
``format`` (jpeg, png, webp, avif; default jpeg, or the preset's), ``quality`` (1-100),
``person_segmenter`` (auto, classical), ``inpaint_seams`` (true/false: needs the diffusion
engine with inpainting), ``light`` (0-1).

It is a render of ``{"ops": [{"op": "onmodel", "model_sha256": <the model photo's hash>}]}``
with the garment as the product: the same cache key, queue, executors and workers as
``/v1/render`` (a repeat is a cache hit). Answers the image (``Accept: application/json``: the
render JSON). Refusals are 4xx JSON naming the field and what is allowed: 415 not multipart,
422 a missing part / a text field where a file belongs / an unknown field / a bad value /
no person found in the model photo, 413 / 415 / 422 for the photos as ``/v1/render``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from swiftshot import telemetry
from swiftshot.api.errors import ApiError
from swiftshot.api.routes_render import Upload, render_uploads

router = APIRouter()

FILES = ("garment", "model")
FIELDS = ("preset", "format", "quality", "person_segmenter", "inpaint_seams", "light")
FORMATS = ("jpeg", "png", "webp", "avif")


def _bool(name: str, v: str) -> bool:
    s = v.strip().lower()
    if s in ("true", "1", "yes", "on"):
        return True
    if s in ("false", "0", "no", "off", ""):
        return False
    raise ApiError(422, f"{name} must be true or false; got {v!r}", param=name,
                   code="invalid_value")


async def onmodel(request: Request) -> Response:
    stages = telemetry.Stages()
    request.app.state.auth.authenticate(request.headers)
    ctype = request.headers.get("content-type", "")
    if ctype.split(";", 1)[0].strip().lower() != "multipart/form-data":
        raise ApiError(415, f"Content-Type must be multipart/form-data with the file parts "
                       f"'garment' and 'model'; got {ctype or 'none'!r}",
                       code="unsupported_media_type")
    files: dict[str, bytes] = {}
    fields: dict[str, str] = {}
    try:
        async with request.form(max_files=len(FILES), max_fields=len(FIELDS)) as form:
            for name, value in form.multi_items():
                if name in FILES:
                    if not isinstance(value, UploadFile):
                        raise ApiError(422, f"{name!r} must be a file part holding the image's "
                                       "bytes, not a text field", param=name,
                                       code="invalid_value")
                    if name in files:
                        raise ApiError(422, f"send one {name!r} file part", param=name,
                                       code="invalid_value")
                    files[name] = await value.read()
                elif name in FIELDS:
                    if isinstance(value, UploadFile):
                        raise ApiError(422, f"{name!r} is a text field, not a file",
                                       param=name, code="invalid_value")
                    fields[name] = value
                else:
                    raise ApiError(422, f"unknown form field {name!r}; allowed: file parts "
                                   f"{', '.join(FILES)}; fields {', '.join(FIELDS)}",
                                   param=name, code="unknown_field")
    except HTTPException as e:
        raise ApiError(400, f"the multipart body could not be read: {e.detail}",
                       code="invalid_multipart") from None
    for name in FILES:
        if name not in files:
            raise ApiError(422, f"the {name!r} file part is missing: send the garment photo as "
                           "'garment' and the model (person) photo as 'model', both JPEG, PNG, "
                           "WebP or AVIF", param=name, code="missing_image")
    op: dict[str, Any] = {"op": "onmodel", "model_sha256": "0" * 64}
    if "person_segmenter" in fields:
        op["person_segmenter"] = fields["person_segmenter"]
    if "inpaint_seams" in fields:
        op["inpaint_seams"] = _bool("inpaint_seams", fields["inpaint_seams"])
    if "light" in fields:
        op["light"] = fields["light"]
    data: dict[str, Any] = {"ops": [op]}
    if fields.get("preset"):
        data["preset"] = fields["preset"]
    fmt = fields.get("format", "").strip().lower()
    if fmt == "jpg":
        fmt = "jpeg"
    if fmt and fmt not in FORMATS:
        raise ApiError(422, f"format must be one of {', '.join(FORMATS)}; got {fmt!r}",
                       param="format", code="invalid_value")
    if fmt or "preset" not in data:
        data["output_format"] = fmt or "jpeg"
    if fields.get("quality"):
        data["quality"] = fields["quality"]
    from swiftshot.inputs import sha256_hex

    model = Upload("model", files["model"], sha256_hex(files["model"]))
    op["model_sha256"] = model.sha
    garment = Upload("garment", files["garment"])
    accept = (request.headers.get("accept") or "").lower()
    return await render_uploads(request, stages, data, garment, [model],
                                as_image="application/json" not in accept)


router.add_route("/v1/onmodel", onmodel, methods=["POST"])
