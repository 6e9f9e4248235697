"""``POST /v1/render``: the native API. The body is a full RenderSpec; unknown fields → 422.

Answers JSON ``{key, url, urls, cache, timings, ...}``, or, when ``Accept`` prefers an image, the
image bytes themselves (format from ``output_format`` if the body names it, else negotiated).
"""

from __future__ import annotations

import hashlib

from fastapi import APIRouter
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from swiftshot import telemetry
from swiftshot.api.common import caller, finish, json_response, read_json, service
from swiftshot.api.errors import ApiError, from_validation
from swiftshot.api.routes_images import image_url
from swiftshot.delivery import negotiate
from swiftshot.spec import OUTPUT_FORMATS, RenderSpec

router = APIRouter()


async def render(request: Request) -> Response:
    stages = telemetry.Stages()
    request.app.state.auth.authenticate(request.headers)  # 401 before any word on the body
    data = await read_json(request)
    svc = service(request)
    if "engine" not in data:
        data["engine"] = svc.engine.name
    try:
        spec = RenderSpec.model_validate(data)
    except ValidationError as e:
        raise from_validation(e, 422, RenderSpec) from None
    if spec.engine != svc.engine.name:
        raise ApiError(422, f"engine {spec.engine!r} is not served here; this server runs "
                       f"{svc.engine.name!r}", param="engine", code="unknown_engine")
    _, prio, deadline = caller(request)
    accept = request.headers.get("accept")
    as_image = negotiate.wants_image(accept)
    fmt = spec.output_format
    quality, width = spec.quality, None
    vary = ""
    if as_image and "output_format" not in spec.model_fields_set:
        # decide before rendering: an unservable Accept should not cost a render
        if negotiate.pick_format(accept) is None:
            raise ApiError(406, f"Accept {accept!r} admits none of the formats served: "
                           f"{', '.join(negotiate.MEDIA_TYPES.values())}", code="not_acceptable")
    r = await svc.render(spec, priority=prio, deadline_s=deadline, stages=stages)
    if not as_image:
        durations = finish(request, "POST /v1/render", [stages], {"swiftshot.cache": r.cache})
        body = {
            "key": r.key,
            "url": image_url(request, r.key, fmt, quality),
            "urls": {f: image_url(request, r.key, f, None) for f in OUTPUT_FORMATS},
            "cache": r.cache,
            "width": r.spec.width, "height": r.spec.height, "seed": r.spec.seed,
            "timings": {k: round(v * 1000, 3) for k, v in durations.items()},
        }
        return json_response(body, headers={"X-Cache": r.cache,
                                            "Server-Timing": telemetry.server_timing(durations)})
    if "output_format" not in spec.model_fields_set:
        v = negotiate.negotiate(accept, request.headers, master_width=r.spec.width,
                                default_quality=svc.settings.delivery.quality)
        assert v is not None  # checked above
        fmt, width = v.fmt, v.width
        quality = spec.quality if spec.quality is not None else v.quality
        vary = "Accept, " + negotiate.VARY_HINTS
    data_bytes = await svc.variant(r.key, fmt, quality, width, image=r.image, master=r.master,
                                   stages=stages)
    if data_bytes is None:
        raise ApiError(409, "the image was purged while it was being encoded; retry")
    durations = finish(request, "POST /v1/render", [stages], {"swiftshot.cache": r.cache})
    from swiftshot.delivery.codecs import content_type

    headers = {"X-Cache": r.cache, "Server-Timing": telemetry.server_timing(durations),
               "ETag": '"' + hashlib.blake2b(data_bytes, digest_size=16).hexdigest() + '"',
               "Content-Location": image_url(request, r.key, fmt, quality)}
    if vary:
        headers["Vary"] = vary
    return Response(data_bytes, media_type=content_type(fmt), headers=headers)


# Plain Starlette routes: the body is parsed and validated here (to give OpenAI-shaped errors),
# so FastAPI's dependency layer would only add cost on the cache-hit path.
router.add_route("/v1/render", render, methods=["POST"])
