"""``POST /v1/render``: the native API. The body is a RenderSpec; unknown fields → 422.

Three request shapes:

* JSON: a RenderSpec;
* JSON with ``product_b64`` (the product photo as base64 or a ``data:`` URL) beside the spec
  fields, and optionally ``images_b64``: a list of further images the ops name by hash (a
  backdrop's ``image_sha256``, a mannequin's ``mask_sha256`` / ``inside_sha256``);
* ``multipart/form-data``: a ``spec`` field (the RenderSpec as JSON), a ``product`` file part
  and optionally ``images`` file parts (the further images, as above).

The photo is checked by its header here (:func:`swiftshot.inputs.check_header`: 413, 415, 422)
and decoded once where the render runs, by :func:`swiftshot.inputs.load_image` (truncated or
corrupt data: the same 422, ``inputs.PhotoError``, from the engine worker); its
SHA-256 becomes ``product_sha256``, so the cache key covers the photo: the same photo with the
same ops is a cache hit. A spec may send ``product_sha256`` alone (no photo): it is served when
that render is cached and refused (422, asking for the photo) when not. Ops and preset are
validated before anything is queued or decoded.

Answers JSON ``{key, url, urls, cache, timings, ...}``, or, when ``Accept`` prefers an image, the
image bytes themselves (format from ``output_format`` if the body names it, else the preset's
format when ``Accept`` admits it, else negotiated).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import APIRouter
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from swiftshot import telemetry
from swiftshot.api import sse
from swiftshot.api.common import caller, finish, json_response, read_json, service
from swiftshot.api.errors import ApiError, from_validation
from swiftshot.api.routes_images import image_url
from swiftshot.config import LimitsSettings, PresetRule
from swiftshot.delivery import negotiate
from swiftshot.engines.base import MAX_PREVIEWS
from swiftshot.inputs import InputError, PhotoFile, check_header, decode_b64, sha256_hex
from swiftshot.ops import ComposeOp, Op, OpsError, validate_ops
from swiftshot.ops.presets import (
    UnknownPreset,
    get_preset,
    quality_headers,
    remembered_quality,
)
from swiftshot.runtime import memory
from swiftshot.runtime.progress import Listener
from swiftshot.service import Rendered, Service
from swiftshot.spec import OUTPUT_FORMATS, RenderSpec

router = APIRouter()

MAX_IMAGES = 8
"""Further images (backdrops, masks) one request may carry beside the product."""
PRODUCT_OPS = frozenset({"cutout", "compose", "mannequin", "onmodel"})
"""Ops that work on a product photo; on an engine image alone they would cut out a backdrop."""
_IMAGE_FIELDS = ("image_sha256", "mask_sha256", "inside_sha256", "model_sha256")
_FORM_FIELDS = ("spec", "product", "images")
_SEND_PHOTO = ("send the photo as the 'product' file part (multipart/form-data, with the spec "
               "as the 'spec' field) or as product_b64 in the JSON body")


@dataclass(frozen=True)
class Upload:
    param: str
    """Where it came from (product, product_b64, images[1] ...), for error messages."""
    data: bytes
    sha: str = ""


async def render(request: Request) -> Response:
    stages = telemetry.Stages()
    request.app.state.auth.authenticate(request.headers)  # 401 before any word on the body
    streaming = stream_options(request)  # None, or the previews wanted (0..3)
    data, product, images = await _read(request, service(request).settings.limits)
    return await render_uploads(request, stages, data, product, images, streaming)


async def render_uploads(request: Request, stages: telemetry.Stages, data: dict[str, Any],
                         product: Upload | None, images: list[Upload],
                         streaming: int | None = None, as_image: bool | None = None
                         ) -> Response:
    """The render of spec fields ``data`` with its photos (read by ``/v1/render`` or another
    native route, e.g. ``/v1/onmodel``). ``as_image``: answer the image (True) or the JSON
    (False) whatever ``Accept`` prefers; None: as ``Accept`` prefers."""
    svc = service(request)
    settings = svc.settings
    product, images = await _hashed(product, images)
    if "engine" not in data:
        data["engine"] = svc.engine.name
    try:
        spec = RenderSpec.model_validate(data)
    except ValidationError as e:
        raise from_validation(e, 422, RenderSpec) from None
    if not svc.offers(spec.engine):
        raise ApiError(422, f"engine {spec.engine!r} is not served here; this server offers "
                       f"{svc.offered_names()}", param="engine", code="unknown_engine")
    spec = _bind_product(spec, product)
    ops, rule = _check_ops(spec, svc.engine_for(spec), settings.ops.presets)
    wanted = _wanted_images(spec, ops)
    sent = {u.sha: u for u in ([product] if product else []) + images}
    _check_images(wanted, sent, images)
    _, prio, deadline = caller(request)
    accept = request.headers.get("accept")
    if as_image is None:
        as_image = negotiate.wants_image(accept)
    as_image = streaming is None and as_image
    fmt = spec.output_format
    quality, width = spec.quality, None
    vary = ""
    if as_image and "output_format" not in spec.model_fields_set:
        # decide before rendering: an unservable Accept should not cost a render
        if negotiate.pick_format(accept) is None:
            raise ApiError(406, f"Accept {accept!r} admits none of the formats served: "
                           f"{', '.join(negotiate.MEDIA_TYPES.values())}", code="not_acceptable")
    missing = [(param, sha) for param, sha in wanted if sha not in sent]
    reshaped = bool(ops) or rule is not None
    if rule is not None and "output_format" not in spec.model_fields_set:
        fmt = rule.format
        quality = spec.quality if spec.quality is not None else rule.quality
    # what the engine worker is asked to encode beside the master; `spec` itself still says
    # whether the caller named a format (negotiation below)
    work = _delivered_first(spec, fmt, quality, as_image, accept, rule)
    if streaming is not None:
        return _event_stream(request, svc, work, stages, sent, missing, prio, deadline,
                             streaming, reshaped, fmt, quality, rule)
    r = await _produce(svc, work, stages, sent, missing, prio, deadline)
    if not as_image:
        body, durations, verdict = await _answer(request, svc, r, stages, reshaped, fmt, quality,
                                                 rule)
        return json_response(body, headers={"X-Cache": r.cache,
                                            "Server-Timing": telemetry.server_timing(durations),
                                            **quality_headers(verdict)})
    (w, h), verdict = await _size_and_verdict(svc, r, rule, reshaped)
    if "output_format" not in spec.model_fields_set:
        preset_fmt = rule.format if rule is not None and _admits(accept, rule.format) else None
        v = negotiate.negotiate(accept, request.headers, master_width=w,
                                default_quality=settings.delivery.quality, fmt=preset_fmt)
        assert v is not None  # checked above
        fmt, width = v.fmt, v.width
        quality = spec.quality if spec.quality is not None else v.quality
        if rule is not None and preset_fmt is not None and spec.quality is None \
                and fmt != "png":
            # the marketplace's quality, still lowered for Save-Data / slow links
            quality = negotiate.adapt_quality(rule.quality, negotiate.parse_hints(request.headers))
        vary = "Accept, " + negotiate.VARY_HINTS
    data_bytes = await svc.variant(r.key, fmt, quality, width, image=r.image,
                                   master=r.master, made=True, stages=stages)
    if data_bytes is None:
        raise ApiError(409, "the image was purged while it was being encoded; retry")
    durations = finish(request, f"POST {request.url.path}", [stages],
                       {"swiftshot.cache": r.cache})
    from swiftshot.delivery.codecs import content_type

    headers = {"X-Cache": r.cache, "Server-Timing": telemetry.server_timing(durations),
               "ETag": '"' + hashlib.blake2b(data_bytes, digest_size=16).hexdigest() + '"',
               "Content-Location": image_url(request, r.key, fmt, quality)}
    if vary:
        headers["Vary"] = vary
    headers.update(quality_headers(verdict))
    return Response(data_bytes, media_type=content_type(fmt), headers=headers)


async def _produce(svc: Service, spec: RenderSpec, stages: telemetry.Stages,
                   sent: dict[str, Upload], missing: list[tuple[str, str]], prio: str,
                   deadline: float | None, listener: Listener | None = None) -> Rendered:
    """The render: from the cache (looked up before any photo is decoded), or made."""
    r = await _cached(svc, spec, stages) if sent or missing else None
    if r is not None:
        return r
    if missing:
        raise _missing_error(missing)
    # An upload's decode and its render share one place in the work gate (the render's
    # own hold sees it is held already).
    # The memory budget is held from decode to the end of the render (runtime/memory.py).
    with svc.gate.hold(prio) if sent else contextlib.nullcontext():
        async with memory.admit_photos([u.data for u in sent.values()], svc.settings.limits,
                                       deadline):
            products = None
            if sent:
                t0 = time.perf_counter_ns()
                products = await _checked(sent.values(), svc.settings.limits)
                stages.add("decode", t0, time.perf_counter_ns())
            try:
                return await svc.render(spec, priority=prio, deadline_s=deadline,
                                        products=products, stages=stages, listener=listener)
            except OpsError as e:  # an op that cannot run on this photo (empty cutout ...)
                raise ApiError(e.status, str(e), param="ops", code="invalid_ops") from None
            finally:
                products = None  # freed before the budget is handed on


def _delivered_first(spec: RenderSpec, fmt: str, quality: int | None, as_image: bool,
                     accept: str | None, rule: PresetRule | None) -> RenderSpec:
    """The spec with the format (and quality) this request will most likely be answered in,
    when the caller named none: an engine worker encodes that variant beside the master
    (``output_format``/``quality`` are not pixels: the cache key is the same), so the answer
    is a cache hit instead of an encode on the front — and the worker does not encode a
    full-size PNG, the spec's default, that nobody asked for (a preset's 2000² canvas: ~0.1-0.3
    s of a worker's time, then the front encoded the JPEG it wanted itself)."""
    if "output_format" in spec.model_fields_set:
        return spec
    if as_image:  # else the format of the URL the JSON (or the stream's last event) gives
        # the format negotiation will pick, unless the preset's own is admitted
        picked = negotiate.pick_format(accept)
        if rule is not None and _admits(accept, rule.format):
            picked = rule.format
        if picked is None:
            return spec
        fmt, quality = picked, (spec.quality if spec.quality is not None else
                                rule.quality if rule is not None and picked == rule.format
                                else None)
    if fmt == spec.output_format and quality == spec.quality:
        return spec
    return spec.model_copy(update={"output_format": fmt, "quality": quality})


