"""``POST /v1.0/removebg``: remove.bg's API, served locally (existing remove.bg clients work).

Input: multipart/form-data, x-www-form-urlencoded or JSON with ``image_file`` (a file part),
``image_file_b64`` or ``image_url`` (refused unless its host is in
``limits.url_fetch_allowlist``). Options, as remove.bg names them:

* ``size``: preview/small/regular (0.25 MP), medium (1.5 MP), hd (4 MP), full/4k/auto (original)
* ``type``: auto, product, person, animal, car, ... (echoed in ``X-Type``; the segmenter is the
  same); ``format``: auto, png, jpg, webp, zip (zip = ``color.jpg`` + ``alpha.png``)
* ``bg_color`` (hex or name), ``bg_image_file``; ``add_shadow``
* ``crop`` (to the subject), ``crop_margin`` (px or %), ``scale`` (10%-100%), ``position``
  (original, center, or "X% Y%"), ``channels`` (rgba or alpha)

The answer is the image, with ``X-Width``, ``X-Height``, ``X-Type``, ``X-Credits-Charged`` and
``X-Foreground-Top/Left/Width/Height``; with ``Accept: application/json`` it is
``{"data": {"result_b64": ..., "foreground_top": ...}}``. Errors are remove.bg's shape,
``{"errors": [{"title": ..., "code": ..., "detail": ...}]}``, with a 4xx status.

The cutout is CPU-cheap (tens of milliseconds), so it runs here in a worker thread rather than
through the GPU queue; the event loop stays free.
"""

from __future__ import annotations

import asyncio
import base64
import io
import re
import zipfile
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import numpy as np
import orjson
from fastapi import APIRouter
from PIL import Image
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from swiftshot.api.errors import ApiError, bounded, retry_after
from swiftshot.inputs import InputError, decode_b64, load_image
from swiftshot.ops import OpsError
from swiftshot.runtime import memory
from swiftshot.runtime.worker import Rejected

router = APIRouter()

SIZES_MP = {"preview": 0.25, "small": 0.25, "regular": 0.25, "medium": 1.5, "hd": 4.0,
            "full": None, "4k": None, "auto": None}
TYPES = ("auto", "person", "product", "animal", "car", "transportation", "graphic", "other")
FORMATS = ("auto", "png", "jpg", "jpeg", "webp", "zip")
_PCT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")
_PX = re.compile(r"^\s*(\d+)\s*(px)?\s*$")


class RbgError(Exception):
    def __init__(self, status: int, title: str, code: str) -> None:
        super().__init__(title)
        self.status, self.title, self.code = status, title, code


def rbg_error(status: int, title: str, code: str,
              headers: dict[str, str] | None = None) -> Response:
    title = bounded(title)
    body = {"errors": [{"title": title, "code": code, "detail": title}]}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json",
                    headers=headers)


@dataclass(frozen=True)
class Options:
    size: str = "auto"
    type: str = "auto"
    format: str = "auto"
    bg_color: tuple[int, int, int] | None = None
    crop: bool = False
    crop_margin: tuple[float, bool] = (0.0, False)
    """(value, is_percent)"""
    scale: float | None = None
    position: tuple[float, float] | None = None
    channels: str = "rgba"
    add_shadow: bool = False


def _bool(name: str, v: Any) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("true", "1", "yes", "on"):
        return True
    if s in ("false", "0", "no", "off", ""):
        return False
    raise RbgError(400, f"{name} must be true or false; got {v!r}", "invalid_parameter")


