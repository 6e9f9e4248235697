"""Every error leaves as OpenAI's JSON shape, with a 4xx for anything the caller got wrong.

``{"error": {"message": ..., "type": ..., "param": ..., "code": ...}}``; the message says what
was wrong and what is allowed. 5xx only for real internal failures, never with a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from swiftshot import telemetry
from swiftshot.engines import Cancelled, EngineConfigError, EngineError

log = logging.getLogger("swiftshot.api")

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "invalid_request_error", 405: "invalid_request_error", 406: "invalid_request_error",
          409: "invalid_request_error", 413: "invalid_request_error", 415: "invalid_request_error",
          422: "invalid_request_error", 429: "rate_limit_error", 499: "cancelled",
          502: "engine_error", 503: "service_unavailable", 504: "timeout"}


class ApiError(Exception):
    """Raised by routes: becomes the JSON error response."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 code: str | None = None, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = dict(headers or {})


MAX_MESSAGE = 600
"""Longest error message sent (characters). Messages quote what the caller sent; a name of any
length must not come back at any length (nor fill logs and proxies downstream)."""


def shown(value: object, limit: int = 80) -> str:
    """``repr(value)`` for an error message, cut to ``limit`` characters with the length said."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(text)
    return repr(text[:limit]) + f"… ({len(text)} characters)"


def bounded(message: str, limit: int = MAX_MESSAGE) -> str:
    """The message, or its head and tail around a cut when it is longer than ``limit`` (what
    was wrong comes first, what is allowed last: both stay)."""
    if len(message) <= limit:
        return message
    tail = limit // 3
    return f"{message[:limit - tail]} …[{len(message) - limit} characters cut]… {message[-tail:]}"


def error_response(status: int, message: str, *, param: str | None = None,
                   code: str | None = None, headers: Mapping[str, str] | None = None) -> Response:
    message = bounded(message)
    if param is not None:
        param = bounded(param, 120)
    body = {"error": {"message": message, "type": _TYPES.get(status, "server_error" if status >= 500
                                                             else "invalid_request_error"),
                      "param": param, "code": code}}
    return Response(orjson.dumps(body), status_code=status, headers=dict(headers or {}),
                     media_type="application/json")


def retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, int(seconds + 0.999)))}


def _loc(err: Mapping[str, Any]) -> str:
    return ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "__root__"))


def describe(errors: Iterable[Mapping[str, Any]], model: type[BaseModel] | None = None) -> tuple[str, str | None]:
    """(message, first param) from pydantic errors; unknown fields listed with the allowed ones."""
    parts: list[str] = []
    first: str | None = None
    for err in errors:
        loc = _loc(err)
        first = first or loc or None
        if err.get("type") == "extra_forbidden":
            allowed = ", ".join(sorted(model.model_fields)) if model is not None and "." not in loc else ""
            parts.append(f"unknown field {shown(loc)}" + (f" (allowed: {allowed})" if allowed else ""))
            continue
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts) or "invalid request", first


def from_validation(e: ValidationError, status: int = 400,
                    model: type[BaseModel] | None = None) -> ApiError:
    message, param = describe(e.errors(include_url=False), model)
    return ApiError(status, message, param=param, code="invalid_value")


def _rejected_response(exc: Any) -> Response:
    headers = retry_after(exc.retry_after_s) if getattr(exc, "retry_after_s", None) else {}
    return error_response(int(exc.status), str(getattr(exc, "message", None) or exc),
                          code=getattr(exc, "reason", None), headers=headers)


def response_for(exc: Exception) -> Response:
    """The JSON answer to an exception raised by a route (the same for every route)."""
    from swiftshot.runtime.worker import Rejected
    from swiftshot.service import Unavailable

    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.message, param=exc.param, code=exc.code,
                              headers=exc.headers)
    if isinstance(exc, Rejected):
        return _rejected_response(exc)  # the worker counts its own refusals
    if isinstance(exc, Unavailable):
        telemetry.REJECTED.labels(exc.reason).inc()
        return _rejected_response(exc)
    from swiftshot.ops import OpsError

    if isinstance(exc, OpsError):
        # An op that cannot run on the photo (an empty cutout ...). Routes with photos map it
        # themselves; this catches the rest (a batch sibling's failure reaching a generation).
        return error_response(getattr(exc, "status", 422), str(exc), param="ops",
                              code="invalid_ops")
    if isinstance(exc, EngineConfigError):
        return error_response(400, str(exc), param="model", code="unknown_model")
    if isinstance(exc, EngineError):
        log.warning("engine failure: %s", exc)
        return error_response(502, f"the image engine failed: {exc}", code="engine_error")
    if isinstance(exc, Cancelled):
        return error_response(499, "the request was cancelled", code="cancelled")
    log.error("internal error", exc_info=exc)
    return error_response(500, f"internal error ({type(exc).__name__}); it was logged",
                          code="internal_error")


def install(app: FastAPI) -> None:
    from swiftshot.runtime.worker import Rejected
    from swiftshot.service import Unavailable

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Response:
        message, param = describe(exc.errors())
        return error_response(422, message, param=param, code="invalid_value")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            message = f"no such route: {request.method} {shown(request.url.path, 120)}"
        elif exc.status_code == 405:
            allow = (exc.headers or {}).get("Allow", "")
            message = (f"method {request.method} is not allowed on {shown(request.url.path, 120)}; "
                       f"allowed: {allow}")
        else:
            message = str(exc.detail)
        return error_response(exc.status_code, message, headers=exc.headers)

    async def _mapped(_: Request, exc: Exception) -> Response:
        return response_for(exc)

    for cls in (ApiError, Rejected, Unavailable, EngineError, Cancelled, Exception):
        app.add_exception_handler(cls, _mapped)