async def _size_and_verdict(svc: Service, r: Rendered, rule: PresetRule | None,
                            reshaped: bool) -> tuple[tuple[int, int], dict[str, Any]]:
    """The master's size and what the preset's check and the cutout said of it (X-Compliance,
    X-Cutout-Confidence; the same in the JSON answer). Ops and presets may make the size differ
    from the spec's (a preset's canvas, compose's size, an upscale): then it is the image's, or
    its metadata's when the image is not here. The verdict is as made (this process's image,
    or what an engine worker sent with its result), else as stored in the metadata."""
    if not reshaped:
        return (r.spec.width, r.spec.height), {}
    meta = await svc.meta(r.key) if r.image is None else None
    if r.image is not None:
        size = r.image.size
    elif meta is not None:
        size = (meta.width, meta.height)
    else:
        size = (r.spec.width, r.spec.height)
    made = r.quality if r.quality is not None else (meta.quality if meta is not None else None)
    if r.image is not None or made is not None:  # read from the image's info: no decode
        return size, remembered_quality(r.key, r.image, r.master, rule, r.spec.preset, made)
    # remembered, or the preset's check run again on the decoded master: off the loop
    verdict = await asyncio.to_thread(remembered_quality, r.key, r.image, r.master, rule,
                                      r.spec.preset, made)
    return size, verdict


