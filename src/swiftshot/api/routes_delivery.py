"""``GET /i/{key}.{ext}`` and ``GET /i/{key}``: content-addressed, immutable image delivery.

The hot path of the service: a memory-tier hit is a dict probe and a response, no thread hop.
``ETag`` is a hash of the bytes (remembered per variant); ``If-None-Match`` → 304. Without an
extension the format is negotiated from ``Accept``; Client Hints (``Save-Data``, ``ECT``,
``Downlink``, ``DPR``, ``Width``) lower quality and width unless ``?q=`` / ``?w=`` fix them.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from swiftshot.api.errors import ApiError, error_response, response_for, shown
from swiftshot.delivery import negotiate
from swiftshot.prefetch import Profile
from swiftshot.runtime.worker import Rejected
from swiftshot.spec import MAX_SIDE

router = APIRouter()
log = logging.getLogger("swiftshot.api")

EXTENSIONS = {"avif": "avif", "webp": "webp", "jpg": "jpeg", "jpeg": "jpeg", "png": "png"}
CONTENT_TYPES = negotiate.MEDIA_TYPES
IMMUTABLE = "public, max-age=31536000, immutable"
_HEX = frozenset("0123456789abcdef")
_ETAGS_MAX = 50_000


def _etag(etags: dict[str, tuple[int, str]], vkey: str, data: bytes) -> str:
    # Keyed by variant and checked by identity: the memory tier hands back the same bytes
    # object, so hashing (~0.1 ms for a 100 KB image) happens once per variant, not per hit.
    # Should a freed object's id be reused for the same variant key, the bytes are the same
    # anyway: a variant key fixes master, format, quality and width, and encoding is pure.
    found = etags.get(vkey)
    if found is not None and found[0] == id(data):
        return found[1]
    tag = '"' + hashlib.blake2b(data, digest_size=16).hexdigest() + '"'
    if len(etags) >= _ETAGS_MAX:
        etags.clear()
    etags[vkey] = (id(data), tag)
    return tag


def _int_param(query: Mapping[str, str], name: str, lo: int, hi: int) -> int | None:
    value = query.get(name)
    if value is None:
        return None
    try:
        v = int(value)
    except ValueError:
        v = lo - 1
    if not lo <= v <= hi:
        raise ApiError(400, f"{name} must be an integer between {lo} and {hi}; got {shown(value, 16)}",
                       param=name, code="invalid_value")
    return v


def _not_found(key: str) -> Response:
    return error_response(404, f"no image with key {shown(key)}; keys come from POST /v1/render or "
                          "POST /v1/images/generations", param="key", code="not_found")


class _Out:
    """What one /i/ request answers, independent of the framework that sends it."""

    __slots__ = ("status", "headers", "body", "media_type")

    def __init__(self, status: int, headers: dict[str, str], body: bytes = b"",
                 media_type: str | None = None) -> None:
        self.status, self.headers, self.body, self.media_type = status, headers, body, media_type


def _is_key(key: str) -> bool:
    return len(key) == 64 and _HEX.issuperset(key)


def _ask(dot: str, ext: str, headers: Mapping[str, str], query: Mapping[str, str]
         ) -> tuple[str, int | None, int | None, list[str], negotiate.ClientHints]:
    """What a request for one key asks: (format, ``q``, ``w``, Vary, Client Hints), from the
    extension (``dot`` empty: none given), headers (lower-case names) and query. Raises
    :class:`ApiError` (404, 406, 400) for what cannot be served, in that order."""
    vary = []
    if dot:
        fmt = EXTENSIONS.get(ext.lower())
        if fmt is None:
            raise ApiError(404, f"unknown image extension {shown(ext, 16)}; use one of avif, webp, jpg, "
                           "png, or none to negotiate from Accept", param="ext", code="not_found")
    else:
        fmt = negotiate.pick_format(headers.get("accept"))
        vary.append("Accept")
        if fmt is None:
            raise ApiError(406, f"Accept {shown(headers.get('accept'))} admits none of: "
                           f"{', '.join(CONTENT_TYPES.values())}", code="not_acceptable")
    quality = width = None
    if query:
        quality = _int_param(query, "q", 1, 100)
        width = _int_param(query, "w", 1, MAX_SIDE)
    if quality is None or width is None:
        vary.append(negotiate.VARY_HINTS)
    return fmt, quality, width, vary, negotiate.parse_hints(headers)


def _found(state: Any, key: str, fmt: str, quality: int | None, width: int | None,
           vary: list[str], data: bytes, source: str, if_none_match: str | None) -> _Out:
    """The answer once the variant's bytes are in hand: 200, or 304 when ``If-None-Match``
    names its ETag."""
    etag = _etag(state.etags, f"{key}.{fmt}.{quality}.{width}", data)
    return _answer(etag, fmt, vary, data, source, _not_modified(etag, if_none_match))


def _not_modified(etag: str, inm: str | None) -> bool:
    return inm is not None and (inm.strip() == "*" or etag in (t.strip().removeprefix("W/")
                                                               for t in inm.split(",")))


def _answer(etag: str, fmt: str, vary: list[str], data: bytes, source: str,
            not_modified: bool) -> _Out:
    out = {"etag": etag, "cache-control": IMMUTABLE, "accept-ch": negotiate.ACCEPT_CH,
           "x-cache": source}
    if vary:
        out["vary"] = ", ".join(vary)
    if not_modified:
        return _Out(304, out)
    return _Out(200, out, data, CONTENT_TYPES[fmt])


_RAW_HEADERS: dict[tuple[str, str, str, tuple[str, ...], bool], list[tuple[bytes, bytes]]] = {}


def _found_raw(state: Any, key: str, fmt: str, quality: int | None, width: int | None,
               vary: list[str], data: bytes, source: str, if_none_match: str | None
               ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """``_found`` as ASGI parts, its encoded headers built once per (ETag, …): the ETag is the
    bytes' hash, so it fixes their length; everything else in the headers is in the memo key."""
    etag = _etag(state.etags, f"{key}.{fmt}.{quality}.{width}", data)
    not_modified = _not_modified(etag, if_none_match)
    memo = (etag, fmt, source, tuple(vary), not_modified)
    raw = _RAW_HEADERS.get(memo)
    if raw is None:
        if len(_RAW_HEADERS) >= _ETAGS_MAX:
            _RAW_HEADERS.clear()
        raw = _RAW_HEADERS[memo] = asgi_parts(_answer(etag, fmt, vary, data, source,
                                                      not_modified))[1]
    return (304, raw, b"") if not_modified else (200, raw, data)


