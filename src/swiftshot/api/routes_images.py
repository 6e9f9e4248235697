"""``POST /v1/images/generations``: OpenAI's Images API, so the openai client works unchanged.

Mapping onto a RenderSpec: ``size`` → width/height (``auto`` → 1024x1024), ``quality``
(low/medium/high/hd; auto/standard → the format's default) or ``output_compression`` → lossy
quality, ``model`` → the engine this server runs. Extensions: ``seed``, ``negative_prompt``,
``steps``, ``guidance``, ``category``, ``tags``. ``n`` images run as parallel renders with seeds
``seed, seed+1 ...`` (the scheduler batches them into one engine call).

``response_format``: ``url`` (default; an immutable ``/i/{key}.{ext}`` URL, cheap to return
and to put behind a CDN) or ``b64_json`` (the default for model ``gpt-image-1``, as at OpenAI).

``stream: true`` (one image; ``partial_images`` 0..3) answers server-sent events as OpenAI does:
``image_generation.partial_image`` (the engine's real previews) then
``image_generation.completed`` (see :func:`openai_stream`; the edits route uses it too).
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from swiftshot import telemetry
from swiftshot.api import sse
from swiftshot.api.common import base_url, caller, finish, json_response, read_json, service
from swiftshot.api.errors import ApiError, from_validation
from swiftshot.spec import MAX_PROMPT_CHARS, SEED_MAX, RenderSpec, check_side, parse_size

router = APIRouter()

QUALITY = {"low": 50, "medium": 70, "high": 90, "hd": 95, "auto": None, "standard": None}
"""OpenAI's quality words → our lossy quality (None: the format's configured default)."""
OPENAI_ALIASES = ("gpt-image-1", "gpt-image-1-mini", "dall-e-2", "dall-e-3")
"""OpenAI model names accepted as "the engine this server runs", so existing code works."""
B64_DEFAULT_MODELS = ("gpt-image-1", "gpt-image-1-mini")


class ImagesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    model: str | None = None
    n: int | None = Field(1, ge=1)
    size: str | None = None
    response_format: Literal["url", "b64_json"] | None = None
    output_format: Literal["png", "jpeg", "jpg", "webp", "avif"] | None = None
    output_compression: int | None = Field(None, ge=0, le=100)
    quality: Literal["low", "medium", "high", "auto", "standard", "hd"] | None = None
    background: Literal["transparent", "opaque", "auto"] | None = None
    moderation: Literal["low", "auto"] | None = None
    style: Literal["vivid", "natural"] | None = None
    user: str | None = Field(None, max_length=256)
    stream: bool | None = None
    partial_images: int | None = Field(None, ge=0, le=3)
    # swiftshot extensions
    seed: int | None = Field(None, ge=-1, le=SEED_MAX)
    negative_prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    steps: int | None = Field(None, ge=1, le=100)
    guidance: float | None = Field(None, ge=0, le=30)
    category: str | None = None
    tags: list[str] | None = None


def models(request: Request) -> dict[str, tuple[str, str | None]]:
    """Model names this server answers to → (engine, model folder or None)."""
    cached = getattr(request.app.state, "models", None)
    if cached is not None:
        return cached
    svc = service(request)
    out: dict[str, tuple[str, str | None]] = {}
    for offer in svc.offered:  # the model registry; the first is the default
        configured = offer.model if offer.engine != "studio" else None
        for n in offer.names:
            out.setdefault(n, (offer.engine, configured))
    default = next(iter(out.values()))
    for alias in OPENAI_ALIASES:
        out.setdefault(alias, default)
    request.app.state.models = out
    return out


def to_spec(req: ImagesRequest, request: Request) -> tuple[RenderSpec, str]:
    """(spec of the first image, output format)."""
    limits = service(request).settings.limits
    if req.stream and (req.n or 1) > 1:
        raise ApiError(400, f"stream=true renders one image; got n={req.n}. Leave n out (or 1), "
                       "or send n requests", param="n", code="invalid_value")
    if req.n is not None and req.n > limits.max_n:
        raise ApiError(400, f"n must be between 1 and {limits.max_n}; got {req.n}", param="n",
                       code="invalid_value")
    known = models(request)
    engine, model = known.get(req.model or next(iter(known)), (None, None))
    if engine is None:
        raise ApiError(400, f"unknown model {req.model!r}; this server offers: "
                       f"{', '.join(known)}", param="model", code="model_not_found")
    fmt = {"jpg": "jpeg"}.get(req.output_format or "png", req.output_format or "png")
    quality = QUALITY[req.quality or "auto"]
    if req.output_compression is not None:
        if fmt == "png":
            raise ApiError(400, "output_compression applies to jpeg, webp and avif; "
                           "output_format is png", param="output_compression")
        quality = max(1, req.output_compression)
    if req.background == "transparent" and fmt not in ("png", "webp", "avif"):
        raise ApiError(400, f"background=transparent needs output_format png, webp or avif; "
                       f"got {fmt}", param="background")
    fields: dict[str, Any] = {"prompt": req.prompt, "engine": engine, "output_format": fmt}
    if req.size and req.size != "auto":
        try:
            w, h = parse_size(req.size)
            fields["width"], fields["height"] = check_side("width", w), check_side("height", h)
        except ValueError as e:
            raise ApiError(400, f"size {req.size!r}: {e}", param="size", code="invalid_size") from None
    for name in ("seed", "negative_prompt", "steps", "guidance", "category"):
        value = getattr(req, name)
        if value is not None:
            fields[name] = value
    if model:
        fields["model"] = model
    if quality is not None and fmt != "png":
        fields["quality"] = quality
    if req.tags:
        fields["tags"] = tuple(req.tags)
    try:
        return RenderSpec(**fields), fmt
    except ValidationError as e:
        raise from_validation(e, 400) from None


async def generations(request: Request) -> Response:
    stages0 = telemetry.Stages()
    request.app.state.auth.authenticate(request.headers)  # 401 before any word on the body
    data = await read_json(request)
    try:
        req = ImagesRequest.model_validate(data)
    except ValidationError as e:
        raise from_validation(e, 400, ImagesRequest) from None
    spec, fmt = to_spec(req, request)
    n = req.n or 1
    _, prio, deadline = caller(request, cost=n)
    if req.stream:
        return openai_stream(request, "image_generation", spec, fmt, prio, deadline,
                             req.partial_images or 0, req.quality, req.background)
    b64 = (req.response_format or ("b64_json" if req.model in B64_DEFAULT_MODELS else "url")) == "b64_json"
    specs = _seeded(spec, n)
    stages = [stages0] + [telemetry.Stages() for _ in range(n - 1)]
    if n == 1:
        items = [await _one(request, spec, stages0, prio, deadline, b64, fmt)]
    else:
        tasks = [asyncio.ensure_future(_one(request, s, st, prio, deadline, b64, fmt))
                 for s, st in zip(specs, stages, strict=True)]
        try:
            items = await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:  # one failed or the client left: the siblings' work is wanted no more
                t.cancel()
            raise
    caches = [c for _, c, _ in items]
    durations = finish(request, "POST /v1/images/generations", stages,
                       {"swiftshot.n": n, "swiftshot.cache": ",".join(caches)})
    body: dict[str, Any] = {
        "created": int(time.time()),
        "data": [d for d, _, _ in items],
        "output_format": fmt, "size": f"{spec.width}x{spec.height}",
        "quality": req.quality or "auto", "background": req.background or "auto",
    }
    headers = {"X-Cache": ", ".join(caches) if len(set(caches)) > 1 else caches[0],
               "Server-Timing": telemetry.server_timing(durations)}
    return json_response(body, headers=headers)


def _seeded(spec: RenderSpec, n: int) -> list[RenderSpec]:
    if n == 1:
        return [spec]
    if spec.seed == -1:
        return [spec] * n
    base = spec.normalized().seed if spec.seed is None else spec.seed
    return [spec.model_copy(update={"seed": (base + i) % (SEED_MAX + 1)}) for i in range(n)]


async def _one(request: Request, spec: RenderSpec, stages: telemetry.Stages, prio: str,
               deadline: float | None, b64: bool, fmt: str) -> tuple[dict[str, Any], str, str]:
    svc = service(request)
    r = await svc.render(spec, priority=prio, deadline_s=deadline, stages=stages)
    if b64:
        data = await svc.variant(r.key, fmt, spec.quality, image=r.image, master=r.master,
                                 made=True, stages=stages)
        if data is None:  # purged between render and encode: nothing to serve
            raise ApiError(409, "the image was purged while it was being encoded; retry")
        item: dict[str, Any] = {"b64_json": base64.b64encode(data).decode("ascii")}
    else:
        item = {"url": image_url(request, r.key, fmt, spec.quality)}
    if r.spec.prompt != spec.prompt:
        item["revised_prompt"] = r.spec.prompt
    return item, r.cache, r.key


EVENT_QUALITY = {"hd": "high", "standard": "auto"}
"""Our quality words → the ones OpenAI's stream events carry (low/medium/high/auto)."""
ZERO_USAGE = {"input_tokens": 0, "input_tokens_details": {"image_tokens": 0, "text_tokens": 0},
              "output_tokens": 0, "total_tokens": 0}