def parse_options(f: dict[str, Any]) -> Options:
    from swiftshot.ops import parse_colour

    size = str(f.get("size", "auto")).lower()
    if size not in SIZES_MP:
        raise RbgError(400, f"size must be one of {', '.join(SIZES_MP)}; got {size!r}",
                       "invalid_parameter")
    typ = str(f.get("type", "auto")).lower()
    if typ not in TYPES:
        raise RbgError(400, f"type must be one of {', '.join(TYPES)}; got {typ!r}",
                       "invalid_parameter")
    fmt = str(f.get("format", "auto")).lower()
    if fmt not in FORMATS:
        raise RbgError(400, f"format must be one of auto, png, jpg, webp, zip; got {fmt!r}",
                       "invalid_parameter")
    channels = str(f.get("channels", "rgba")).lower()
    if channels not in ("rgba", "alpha"):
        raise RbgError(400, f"channels must be rgba or alpha; got {channels!r}", "invalid_parameter")
    bg = None
    if f.get("bg_color"):
        raw = str(f["bg_color"]).strip()
        try:
            bg = parse_colour(raw if not re.fullmatch(r"[0-9a-fA-F]{3}|[0-9a-fA-F]{6}", raw)
                              else "#" + raw)
        except ValueError as e:
            raise RbgError(400, f"bg_color: {e}", "invalid_parameter") from None
    margin = (0.0, False)
    if f.get("crop_margin") not in (None, ""):
        raw = str(f["crop_margin"])
        if (m := _PCT.match(raw)) and float(m.group(1)) <= 50:
            margin = (float(m.group(1)) / 100, True)
        elif (m := _PX.match(raw)) and int(m.group(1)) <= 500:
            margin = (float(m.group(1)), False)
        else:
            raise RbgError(400, f'crop_margin must be 0-500 px or 0-50% (e.g. "30px", "10%"); '
                                f"got {raw!r}", "invalid_parameter")
    scale = None
    if f.get("scale") not in (None, "", "original"):
        m = _PCT.match(str(f["scale"]))
        if not m or not 10 <= float(m.group(1)) <= 100:
            raise RbgError(400, f'scale must be "original" or 10%-100%; got {f["scale"]!r}',
                           "invalid_parameter")
        scale = float(m.group(1)) / 100
    position = None
    pos = str(f.get("position", "original")).strip().lower()
    if pos == "center":
        position = (0.5, 0.5)
    elif pos not in ("original", ""):
        parts = pos.split()
        ms = [_PCT.match(p) for p in parts]
        if len(parts) not in (1, 2) or not all(ms):
            raise RbgError(400, f'position must be "original", "center" or "X% Y%"; got {pos!r}',
                           "invalid_parameter")
        xs = [float(m.group(1)) / 100 for m in ms if m]
        position = (xs[0], xs[-1])
    return Options(size, typ, fmt, bg, _bool("crop", f.get("crop", False)), margin, scale,
                   position, channels, _bool("add_shadow", f.get("add_shadow", False)))


async def _fields(request: Request, max_bytes: int) -> dict[str, Any]:
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype == "application/json":
        body = await request.body()
        try:
            data = orjson.loads(body or b"null")
        except orjson.JSONDecodeError as e:
            raise RbgError(400, f"request body is not valid JSON: {e}", "invalid_json") from None
        if not isinstance(data, dict):
            raise RbgError(400, "request body must be a JSON object", "invalid_json")
        return data
    if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        try:
            form = await request.form(max_files=4, max_fields=64, max_part_size=max_bytes * 2)
        except HTTPException as e:  # starlette's multipart refusal, in remove.bg's error shape
            raise RbgError(e.status_code, f"the form could not be read: {e.detail}",
                           "invalid_form") from None
        return {k: v for k, v in form.multi_items()}
    raise RbgError(415, "send multipart/form-data, application/x-www-form-urlencoded or "
                        f"application/json; got {ctype or 'no Content-Type'!r}",
                   "unsupported_media_type")


async def _image_bytes(f: dict[str, Any], settings, name: str = "image") -> bytes | None:
    limits = settings.limits
    file = f.get(f"{name}_file")
    if isinstance(file, UploadFile):
        data = await file.read(limits.max_upload_bytes + 1)
        if len(data) > limits.max_upload_bytes:
            raise RbgError(413, f"{name}_file is larger than the {limits.max_upload_bytes} bytes "
                                "allowed", "file_too_large")
        return data
    if file not in (None, ""):
        raise RbgError(400, f"{name}_file must be a file part of a multipart request "
                            f"(or send {name}_file_b64)", "invalid_parameter")
    if f.get(f"{name}_file_b64"):
        return decode_b64(str(f[f"{name}_file_b64"]), limits.max_upload_bytes)
    url = f.get(f"{name}_url")
    if url:
        host = urlparse(str(url)).hostname or ""
        if host not in limits.url_fetch_allowlist:
            raise RbgError(400, f"{name}_url is not allowed from host {host!r}; upload the file "
                                f"({name}_file or {name}_file_b64) or ask the operator to add the "
                                "host to limits.url_fetch_allowlist", "url_not_allowed")
        return await _fetch(str(url), limits.max_upload_bytes)
    return None


async def _fetch(url: str, max_bytes: int) -> bytes:
    import httpx

    try:
        async with httpx.AsyncClient(timeout=10.0, follow_redirects=False) as client, \
                client.stream("GET", url) as r:
            if r.status_code != 200:
                raise RbgError(400, f"fetching image_url gave HTTP {r.status_code}",
                               "failed_to_download")
            buf = bytearray()
            async for chunk in r.aiter_bytes():
                buf += chunk
                if len(buf) > max_bytes:
                    raise RbgError(413, f"image_url is larger than {max_bytes} bytes",
                                   "file_too_large")
            return bytes(buf)
    except httpx.HTTPError as e:
        raise RbgError(400, f"fetching image_url failed: {e}", "failed_to_download") from None


