"""``POST /v1/prefetch`` and ``GET /v1/prefetch/{id}``: render a list of specs ahead of demand.

A catalog page or a seasonal campaign sent as ``{"specs": [RenderSpec, ...]}`` (at most
``prefetch.max_items``) is answered at once with 202 and a handle; the specs render at the
``prefetch`` priority (after every realtime, standard and batch request) through the normal
request path, so each lands in the cache and its likely variants follow when idle. The handle
reports each item: ``queued | rendering | done | cached | failed`` with its key or error.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from swiftshot.api.common import base_url, json_response, read_json, service
from swiftshot.api.errors import ApiError, describe
from swiftshot.spec import RenderSpec

router = APIRouter()


async def create(request: Request) -> Response:
    a = request.app.state.auth
    who = a.authenticate(request.headers)  # 401 before any word on the body
    svc = service(request)
    limit = svc.settings.prefetch.max_items
    data = await read_json(request)
    unknown = sorted(set(data) - {"specs"})
    if unknown:
        raise ApiError(422, f"unknown field {unknown[0]!r}; send {{\"specs\": [RenderSpec, ...]}}",
                       param=unknown[0], code="unknown_field")
    raw = data.get("specs")
    if not isinstance(raw, list) or not raw:
        raise ApiError(422, "specs must be a non-empty list of RenderSpec objects, e.g. "
                       '{"specs": [{"prompt": "oak table", "size": "1024x1024"}]}',
                       param="specs", code="invalid_value")
    if len(raw) > limit:
        raise ApiError(422, f"a prefetch holds at most {limit} specs (prefetch.max_items); got "
                       f"{len(raw)}. Split it into several requests", param="specs",
                       code="too_many_items")
    specs: list[RenderSpec] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise ApiError(422, f"specs[{i}] must be a RenderSpec object; got a JSON "
                           f"{type(item).__name__}", param=f"specs[{i}]", code="invalid_value")
        if "product_b64" in item or "images_b64" in item:
            raise ApiError(422, f"specs[{i}]: a prefetch carries no photos; render product "
                           "photos with POST /v1/render (their later requests are cache hits)",
                           param=f"specs[{i}]", code="invalid_value")
        item = {"engine": svc.engine.name, **item}
        try:
            spec = RenderSpec.model_validate(item)
        except ValidationError as e:
            message, param = describe(e.errors(include_url=False), RenderSpec)
            raise ApiError(422, f"specs[{i}]: {message}",
                           param=f"specs[{i}].{param}" if param else f"specs[{i}]",
                           code="invalid_value") from None
        if spec.engine != svc.engine.name:
            raise ApiError(422, f"specs[{i}]: engine {spec.engine!r} is not served here; this "
                           f"server runs {svc.engine.name!r}", param=f"specs[{i}].engine",
                           code="unknown_engine")
        _check(svc, spec, i)
        specs.append(spec)
    a.admit(who, 1.0)
    svc.check_accepting()
    job = svc.prefetcher.submit(specs)
    url = f"{base_url(request)}/v1/prefetch/{job.id}"
    body: dict[str, Any] = {**job.summary(), "url": url}
    return json_response(body, status=202, headers={"Location": url})


def _check(svc: Any, spec: RenderSpec, i: int) -> None:
    from swiftshot.api.routes_render import _check_ops

    try:
        _check_ops(spec, svc.engine, svc.settings.ops.presets)
    except ApiError as e:
        raise ApiError(e.status, f"specs[{i}]: {e.message}",
                       param=f"specs[{i}].{e.param}" if e.param else f"specs[{i}]",
                       code=e.code) from None


async def status(request: Request) -> Response:
    request.app.state.auth.authenticate(request.headers)
    job_id = request.path_params["job_id"]
    job = service(request).prefetcher.jobs.get(job_id)
    if job is None:
        raise ApiError(404, f"no prefetch with id {job_id[:40]!r} (handles are kept for the last "
                       "prefetch.max_jobs prefetches)", param="id", code="not_found")
    return json_response({**job.summary(), "url": f"{base_url(request)}/v1/prefetch/{job.id}"})


router.add_route("/v1/prefetch", create, methods=["POST"])
router.add_route("/v1/prefetch/{job_id}", status, methods=["GET"])
