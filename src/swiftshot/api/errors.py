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
from swiftshot.engines import EngineError
from swiftshot.errors import ServiceError

log = logging.getLogger("swiftshot.api")

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "invalid_request_error", 405: "invalid_request_error", 406: "invalid_request_error",
          409: "invalid_request_error", 413: "invalid_request_error", 415: "invalid_request_error",
          422: "invalid_request_error", 429: "rate_limit_error", 499: "cancelled",
          502: "engine_error", 503: "service_unavailable", 504: "timeout",
          507: "insufficient_storage"}


class ApiError(ServiceError):
    """Raised by routes: a ServiceError with extra response headers."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 code: str | None = None, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message, status=status, param=param)
        self.code = code  # type: ignore[assignment] - routes may leave it out (null in JSON)
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


def response_for(exc: Exception) -> Response:
    """The JSON answer to an exception raised by a route (the same for every route): any
    :class:`~swiftshot.errors.ServiceError` answers with its own status, code, message, param
    and Retry-After; anything else is an internal error (500, logged, no traceback sent)."""
    from swiftshot.service import Unavailable

    if isinstance(exc, ServiceError):
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.retry_after:
            headers.update(retry_after(exc.retry_after))
        if isinstance(exc, Unavailable):  # the scheduler and gate count their own refusals
            telemetry.REJECTED.labels(exc.code).inc()
        elif isinstance(exc, EngineError) and exc.status >= 500:
            log.warning("engine failure: %s", exc)
        message = exc.message
        if isinstance(exc, EngineError) and exc.status == 502:
            message = f"the image engine failed: {exc.message}"
        return error_response(exc.status, message, param=exc.param, code=exc.code,
                              headers=headers)
    log.error("internal error", exc_info=exc)
    return error_response(500, f"internal error ({type(exc).__name__}); it was logged",
                          code="internal_error")


def install(app: FastAPI) -> None:
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

    for cls in (ServiceError, Exception):
        app.add_exception_handler(cls, _mapped)
