"""Cache purges: one master with all its variants, or everything carrying a tag (admin keys)."""

from __future__ import annotations

import re

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from swiftshot.api.common import json_response, service
from swiftshot.api.errors import ApiError, shown

router = APIRouter()

KEY_RE = re.compile(r"^[0-9a-f]{64}$")
TAG_RE = re.compile(r"^[^\s/]{1,128}$")


def _admin(request: Request) -> None:
    a = request.app.state.auth
    client = request.client.host if request.client else None
    a.require_admin(a.authenticate(request.headers), client, request.headers)


@router.delete("/v1/cache/tags/{tag}")
async def purge_tag(request: Request, tag: str) -> Response:
    _admin(request)
    if not TAG_RE.match(tag):
        raise ApiError(400, f"tag must be 1-128 characters without spaces or '/'; got {shown(tag)}",
                       param="tag")
    n = await service(request).purge_tag(tag)
    return json_response({"tag": tag, "deleted": n})


@router.delete("/v1/cache/{key}")
async def purge_key(request: Request, key: str) -> Response:
    _admin(request)
    if not KEY_RE.match(key):
        raise ApiError(400, f"key must be 64 lower-case hex characters (a key returned by "
                       f"/v1/render); got {shown(key)}", param="key")
    n = await service(request).purge(key)
    if n == 0:
        raise ApiError(404, f"no cached image with key {key}", param="key", code="not_found")
    return json_response({"key": key, "deleted": n})