async def _answer(request: Request, svc: Service, r: Rendered, stages: telemetry.Stages,
                  reshaped: bool, fmt: str, quality: int | None, rule: PresetRule | None
                  ) -> tuple[dict[str, Any], dict[str, float], dict[str, Any]]:
    """The JSON answer (also the data of the stream's ``completed`` event), the timings and
    the quality verdict (compliance, cutout confidence) it carries."""
    (w, h), verdict = await _size_and_verdict(svc, r, rule, reshaped)
    durations = finish(request, "POST /v1/render", [stages], {"swiftshot.cache": r.cache})
    body: dict[str, Any] = {
        "key": r.key,
        "url": image_url(request, r.key, fmt, quality),
        "urls": {f: image_url(request, r.key, f, None) for f in OUTPUT_FORMATS},
        "cache": r.cache,
        "width": w, "height": h, "seed": r.spec.seed,
        "timings": {k: round(v * 1000, 3) for k, v in durations.items()},
    }
    if r.spec.product_sha256:
        body["product_sha256"] = r.spec.product_sha256  # a later request may send it alone
    body.update(verdict)
    return body, durations, verdict


# -- streaming (SSE) ---------------------------------------------------------------------------

DEFAULT_PARTIALS = 2
"""Previews a native stream asks for when ``partial_images`` is not given."""


