"""Helpers the route modules share: JSON in and out, who is calling, timing headers."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from swiftshot import telemetry
from swiftshot.api import auth
from swiftshot.api.errors import ApiError

if TYPE_CHECKING:
    from PIL import Image

    from swiftshot.config import LimitsSettings
    from swiftshot.service import Service

MAX_DEADLINE_MS = 3_600_000


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, headers=dict(headers or {}),
                    media_type="application/json")


def service(request: Request) -> Service:
    return request.app.state.service


async def read_json(request: Request) -> dict[str, Any]:
    """The body as a JSON object, or ApiError 415/400 saying what was sent instead."""
    ctype = request.headers.get("content-type", "")
    if ctype.split(";", 1)[0].strip().lower() != "application/json":
        raise ApiError(415, f"Content-Type must be application/json; got {ctype or 'none'!r}",
                       code="unsupported_media_type")
    body = await request.body()
    if not body.strip():
        raise ApiError(400, "the request body is empty; send a JSON object", code="invalid_json")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise ApiError(400, f"the request body is not valid JSON: {e}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"the request body must be a JSON object; got a JSON "
                       f"{type(data).__name__}", code="invalid_json")
    return data


def caller(request: Request, cost: float = 1.0) -> tuple[auth.Principal, str, float | None]:
    """(who, priority, deadline in seconds) of a generation request; spends rate-limit tokens."""
    a: auth.Auth = request.app.state.auth
    headers = request.headers
    who = a.authenticate(headers)
    prio = auth.priority(who, headers.get("x-priority"))
    request.state.priority = prio  # the middleware labels the request histogram with it
    deadline = deadline_s(headers.get("x-deadline-ms"))
    a.admit(who, cost)
    return who, prio, deadline


def deadline_s(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        ms = float(value)
    except ValueError:
        ms = -1.0
    if not 0 < ms <= MAX_DEADLINE_MS:
        raise ApiError(400, f"X-Deadline-Ms must be a number of milliseconds in "
                       f"(0, {MAX_DEADLINE_MS}]; got {value!r}", param="X-Deadline-Ms",
                       code="invalid_value")
    return ms / 1000.0


def base_url(request: Request) -> str:
    """Scheme and host of absolute URLs in answers: ``server.public_url``; else the ``Host``
    header only when it names one of ``server.trusted_hosts``; else the address the server
    was reached on. An arbitrary ``Host`` never makes it into an answer."""
    server_settings = request.app.state.settings.server
    if server_settings.public_url:
        return server_settings.public_url.rstrip("/")
    scope = request.scope
    scheme = scope.get("scheme", "http")
    host = request.headers.get("host")
    if host and _trusted_host(host, server_settings.trusted_hosts):
        return f"{scheme}://{host}"
    addr, port = scope.get("server") or ("127.0.0.1", 80)
    if ":" in addr:
        addr = f"[{addr}]"
    return f"{scheme}://{addr}:{port}"


_HOST_RE = re.compile(r"^(?P<name>[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(:[0-9]{1,5})?$")


def _trusted_host(host: str, trusted: list[str]) -> bool:
    m = _HOST_RE.match(host)
    if m is None:
        return False
    name = m["name"].strip("[]").lower()
    return any(name == t.strip("[]").lower() for t in trusted)


def timing_headers(cache: str, durations: dict[str, float]) -> dict[str, str]:
    return {"X-Cache": cache, "Server-Timing": telemetry.server_timing(durations)}


def finish(request: Request, name: str, stages_list: list[telemetry.Stages],
           attributes: Mapping[str, Any] | None = None) -> dict[str, float]:
    """Close the request's timing: per-stage durations (the slowest of parallel images), the
    total, metrics, and the spans if tracing is on."""
    durations: dict[str, float] = {}
    for st in stages_list:
        for stage, secs in st.durations().items():
            durations[stage] = max(secs, durations.get(stage, 0.0))
    first = stages_list[0]
    durations["total"] = first.total_s()
    telemetry.observe_stages(durations)
    tracing: telemetry.Tracing = request.app.state.tracing
    if tracing.enabled:
        merged = telemetry.Stages()
        merged.t0_ns, merged._epoch0_ns = first.t0_ns, first._epoch0_ns  # noqa: SLF001
        for st in stages_list:
            merged.spans.extend(st.spans)
            merged.remote.extend(st.remote)
        tracing.emit(name, merged, request.headers, attributes, end_ns=time.perf_counter_ns())
    return durations


def load_upload(data: bytes, limits: LimitsSettings, param: str) -> Image.Image:
    """``inputs.load_image`` with its refusal as the API's error, naming the request field.
    The image keeps its file's bytes (``info[SOURCE_INFO]``): an engine worker process is sent
    those, not the pixels (``runtime.executor.pack_product``).

    Blocking (it decodes): call it in a thread.
    """
    from swiftshot.inputs import InputError, load_image
    from swiftshot.runtime.executor import SOURCE_INFO

    try:
        image = load_image(data, limits)
    except InputError as e:
        raise ApiError(e.status, f"{param}: {e.message}", param=param, code=e.code) from None
    image.info[SOURCE_INFO] = bytes(data)
    return image