async def resolve(state: Any, name: str, headers: Mapping[str, str],
                  query: Mapping[str, str]) -> _Out | Response:
    """The answer to ``GET /i/{name}`` (headers: lower-case names)."""
    key, dot, ext = name.partition(".")
    if not _is_key(key):
        return _not_found(key)
    fmt, quality, width, vary, hints = _ask(dot, ext, headers, query)
    svc = state.service
    svc.prefetcher.observe(Profile(fmt, quality, width, hints))  # what the shop's clients ask
    if hints.any:
        if quality is None and fmt != "png":
            quality = negotiate.adapt_quality(svc.quality_for(fmt, None), hints)
        if width is None and hints.width is not None:
            meta = await svc.meta(key)
            if meta is not None:
                width = negotiate.adapt_width(meta.width, hints)
    outcome: list[str] = []
    data = await svc.variant(key, fmt, quality, width, outcome=outcome)
    if data is None:
        return _not_found(key)
    return _found(state, key, fmt, quality, width, vary, data,
                  outcome[0] if outcome else "memory", headers.get("if-none-match"))


def memory_hit(state: Any, scope: Any) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
    """``resolve``'s answer (status, raw headers, body) to a ``GET``/``HEAD /i/...`` scope when
    it is a plain hit of the
    in-process cache tier, computed without awaiting, with the same side effects (prefetch
    profile, popularity count, cache metrics). None, with no side effect, for anything else —
    a malformed key or parameter (the 4xx answers), a miss of the memory tier, a ``Width`` hint
    that needs the master's size — which the full app then answers as ``resolve`` does.
    Used by the serving fast path (api/fast_path.py)."""
    key, dot, ext = scope["path"][3:].partition(".")
    if not _is_key(key):
        return None
    headers = _wanted_headers(scope)
    qs = scope.get("query_string")
    query = dict(parse_qsl(qs.decode("latin-1"))) if qs else {}
    try:
        fmt, quality, width, vary, hints = _ask(dot, ext, headers, query)
    except ApiError:
        return None
    svc = state.service
    q, w = quality, width
    if hints.any:
        if width is None and hints.width is not None:
            return None  # the master's size first: an await on the cache, the full path's job
        if quality is None and fmt != "png":
            q = negotiate.adapt_quality(svc.quality_for(fmt, None), hints)
    hit = svc.variant_in_memory(key, fmt, q, w)
    if hit is None:
        return None
    svc.prefetcher.observe(Profile(fmt, quality, width, hints))
    return _found_raw(state, key, fmt, q, w, vary, hit[0], hit[1], headers.get("if-none-match"))


async def image(request: Request) -> Response:
    """The Starlette route (for the OpenAPI listing and for apps built without the fast path)."""
    out = await resolve(request.app.state, request.path_params["name"], request.headers,
                        request.query_params)
    if isinstance(out, Response):
        return out
    return Response(out.body, status_code=out.status, headers=out.headers,
                    media_type=out.media_type)


_WANTED = frozenset({b"accept", b"if-none-match", *(h.encode() for h in negotiate.HINT_HEADERS)})


def _wanted_headers(scope: Any) -> dict[str, str]:
    """The request headers ``resolve`` reads, lower-case names, from an ASGI scope."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k in _WANTED}


def asgi_parts(out: _Out | Response) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """(status, raw headers, body) of an answer, as sent in ASGI messages."""
    if isinstance(out, Response):
        return out.status_code, out.raw_headers, out.body
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in out.headers.items()]
    if out.media_type is not None:
        raw.append((b"content-type", out.media_type.encode("latin-1")))
    if out.status != 304:
        raw.append((b"content-length", str(len(out.body)).encode("latin-1")))
    return out.status, raw, out.body


def fast_asgi(state: Any) -> Callable[[Any, Any, Any], Awaitable[None]]:
    """``GET /i/...`` as bare ASGI, called by the service middleware ahead of the framework:
    a memory hit then skips routing, dependency and exception layers altogether."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = _wanted_headers(scope)
        qs = scope.get("query_string", b"")
        query = dict(parse_qsl(qs.decode("latin-1"))) if qs else {}
        try:
            out = await resolve(state, scope["path"][3:], headers, query)
        except ApiError as e:
            out = error_response(e.status, e.message, param=e.param, code=e.code,
                                 headers=e.headers)
        except Rejected as e:  # the work gate was full for an encode: 503 with Retry-After
            out = response_for(e)
        except Exception as e:  # noqa: BLE001 - the same answer the app's handler would give
            log.exception("internal error on %s", scope["path"])
            out = error_response(500, f"internal error ({type(e).__name__}); it was logged",
                                 code="internal_error")
        status, raw, body = asgi_parts(out)
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    return app


# A plain Starlette route: FastAPI's parameter machinery costs more than this whole handler.
router.add_route("/i/{name}", image, methods=["GET", "HEAD"])