def stream_options(request: Request) -> int | None:
    """None for a plain answer; else how many previews the stream wants (0..3).

    Streams when the query has ``stream=true`` or ``Accept`` is ``text/event-stream``;
    ``partial_images`` (query, 0..3) defaults to 2.
    """
    q = request.query_params
    raw = q.get("stream")
    if raw is None:
        wanted = "text/event-stream" in (request.headers.get("accept") or "").lower()
    elif raw.lower() in ("true", "1", "yes"):
        wanted = True
    elif raw.lower() in ("false", "0", "no"):
        wanted = False
    else:
        raise ApiError(400, f"stream must be true or false; got {raw!r}", param="stream",
                       code="invalid_value")
    raw_n = q.get("partial_images")
    if raw_n is None:
        return DEFAULT_PARTIALS if wanted else None
    try:
        n = int(raw_n)
    except ValueError:
        n = -1
    if not 0 <= n <= MAX_PREVIEWS:
        raise ApiError(400, f"partial_images must be an integer from 0 to {MAX_PREVIEWS}; got "
                       f"{raw_n!r}", param="partial_images", code="invalid_value")
    return n if wanted else None


def _event_stream(request: Request, svc: Service, spec: RenderSpec, stages: telemetry.Stages,
                  sent: dict[str, Upload], missing: list[tuple[str, str]], prio: str,
                  deadline: float | None, partials: int, reshaped: bool, fmt: str,
                  quality: int | None, rule: PresetRule | None) -> sse.EventStream:
    """The render as server-sent events: queued, started, partial, then completed or error
    (the wire contract is in docs/ARCHITECTURE.md, "Streaming")."""

    async def work(listener: Listener) -> tuple[str, dict[str, Any]]:
        r = await _produce(svc, spec, stages, sent, missing, prio, deadline, listener)
        body, _, _ = await _answer(request, svc, r, stages, reshaped, fmt, quality, rule)
        return "completed", {"type": "completed", **body}

    def partial(index: int, b64: str, out_fmt: str, size: str) -> tuple[str, dict[str, Any]]:
        return "partial", {"type": "partial", "partial_image_index": index, "b64_json": b64,
                           "output_format": out_fmt, "size": size}

    return sse.EventStream(
        work, partials=partials, preview_format="auto",
        on_queued=lambda e: ("queued", {"type": "queued", "position": e.position,
                                        "eta_ms": round(e.eta_s * 1000)}),
        on_started=lambda e: ("started", {"type": "started"}),
        on_partial=partial,
        on_error=lambda status, body: ("error", {"type": "error", "status": status, **body}),
        keepalive_s=svc.settings.server.sse_keepalive_s)


