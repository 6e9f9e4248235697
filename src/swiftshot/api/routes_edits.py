"""``POST /v1/images/edits``: OpenAI's image edit, as "put my product into this scene".

Multipart, as the openai client sends it: ``image`` (the product photo; one file, ``image`` or
``image[]``), ``prompt`` (the scene), optional ``mask``, and the fields of
``/v1/images/generations`` (``model``, ``n``, ``size``, ``response_format``, ``output_format``,
``output_compression``, ``quality``, ``background``, ``stream``, ``partial_images``, ``user``; the
extensions ``seed``, ``steps`` ...). ``input_fidelity`` is accepted and has no effect.

What it renders: the product composed (``compose`` op, contact shadow, colour match) onto a
backdrop the engine renders from ``prompt`` — the studio engine's procedural scene, or, when the
served engine can inpaint (``run_inpaint``), the diffusion engine repainting everything around
the product. Which part of the photo is the product:

* with a ``mask`` (OpenAI's meaning: fully transparent where the image is to be edited, same
  size as the image, with an alpha channel): the mask's alpha is the product's matte;
* a photo with its own alpha channel: that alpha;
* otherwise the photo is cut out (the classical segmenter, or the configured one).

The photo (and mask) hashes are in the cache key, so the same edit again is a cache hit, found
before anything is decoded. ``stream=true`` answers ``image_edit.partial_image`` /
``image_edit.completed`` events exactly as generations do.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from typing import Any

from fastapi import APIRouter
from PIL import Image
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from swiftshot import telemetry
from swiftshot.api.common import caller, finish, json_response, load_upload, service
from swiftshot.api.errors import ApiError, from_validation
from swiftshot.api.routes_images import (
    ImagesRequest,
    _seeded,
    image_url,
    openai_stream,
    to_spec,
)
from swiftshot.inputs import InputError, PhotoFile, check_header, sha256_hex
from swiftshot.ops import OpsError
from swiftshot.runtime import memory
from swiftshot.service import Rendered, Service
from swiftshot.spec import RenderSpec

router = APIRouter()

FILE_FIELDS = ("image", "image[]", "mask")
IGNORED_FIELDS = ("input_fidelity",)
"""OpenAI fields accepted without effect here."""


async def edits(request: Request) -> Response:
    request.app.state.auth.authenticate(request.headers)  # 401 before any word on the body
    svc = service(request)
    fields, image, mask = await _read(request)
    if image is None:
        raise ApiError(400, "an edit needs the product photo as the 'image' file part "
                       "(multipart/form-data; JPEG, PNG, WebP or AVIF)", param="image",
                       code="missing_image")
    if not fields.get("prompt"):
        raise ApiError(400, "prompt is required: describe the scene to put the product in",
                       param="prompt", code="missing_prompt")
    try:
        req = ImagesRequest.model_validate(fields)
    except ValidationError as e:
        raise from_validation(e, 400, ImagesRequest) from None
    spec, fmt = to_spec(req, request)
    if "width" not in spec.model_fields_set and req.size in (None, "auto"):
        spec = spec.model_copy(update={"width": 1024, "height": 1024})
    image_sha = await asyncio.to_thread(sha256_hex, image) if len(image) > 1 << 20 \
        else sha256_hex(image)
    mask_sha = sha256_hex(mask) if mask is not None else None
    product_sha = image_sha if mask_sha is None else \
        hashlib.sha256(f"edit:{image_sha}:mask:{mask_sha}".encode()).hexdigest()
    inpaint = getattr(svc.engine, "run_inpaint", None) is not None
    compose = {"op": "compose", "backdrop": "inpaint" if inpaint else "engine"}
    try:
        spec = RenderSpec.model_validate({**spec.model_dump(exclude_unset=True),
                                          "engine": spec.engine, "product_sha256": product_sha,
                                          "ops": [compose]})
    except ValidationError as e:
        raise from_validation(e, 400) from None
    n = req.n or 1
    _, prio, deadline = caller(request, cost=n)

    async def products() -> dict[str, Image.Image | PhotoFile]:
        if mask is None:  # checked by its header; decoded once, where the render runs
            return _checked(image, svc.settings.limits, product_sha)
        return await asyncio.to_thread(_decode, image, mask, product_sha, svc)

    async def one(s: RenderSpec, stages: telemetry.Stages, listener: Any = None) -> Rendered:
        from swiftshot.api.routes_render import _cached

        r = await _cached(svc, s, stages)
        if r is not None:
            return r
        # As a render's upload: one place in the work gate, and the memory budget held from
        # decode to the end of the render (runtime/memory.py).
        with svc.gate.hold(prio):
            async with memory.admit_photos([image, *([mask] if mask else [])],
                                           svc.settings.limits, deadline):
                t0 = time.perf_counter_ns()
                decoded = await products()
                stages.add("decode", t0, time.perf_counter_ns())
                try:
                    return await svc.render(s, priority=prio, deadline_s=deadline,
                                            products=decoded, stages=stages, listener=listener)
                except OpsError as e:
                    raise ApiError(e.status, str(e), param="image", code="invalid_image") from None
                finally:
                    decoded = None  # freed before the budget is handed on

    if req.stream:
        return openai_stream(request, "image_edit", spec, fmt, prio, deadline,
                             req.partial_images or 0, req.quality, req.background,
                             render=lambda listener, stages: one(spec, stages, listener))
    specs = _seeded(spec, n)
    stages_list = [telemetry.Stages() for _ in specs]
    b64 = (req.response_format or "b64_json") == "b64_json"  # OpenAI's edits answer b64 by default
    tasks = [asyncio.ensure_future(_item(request, svc, one, s, st, b64, fmt))
             for s, st in zip(specs, stages_list, strict=True)]
    try:
        items = await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        raise
    caches = [c for _, c in items]
    durations = finish(request, "POST /v1/images/edits", stages_list, {"swiftshot.n": n})
    body = {"created": int(time.time()), "data": [d for d, _ in items], "output_format": fmt,
            "size": f"{spec.width}x{spec.height}", "quality": req.quality or "auto",
            "background": req.background or "auto"}
    return json_response(body, headers={
        "X-Cache": ", ".join(caches) if len(set(caches)) > 1 else caches[0],
        "Server-Timing": telemetry.server_timing(durations)})


async def _item(request: Request, svc: Service, one: Any, spec: RenderSpec,
                stages: telemetry.Stages, b64: bool, fmt: str) -> tuple[dict[str, Any], str]:
    r = await one(spec, stages)
    if b64:
        data = await svc.variant(r.key, fmt, spec.quality, image=r.image, master=r.master,
                                 made=True, stages=stages)
        if data is None:
            raise ApiError(409, "the image was purged while it was being encoded; retry")
        return {"b64_json": base64.b64encode(data).decode("ascii")}, r.cache
    return {"url": image_url(request, r.key, fmt, spec.quality)}, r.cache


def _checked(image: bytes, limits: Any, product_sha: str) -> dict[str, PhotoFile]:
    """The photo without a mask: checked by its header only (format, dimensions, pixel count,
    decompression bomb: 413 / 415 / 422 now); its pixels are decoded once, where the render
    runs (an engine worker process decodes the file it is sent in any case), and truncated
    data is the same 422 from there (``inputs.PhotoError``)."""
    try:
        return {product_sha: check_header(image, limits, "image")}
    except InputError as e:
        raise ApiError(e.status, f"image: {e.message}", param="image", code=e.code) from None


def _decode(image: bytes, mask: bytes | None, product_sha: str,
            svc: Service) -> dict[str, Image.Image]:
    """The product the compose op places: the photo, its matte from the mask if one came.
    Blocking (decodes): run in a thread."""
    limits = svc.settings.limits
    photo = load_upload(image, limits, "image")
    if mask is None:
        return {product_sha: photo}
    m = load_upload(mask, limits, "mask")
    if m.size != photo.size:
        raise ApiError(400, f"mask is {m.width}x{m.height}; it must be the size of the image "
                       f"({photo.width}x{photo.height})", param="mask", code="invalid_mask")
    if m.mode != "RGBA":
        raise ApiError(400, "mask needs an alpha channel: fully transparent where the scene goes, "
                       "opaque on the product (a PNG with transparency)", param="mask",
                       code="invalid_mask")
    alpha = m.getchannel("A")
    if alpha.getextrema()[1] == 0:
        raise ApiError(400, "mask is fully transparent: nothing of the image would be kept; make "
                       "it opaque over the product", param="mask", code="invalid_mask")
    product = photo.convert("RGB")
    product.putalpha(alpha)
    return {product_sha: product}


async def _read(request: Request) -> tuple[dict[str, Any], bytes | None, bytes | None]:
    ctype = request.headers.get("content-type", "")
    if ctype.split(";", 1)[0].strip().lower() != "multipart/form-data":
        raise ApiError(415, f"Content-Type must be multipart/form-data (the image as a file "
                       f"part); got {ctype or 'none'!r}", code="unsupported_media_type")
    fields: dict[str, Any] = {}
    image: bytes | None = None
    mask: bytes | None = None
    allowed = sorted({*ImagesRequest.model_fields, *FILE_FIELDS, *IGNORED_FIELDS})
    try:
        async with request.form(max_files=4, max_fields=len(allowed) + 4) as form:
            for name, value in form.multi_items():
                if name in FILE_FIELDS:
                    if not isinstance(value, UploadFile):
                        raise ApiError(400, f"{name!r} must be a file part holding the image's "
                                       "bytes, not a text field", param=name,
                                       code="invalid_value")
                    data = await value.read()
                    if name == "mask":
                        if mask is not None:
                            raise ApiError(400, "send one 'mask'", param="mask")
                        mask = data
                    else:
                        if image is not None:
                            raise ApiError(400, "send one product photo as 'image'; several "
                                           "input images are not supported", param="image",
                                           code="invalid_value")
                        image = data
                elif name in IGNORED_FIELDS:
                    continue
                elif name in ImagesRequest.model_fields:
                    if isinstance(value, UploadFile):
                        raise ApiError(400, f"{name!r} must be a text field", param=name)
                    if name in fields:
                        raise ApiError(400, f"send {name!r} once", param=name)
                    fields[name] = value if name != "tags" else [t for t in value.split(",") if t]
                else:
                    raise ApiError(400, f"unknown field {name!r} (allowed: {', '.join(allowed)})",
                                   param=name, code="unknown_field")
    except HTTPException as e:
        raise ApiError(400, f"the multipart body could not be read: {e.detail}",
                       code="invalid_multipart") from None
    if image is not None and not image:
        raise ApiError(400, "the 'image' part is empty", param="image", code="missing_image")
    if mask is not None and not mask:
        raise ApiError(400, "the 'mask' part is empty", param="mask", code="invalid_mask")
    return fields, image, mask


router.add_route("/v1/images/edits", edits, methods=["POST"])