"""swiftshot meters no tokens; ``usage`` is sent (the client's type needs it) with zeros."""


def openai_stream(request: Request, prefix: str, spec: RenderSpec, fmt: str, prio: str,
                  deadline: float | None, partials: int, quality: str | None,
                  background: str | None, *, products: Any = None,
                  render: Any = None) -> sse.EventStream:
    """One image as OpenAI's stream: ``{prefix}.partial_image`` events (the engine's previews,
    ``partial_images`` of them), then ``{prefix}.completed`` with the image and ``usage``; an
    ``error`` event (``{"type": "error", "error": {...}}``, which the openai client raises as
    APIError) if it fails once streaming. ``render(listener)`` replaces the plain
    ``Service.render`` call (the edits route looks the cache up before decoding)."""
    svc = service(request)
    stages = telemetry.Stages()
    common = {"background": background or "auto", "quality": EVENT_QUALITY.get(quality or "auto",
                                                                               quality or "auto")}

    async def work(listener: Any) -> tuple[str, dict[str, Any]]:
        if render is not None:
            r = await render(listener, stages)
        else:
            r = await svc.render(spec, priority=prio, deadline_s=deadline, stages=stages,
                                 products=products, listener=listener)
        data = await svc.variant(r.key, fmt, spec.quality, image=r.image, master=r.master,
                                 made=True, stages=stages)
        if data is None:  # purged between render and encode
            raise ApiError(409, "the image was purged while it was being encoded; retry")
        finish(request, f"POST /v1/images/{'edits' if prefix == 'image_edit' else 'generations'}",
               [stages], {"swiftshot.cache": r.cache})
        if r.image is not None:
            w, h = r.image.size
        else:
            meta = await svc.meta(r.key)
            w, h = (meta.width, meta.height) if meta else (r.spec.width, r.spec.height)
        kind = f"{prefix}.completed"
        return kind, {"type": kind, "b64_json": base64.b64encode(data).decode("ascii"),
                      "created_at": int(time.time()), "output_format": fmt, "size": f"{w}x{h}",
                      **common, "usage": ZERO_USAGE}

    def partial(index: int, b64: str, out_fmt: str, size: str) -> tuple[str, dict[str, Any]]:
        kind = f"{prefix}.partial_image"
        return kind, {"type": kind, "b64_json": b64, "created_at": int(time.time()),
                      "output_format": out_fmt, "partial_image_index": index, "size": size,
                      **common}

    return sse.EventStream(work, partials=partials, preview_format=fmt, on_partial=partial,
                           on_error=lambda status, body: ("error", {"type": "error",
                                                                    "error": body["error"]}),
                           keepalive_s=svc.settings.server.sse_keepalive_s)


_EXT = {"png": "png", "jpeg": "jpg", "webp": "webp", "avif": "avif"}


def image_url(request: Request, key: str, fmt: str, quality: int | None) -> str:
    q = f"?q={quality}" if quality is not None and fmt != "png" else ""
    return f"{base_url(request)}/i/{key}.{_EXT[fmt]}{q}"


# Plain Starlette routes: the body is parsed and validated here (to give OpenAI-shaped errors),
# so FastAPI's dependency layer would only add cost on the cache-hit path.
router.add_route("/v1/images/generations", generations, methods=["POST"])