# -- the image work (runs in a thread) -------------------------------------------------------

def _limit_size(image: Image.Image, size: str) -> Image.Image:
    mp = SIZES_MP[size]
    if mp is None or image.width * image.height <= mp * 1e6:
        return image
    s = (mp * 1e6 / (image.width * image.height)) ** 0.5
    return image.resize((max(1, int(image.width * s)), max(1, int(image.height * s))),
                        Image.Resampling.LANCZOS)


def _crop(rgba: Image.Image, margin: tuple[float, bool]) -> Image.Image:
    from swiftshot.ops.compose import alpha_bbox

    a = np.asarray(rgba.getchannel("A"), np.float32) / 255
    box = alpha_bbox(a, 0.1)
    if box is None:
        return rgba
    x0, y0, x1, y1 = box
    m = margin[0] * max(x1 - x0, y1 - y0) if margin[1] else margin[0]
    m = int(round(m))
    canvas = Image.new("RGBA", (x1 - x0 + 2 * m, y1 - y0 + 2 * m), (0, 0, 0, 0))
    canvas.paste(rgba.crop((x0, y0, x1, y1)), (m, m))
    return canvas


def _place(rgba: Image.Image, scale: float | None, position: tuple[float, float] | None
           ) -> Image.Image:
    from swiftshot.ops.compose import Placement, alpha_bbox, fit, split

    rgb, a = split(rgba)
    box = alpha_bbox(a, 0.1)
    if box is None:
        return rgba
    if scale is None:  # keep the size, move only
        bw, bh = box[2] - box[0], box[3] - box[1]
        scale = max(bw / rgba.width, bh / rgba.height)
    if position is None:
        position = ((box[0] + box[2]) / 2 / rgba.width, (box[1] + box[3]) / 2 / rgba.height)
    f = fit(rgb, a, rgba.size, Placement(scale, position))
    piece = np.dstack([f.rgb, (f.alpha * 255 + 0.5).astype(np.uint8)])
    out = Image.new("RGBA", rgba.size, (0, 0, 0, 0))
    out.paste(Image.fromarray(piece, "RGBA"), (f.x, f.y))
    return out


def _flatten(rgba: Image.Image, bg_color, bg_image: Image.Image | None, shadow: bool
             ) -> Image.Image:
    from swiftshot.ops.compose import apply_shadow, backdrop_array, blend, split
    from swiftshot.ops.shadows import ShadowParams

    rgb, a = split(rgba)
    bg = backdrop_array(bg_image if bg_image is not None else (bg_color or (255, 255, 255)),
                        rgba.size)
    if shadow:
        bg = apply_shadow(bg, a, ShadowParams())
    return Image.fromarray(blend(rgb, bg, a), "RGB")


@dataclass
class Result:
    body: bytes
    media_type: str
    width: int
    height: int
    fg: tuple[int, int, int, int]
    """top, left, width, height of the foreground."""
    confidence: str | None = None
    """``X-Cutout-Confidence``: the cutout's confidence and its level ("0.93; high")."""


def process(data: bytes, bg_data: bytes | None, opts: Options, settings) -> Result:
    from swiftshot import pipeline
    from swiftshot.delivery.codecs import encode
    from swiftshot.ops.compose import alpha_bbox
    from swiftshot.ops.cutout import confidence_header, cutout

    image = _limit_size(load_image(data, settings.limits), opts.size)
    bg_image = load_image(bg_data, settings.limits) if bg_data else None
    rgba = cutout(image, pipeline.segmenter_for(None))
    conf = confidence_header(rgba)
    alpha = np.asarray(rgba.getchannel("A"), np.float32) / 255
    if alpha_bbox(alpha, 0.5) is None:
        raise RbgError(400, "could not identify a foreground in the image", "unknown_foreground")
    if opts.crop:
        rgba = _crop(rgba, opts.crop_margin)
    if opts.scale is not None or opts.position is not None:
        rgba = _place(rgba, opts.scale, opts.position)
    a = np.asarray(rgba.getchannel("A"), np.float32) / 255
    box = alpha_bbox(a, 0.5) or (0, 0, 0, 0)
    fg = (box[1], box[0], box[2] - box[0], box[3] - box[1])
    w, h = rgba.size
    flat = opts.bg_color is not None or bg_image is not None
    fmt = opts.format
    if fmt == "auto":
        fmt = "jpg" if flat else "png"
    if opts.channels == "alpha":
        body = encode(rgba.getchannel("A").convert("RGB"), "png", settings=settings.delivery)
        return Result(body, "image/png", w, h, fg, conf)
    if fmt == "zip":
        color = _flatten(rgba, opts.bg_color, bg_image, opts.add_shadow) if flat else \
            rgba.convert("RGB")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
            z.writestr("color.jpg", encode(color, "jpeg", 90, settings=settings.delivery))
            z.writestr("alpha.png", encode(rgba.getchannel("A").convert("RGB"), "png",
                                           settings=settings.delivery))
        return Result(buf.getvalue(), "application/zip", w, h, fg, conf)
    out = _flatten(rgba, opts.bg_color, bg_image, opts.add_shadow) if flat else rgba
    if fmt in ("jpg", "jpeg"):
        return Result(encode(out, "jpeg", 90, settings=settings.delivery), "image/jpeg", w, h, fg, conf)
    if fmt == "webp":
        return Result(encode(out, "webp", 90, settings=settings.delivery), "image/webp", w, h, fg, conf)
    return Result(encode(out, "png", settings=settings.delivery), "image/png", w, h, fg, conf)


