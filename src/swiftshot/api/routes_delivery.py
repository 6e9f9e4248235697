"""``GET /i/{key}.{ext}`` and ``GET /i/{key}``: content-addressed, immutable image delivery.

The hot path of the service: a memory-tier hit is a dict probe and a response, no thread hop.
``ETag`` is a hash of the bytes (remembered per variant); ``If-None-Match`` → 304. Without an
extension the format is negotiated from ``Accept``; Client Hints (``Save-Data``, ``ECT``,
``Downlink``, ``DPR``, ``Width``) lower quality and width unless ``?q=`` / ``?w=`` fix them.
"""

from __future__ import annotations

import hashlib

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from swiftshot.api.errors import ApiError, error_response
from swiftshot.delivery import negotiate
from swiftshot.spec import MAX_SIDE

router = APIRouter()

EXTENSIONS = {"avif": "avif", "webp": "webp", "jpg": "jpeg", "jpeg": "jpeg", "png": "png"}
CONTENT_TYPES = negotiate.MEDIA_TYPES
IMMUTABLE = "public, max-age=31536000, immutable"
_HEX = frozenset("0123456789abcdef")
_ETAGS_MAX = 50_000


def _etag(request: Request, vkey: str, data: bytes) -> str:
    # Keyed by variant and checked by identity: the memory tier hands back the same bytes
    # object, so hashing (~0.1 ms for a 100 KB image) happens once per variant, not per hit.
    # Should a freed object's id be reused for the same variant key, the bytes are the same
    # anyway: a variant key fixes master, format, quality and width, and encoding is pure.
    etags: dict[str, tuple[int, str]] = request.app.state.etags
    found = etags.get(vkey)
    if found is not None and found[0] == id(data):
        return found[1]
    tag = '"' + hashlib.blake2b(data, digest_size=16).hexdigest() + '"'
    if len(etags) >= _ETAGS_MAX:
        etags.clear()
    etags[vkey] = (id(data), tag)
    return tag


def _int_param(request: Request, name: str, lo: int, hi: int) -> int | None:
    value = request.query_params.get(name)
    if value is None:
        return None
    try:
        v = int(value)
    except ValueError:
        v = lo - 1
    if not lo <= v <= hi:
        raise ApiError(400, f"{name} must be an integer between {lo} and {hi}; got {value!r}",
                       param=name, code="invalid_value")
    return v


def _not_found(key: str) -> Response:
    return error_response(404, f"no image with key {key!r}; keys come from POST /v1/render or "
                          "POST /v1/images/generations", param="key", code="not_found")


async def image(request: Request) -> Response:
    name: str = request.path_params["name"]
    key, dot, ext = name.partition(".")
    if len(key) != 64 or not _HEX.issuperset(key):
        return _not_found(key)
    headers = request.headers
    vary = []
    if dot:
        fmt = EXTENSIONS.get(ext.lower())
        if fmt is None:
            raise ApiError(404, f"unknown image extension {ext!r}; use one of avif, webp, jpg, "
                           "png, or none to negotiate from Accept", param="ext", code="not_found")
    else:
        fmt = negotiate.pick_format(headers.get("accept"))
        vary.append("Accept")
        if fmt is None:
            raise ApiError(406, f"Accept {headers.get('accept')!r} admits none of: "
                           f"{', '.join(CONTENT_TYPES.values())}", code="not_acceptable")
    quality = width = None
    if request.query_params:
        quality = _int_param(request, "q", 1, 100)
        width = _int_param(request, "w", 1, MAX_SIDE)
    svc = request.app.state.service
    hints = negotiate.parse_hints(headers)
    if quality is None or width is None:
        vary.append(negotiate.VARY_HINTS)
    if hints.any:
        if quality is None and fmt != "png":
            quality = negotiate.adapt_quality(svc.quality_for(fmt, None), hints)
        if width is None and hints.width is not None:
            meta = await svc.meta(key)
            if meta is not None:
                width = negotiate.adapt_width(meta.width, hints)
    data = await svc.variant(key, fmt, quality, width)
    if data is None:
        return _not_found(key)
    etag = _etag(request, f"{key}.{fmt}.{quality}.{width}", data)
    out = {"ETag": etag, "Cache-Control": IMMUTABLE, "Accept-CH": negotiate.ACCEPT_CH}
    if vary:
        out["Vary"] = ", ".join(vary)
    inm = headers.get("if-none-match")
    if inm is not None and (inm.strip() == "*" or etag in (t.strip().removeprefix("W/")
                                                           for t in inm.split(","))):
        return Response(status_code=304, headers=out)
    return Response(data, media_type=CONTENT_TYPES[fmt], headers=out)


# A plain Starlette route: FastAPI's parameter machinery costs more than this whole handler.
router.add_route("/i/{name}", image, methods=["GET", "HEAD"])