# -- reading the request -----------------------------------------------------------------------


async def _read(request: Request, limits: LimitsSettings
                ) -> tuple[dict[str, Any], Upload | None, list[Upload]]:
    """(spec fields, product photo, further images) from a JSON or multipart body."""
    ctype = request.headers.get("content-type", "")
    media = ctype.split(";", 1)[0].strip().lower()
    if media == "multipart/form-data":
        return await _read_form(request)
    if media != "application/json":
        raise ApiError(415, f"Content-Type must be application/json or multipart/form-data; got "
                       f"{ctype or 'none'!r}", code="unsupported_media_type")
    data = await read_json(request)
    product_b64 = data.pop("product_b64", None)
    images_b64 = data.pop("images_b64", None)
    product = None if product_b64 is None else _b64("product_b64", product_b64, limits)
    if images_b64 is None:
        images_b64 = []
    if not isinstance(images_b64, list) or len(images_b64) > MAX_IMAGES:
        raise ApiError(422, f"images_b64 must be a list of at most {MAX_IMAGES} base64 images",
                       param="images_b64", code="invalid_value")
    images = [_b64(f"images_b64[{i}]", s, limits) for i, s in enumerate(images_b64)]
    return data, product, images


def _b64(param: str, value: Any, limits: LimitsSettings) -> Upload:
    if not isinstance(value, str):
        raise ApiError(422, f"{param} must be a string of base64 (or a data: URL); got "
                       f"{type(value).__name__}", param=param, code="invalid_value")
    try:
        return Upload(param, decode_b64(value, limits.max_upload_bytes))
    except InputError as e:
        # decode_b64's messages name remove.bg's field; say which field of ours it was
        message = e.message.replace("image_file_b64", param)
        raise ApiError(e.status, f"{param}: {message}" if param not in message else message,
                       param=param, code=e.code) from None


async def _read_form(request: Request) -> tuple[dict[str, Any], Upload | None, list[Upload]]:
    data: dict[str, Any] | None = None
    product: Upload | None = None
    images: list[Upload] = []
    try:
        async with request.form(max_files=1 + MAX_IMAGES, max_fields=len(_FORM_FIELDS)) as form:
            for name, value in form.multi_items():
                if name == "spec":
                    if data is not None:
                        raise ApiError(422, "send one 'spec' field", param="spec",
                                       code="invalid_value")
                    raw = await value.read() if isinstance(value, UploadFile) else value.encode()
                    data = _parse_spec(raw)
                elif name in ("product", "images"):
                    if not isinstance(value, UploadFile):
                        raise ApiError(422, f"{name!r} must be a file part holding the image's "
                                       "bytes, not a text field", param=name, code="invalid_value")
                    if name == "product" and product is not None:
                        raise ApiError(422, "send one 'product' file part; further images go in "
                                       "'images' parts", param="product", code="invalid_value")
                    up = Upload(name if name == "product" else f"images[{len(images)}]",
                                await value.read())
                    if name == "product":
                        product = up
                    else:
                        images.append(up)
                else:
                    raise ApiError(422, f"unknown form field {name!r}; allowed: "
                                   f"{', '.join(_FORM_FIELDS)}", param=name, code="unknown_field")
    except HTTPException as e:  # the multipart parser's refusals (too many parts, bad framing)
        raise ApiError(400, f"the multipart body could not be read: {e.detail}",
                       code="invalid_multipart") from None
    if data is None:
        raise ApiError(422, "a multipart render needs a 'spec' field holding the RenderSpec as "
                       'JSON, e.g. {"preset": "amazon"}', param="spec", code="missing_spec")
    return data, product, images