def process_tagged(data: bytes, bg_data: bytes | None, opts: Options) -> tuple[Any, ...]:
    """:func:`process` in a CPU process (runtime/offload.py), with the server's settings; its
    4xx errors come back as tuples (these exception classes do not pickle)."""
    from swiftshot.runtime.offload import child_settings

    try:
        return ("ok", process(data, bg_data, opts, child_settings()))
    except RbgError as e:
        return ("rbg", e.status, e.title, e.code)
    except InputError as e:
        return ("input", e.status, e.message, e.code)
    except OpsError as e:
        return ("ops", str(e), e.status)


def _untag(out: tuple[Any, ...]) -> Result:
    kind, *rest = out
    if kind == "ok":
        return rest[0]
    if kind == "rbg":
        raise RbgError(*rest)
    if kind == "input":
        raise InputError(*rest)
    raise OpsError(rest[0], rest[1])


async def removebg(request: Request) -> Response:
    settings = request.app.state.settings
    svc = request.app.state.service
    try:
        try:
            from swiftshot.api.common import caller

            _, prio, deadline = caller(request)
        except ApiError as e:
            raise RbgError(e.status, e.message, e.code or "auth_failed") from None
        fields = await _fields(request, settings.limits.max_upload_bytes)
        opts = parse_options(fields)
        data = await _image_bytes(fields, settings, "image")
        if data is None:
            raise RbgError(400, "no image given: send image_file, image_file_b64 or image_url",
                           "missing_source")
        bg_data = await _image_bytes(fields, settings, "bg_image")


        async def work() -> Result:
            # The place is held until the thread is done, even after a caller past its
            # deadline has been answered: the cores are busy until then.
            with svc.gate.hold(prio):
                photos = [data] if bg_data is None else [data, bg_data]
                async with memory.admit_photos(photos, settings.limits, deadline):
                    if svc.cpu.enabled:  # a process of its own, off the front's GIL
                        return _untag(await svc.cpu.run(process_tagged, data, bg_data, opts))
                    return await asyncio.to_thread(process, data, bg_data, opts, settings)

        result = await svc.by_deadline(work(), prio, deadline)
    except (Rejected, memory.MemoryBusy) as e:
        return rbg_error(e.status, e.message, e.reason, retry_after(e.retry_after_s))
    except RbgError as e:
        return rbg_error(e.status, e.title, e.code)
    except InputError as e:
        return rbg_error(e.status, e.message, e.code)
    except OpsError as e:
        return rbg_error(e.status, str(e), "invalid_parameter")
    headers = {"X-Width": str(result.width), "X-Height": str(result.height),
               "X-Type": "product" if opts.type == "auto" else opts.type,
               "X-Credits-Charged": "0",
               "X-Foreground-Top": str(result.fg[0]), "X-Foreground-Left": str(result.fg[1]),
               "X-Foreground-Width": str(result.fg[2]), "X-Foreground-Height": str(result.fg[3])}
    if result.confidence is not None:
        headers["X-Cutout-Confidence"] = result.confidence
    if "application/json" in request.headers.get("accept", ""):
        data = {"data": {"result_b64": base64.b64encode(result.body).decode(),
                         "foreground_top": result.fg[0], "foreground_left": result.fg[1],
                         "foreground_width": result.fg[2], "foreground_height": result.fg[3]}}
        return Response(orjson.dumps(data), media_type="application/json", headers=headers)
    return Response(result.body, media_type=result.media_type, headers=headers)


router.add_route("/v1.0/removebg", removebg, methods=["POST"])