def _parse_spec(raw: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise ApiError(422, f"the 'spec' field is not valid JSON ({e}); send the RenderSpec as "
                       'a JSON object, e.g. {"preset": "amazon"}', param="spec",
                       code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(422, f"the 'spec' field must be a JSON object of RenderSpec fields; got a "
                       f"JSON {type(data).__name__}", param="spec", code="invalid_json")
    for name in ("product_b64", "images_b64"):
        if name in data:
            raise ApiError(422, f"{name} belongs in a JSON body; in multipart send the image as "
                           "a file part", param=name, code="invalid_value")
    return data


# -- checking before anything is queued -------------------------------------------------------


def _bind_product(spec: RenderSpec, product: Upload | None) -> RenderSpec:
    """The photo's hash becomes the spec's ``product_sha256`` (and so part of its cache key)."""
    if product is None:
        return spec
    sha = product.sha
    if spec.product_sha256 is not None and spec.product_sha256 != sha:
        raise ApiError(422, f"product_sha256 {spec.product_sha256} is not the SHA-256 of the "
                       f"photo sent ({sha}); leave product_sha256 out or send the matching "
                       "photo", param="product_sha256", code="product_mismatch")
    return spec.model_copy(update={"product_sha256": sha})


def _check_ops(spec: RenderSpec, engine: Any, presets: Any) -> tuple[list[Op], PresetRule | None]:
    try:
        ops = validate_ops(spec.ops)
        rule = get_preset(spec.preset, presets) if spec.preset is not None else None
    except UnknownPreset as e:
        raise ApiError(e.status, str(e), param="preset", code="unknown_preset") from None
    except OpsError as e:
        raise ApiError(e.status, str(e), param="ops", code="invalid_ops") from None
    if spec.product_sha256 is None:
        needing = [f"ops[{i}] ({op.op})" for i, op in enumerate(ops) if op.op in PRODUCT_OPS]
        if needing:
            raise ApiError(422, f"{', '.join(needing)} work on a product photo and none was "
                           f"given; {_SEND_PHOTO}", param="product", code="missing_product")
    for i, op in enumerate(ops):
        if isinstance(op, ComposeOp) and op.backdrop == "image" and op.image_sha256 is None:
            raise ApiError(422, f'ops[{i}] (compose): backdrop "image" needs image_sha256, the '
                           "hash of a backdrop sent as an 'images' part (or in images_b64)",
                           param=f"ops[{i}].image_sha256", code="invalid_ops")
        if isinstance(op, ComposeOp) and op.backdrop == "inpaint" and \
                getattr(engine, "run_inpaint", None) is None:
            raise ApiError(422, f'ops[{i}] (compose): backdrop "inpaint" needs an engine that '
                           f"can inpaint; this server runs {engine.name!r}. Use backdrop "
                           '"engine" or "color"', param=f"ops[{i}].backdrop", code="invalid_ops")
        if getattr(op, "inpaint_seams", False) and getattr(engine, "run_inpaint", None) is None:
            raise ApiError(422, f"ops[{i}] (onmodel): inpaint_seams needs an engine that can "
                           f"inpaint (diffusion); this server runs {engine.name!r}. Leave "
                           "inpaint_seams false", param=f"ops[{i}].inpaint_seams",
                           code="invalid_ops")
    return ops, rule


def _wanted_images(spec: RenderSpec, ops: Sequence[Op]) -> list[tuple[str, str]]:
    """(request field, sha) of every image the render needs."""
    out = [("product_sha256", spec.product_sha256)] if spec.product_sha256 else []
    for i, op in enumerate(ops):
        for name in _IMAGE_FIELDS:
            sha = getattr(op, name, None)
            if sha:
                out.append((f"ops[{i}].{name}", sha))
    return out


def _check_images(wanted: list[tuple[str, str]], sent: dict[str, Upload],
                  images: list[Upload]) -> None:
    named = {sha for _, sha in wanted}
    for up in images:
        if up.sha not in named:
            raise ApiError(422, f"{up.param} (sha256 {up.sha}) is not named by any op; name it "
                           "in image_sha256 / mask_sha256 / inside_sha256 / model_sha256 or "
                           "leave it out",
                           param=up.param, code="unused_image")


async def _cached(svc: Service, spec: RenderSpec, stages: telemetry.Stages) -> Rendered | None:
    """The render from the cache, looked up *before* the photos are decoded: a 12 MP JPEG
    takes ~150 ms to decode and a hit needs none of it. Same bytes, same hash, so a cached
    render of this hash was made from a photo that was decoded and checked then. A miss is
    looked up again by ``Service.render`` (a second cache look-up, no decode wasted)."""
    if not spec.cacheable:
        return None
    svc.check_accepting()
    norm, key = svc.normalise_and_key(spec)
    hit = await svc.lookup(key, stages)
    if hit is None:
        return None
    return Rendered(key, norm, hit[0], None, hit[1], stages.durations())


def _missing_error(missing: list[tuple[str, str]]) -> ApiError:
    """Images named by hash, not sent, and the render is not cached: say what to send."""
    param, sha = missing[0]
    if param == "product_sha256":
        how = _SEND_PHOTO
    else:
        how = "attach it as an 'images' file part (multipart) or in images_b64 (JSON)"
    return ApiError(422, f"{param}: no image with sha256 {sha} came with this request and its "
                    f"render is not cached; {how}", param=param, code="missing_image")


async def _hashed(product: Upload | None, images: list[Upload]
                  ) -> tuple[Upload | None, list[Upload]]:
    """The uploads with their SHA-256; big ones hashed in a thread (25 MB takes ~30 ms)."""
    ups = ([product] if product else []) + images

    def work() -> list[Upload]:
        return [Upload(u.param, u.data, sha256_hex(u.data)) for u in ups]

    done = await asyncio.to_thread(work) if sum(len(u.data) for u in ups) > 1 << 20 else work()
    return (done[0] if product else None), done[1 if product else 0:]


async def _checked(uploads: Any, limits: LimitsSettings) -> dict[str, PhotoFile]:
    """sha → the upload, checked by its header (format, dimensions, pixel count, decompression
    bomb: ``inputs.check_header``) but not decoded. Its pixels are decoded once, where the
    batch runs (an engine worker process decodes the file it is sent in any case; a second
    decode here cost ~16 ms at 2000²); a file whose data is truncated or corrupt is refused
    there, with the same 422 (``inputs.PhotoError``)."""
    out: dict[str, PhotoFile] = {}
    for u in uploads:
        try:
            out[u.sha] = check_header(u.data, limits, u.param)
        except InputError as e:
            raise ApiError(e.status, f"{u.param}: {e.message}", param=u.param,
                           code=e.code) from None
    return out


def _admits(accept: str | None, fmt: str) -> bool:
    """Does ``Accept`` allow ``fmt`` (a preset's format) at all? A marketplace preset names
    the format the marketplace wants, so it wins over a smaller one the viewer also takes."""
    ranges = negotiate.parse_accept(accept)
    if not ranges:
        return True
    names = [negotiate.MEDIA_TYPES[fmt]]
    if fmt in ("jpeg", "png"):  # every viewer decodes these; AVIF/WebP must be named outright
        names += ["image/jpg"] if fmt == "jpeg" else []
        names += ["image/*", "*/*"]
    q = next((ranges[n] for n in names if n in ranges), 0.0)
    return q > 0


# Plain Starlette routes: the body is parsed and validated here (to give OpenAI-shaped errors),
# so FastAPI's dependency layer would only add cost on the cache-hit path.
router.add_route("/v1/render", render, methods=["POST"])
