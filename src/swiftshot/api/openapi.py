"""The OpenAPI document (``GET /openapi.json``): every route the app serves, with request and
response schemas, examples and the error shape.

Most routes are plain Starlette routes (``router.add_route``) that parse their own body to give
OpenAI-shaped errors and to stay cheap on the cache-hit path, so FastAPI cannot see what they
take. Every route is documented by **one call in** ``api/openapi_routes.py``::

    oa.document("POST", "/v1/things", summary="Make a thing",
                body=oa.json_body(ThingRequest, example={...}),
                responses={200: oa.json_ok(ThingResponse, "the thing")},
                errors=(400, 404))

``document`` replaces whatever FastAPI generated for that method and path (decorated routes
included). Every operation gets the shared ``Error`` schema for its error statuses, plus the
statuses any route may answer (401 with auth on, 413/415 for bodies, 429, 503). A test
(tests/api/test_openapi.py) fails for any route registered on the app that is missing here or
documented without schemas, and schemathesis checks the live server against this document.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from starlette.routing import BaseRoute

_DOCS: dict[tuple[str, str], dict[str, Any]] = {}
_MODELS: dict[str, type[BaseModel]] = {}

HIDDEN = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
"""Framework routes that are not part of the API."""

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every error (OpenAI's shape): what was wrong and what is allowed.",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["message", "type", "param", "code"],
        "properties": {
            "message": {"type": "string", "maxLength": 1000},
            "type": {"type": "string", "example": "invalid_request_error"},
            "param": {"type": ["string", "null"]},
            "code": {"type": ["string", "null"]},
        },
    }},
    "example": {"error": {"message": "size must be WxH, e.g. 1024x1024; got '1024'",
                          "type": "invalid_request_error", "param": "size",
                          "code": "invalid_size"}},
}

_REASONS = {304: "Not modified (If-None-Match matched the ETag)", 400: "Bad request",
            401: "Missing or invalid API key (auth on)", 403: "Not allowed",
            404: "Not found", 405: "Method not allowed", 406: "Accept admits no format served",
            409: "Conflict", 413: "Body or image too large", 415: "Unsupported media type",
            422: "Invalid field or image", 429: "Rate limit or queue full (Retry-After)",
            499: "Cancelled", 502: "The engine failed",
            503: "Overloaded, warming up or draining (Retry-After)", 504: "Deadline passed",
            507: "The job store's disk is full: nothing was written (Retry-After)"}

COMMON_ERRORS = (401, 429, 503)
"""Statuses every API operation may answer."""
BODY_ERRORS = (413, 415)
"""... and every operation that takes a body."""


# -- helpers for route modules -----------------------------------------------------------------


def ref(model: type[BaseModel]) -> dict[str, Any]:
    """A ``$ref`` to ``model``'s schema (added to components when the document is built)."""
    _MODELS[model.__name__] = model
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _schema(s: type[BaseModel] | Mapping[str, Any]) -> dict[str, Any]:
    return ref(s) if isinstance(s, type) else dict(s)


def json_body(schema: type[BaseModel] | Mapping[str, Any], example: Any = None, *,
              required: bool = True, multipart: Mapping[str, Any] | None = None
              ) -> dict[str, Any]:
    """A request body: JSON (a model or a schema), and optionally a multipart/form-data shape."""
    content: dict[str, Any] = {"application/json": {"schema": _schema(schema)}}
    if example is not None:
        content["application/json"]["example"] = example
    if multipart is not None:
        content["multipart/form-data"] = {"schema": dict(multipart)}
    return {"required": required, "content": content}


def multipart(properties: Mapping[str, Any], required: Iterable[str] = ()) -> dict[str, Any]:
    """A multipart/form-data schema; a file part is ``FILE``."""
    out: dict[str, Any] = {"type": "object", "properties": dict(properties)}
    if required:
        out["required"] = list(required)
    return out


FILE = {"type": "string", "format": "binary"}


def json_ok(schema: type[BaseModel] | Mapping[str, Any], description: str,
            example: Any = None, headers: Mapping[str, Any] | None = None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": _schema(schema)}
    if example is not None:
        media["example"] = example
    out: dict[str, Any] = {"description": description, "content": {"application/json": media}}
    if headers:
        out["headers"] = dict(headers)
    return out


def binary_ok(media_types: Iterable[str], description: str,
              headers: Mapping[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description,
                           "content": {m: {"schema": FILE} for m in media_types}}
    if headers:
        out["headers"] = dict(headers)
    return out


def header(description: str, type_: str = "string") -> dict[str, Any]:
    return {"description": description, "schema": {"type": type_}}


def error(status: int, description: str | None = None,
          schema: Mapping[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description or _REASONS.get(status, "Error"),
                           "content": {"application/json": {
                               "schema": dict(schema) if schema else
                               {"$ref": "#/components/schemas/Error"}}}}
    if status in (429, 503, 507):
        out["headers"] = {"Retry-After": header("seconds to wait", "integer")}
    return out


def document(method: str, path: str, *, summary: str, description: str = "",
             body: Mapping[str, Any] | None = None,
             parameters: Iterable[Mapping[str, Any]] = (),
             responses: Mapping[int, Mapping[str, Any]],
             errors: Iterable[int] = (), common_errors: bool = True,
             error_schema: Mapping[str, Any] | None = None, tags: Iterable[str] = ()) -> None:
    """Document ``method path`` (called beside its ``router.add_route``; see the module doc).

    ``responses``: the success answers (status → ``json_ok`` / ``binary_ok`` / any OpenAPI
    response). ``errors``: the error statuses this route itself answers; the ones every route
    may answer are added unless ``common_errors`` is False. ``error_schema``: the body of errors
    when it is not the shared OpenAI shape (remove.bg's).
    """
    method = method.upper()
    statuses = set(errors)
    if common_errors:
        statuses |= set(COMMON_ERRORS)
        if body is not None:
            statuses |= set(BODY_ERRORS)
    resp: dict[str, Any] = {str(s): dict(r) for s, r in responses.items()}
    for s in sorted(statuses):
        resp.setdefault(str(s), error(s, schema=error_schema))
    op: dict[str, Any] = {"summary": summary, "responses": resp,
                          "operationId": _operation_id(method, path)}
    if description:
        op["description"] = description
    if tags:
        op["tags"] = list(tags)
    params = list(parameters) + [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
        for n in _path_names(path) if not any(p.get("name") == n for p in parameters)]
    if params:
        op["parameters"] = [dict(p) for p in params]
    if body is not None:
        op["requestBody"] = dict(body)
    _DOCS[(method, path)] = op


def _path_names(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/")
            if part.startswith("{") and part.endswith("}")]


def _operation_id(method: str, path: str) -> str:
    slug = "".join(c if c.isalnum() else "_" for c in path).strip("_") or "root"
    return f"{method.lower()}_{slug}"


# -- the document ------------------------------------------------------------------------------


def registered_routes(app: FastAPI) -> Iterator[tuple[str, str]]:
    """(METHOD, path) of every route the app serves (HEAD and framework routes left out)."""
    yield from _walk(app.routes)


def _walk(routes: Iterable[BaseRoute]) -> Iterator[tuple[str, str]]:
    for r in routes:
        inner = getattr(r, "original_router", None) or getattr(r, "app", None)
        sub = getattr(inner, "routes", None)
        path = getattr(r, "path", None)
        if sub is not None and not getattr(r, "methods", None):
            yield from _walk(sub)
            continue
        if path is None or path in HIDDEN:
            continue
        for m in sorted(getattr(r, "methods", None) or ()):
            if m != "HEAD":
                yield m, path


def build(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document with every documented route put in (cached on the app)."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, routes=app.routes,
                         description="swiftshot: latency-first image service for ecommerce "
                         "product imagery. Errors: the Error schema (OpenAI's shape), except "
                         "/v1.0/removebg (remove.bg's shape).")
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    paths = schema.setdefault("paths", {})
    for (method, path), op in _DOCS.items():
        paths.setdefault(path, {})[method.lower()] = op
    for model in list(_MODELS.values()):
        s = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in s.pop("$defs", {}).items():
            components.setdefault(name, sub)
        components[model.__name__] = s
    components["Error"] = ERROR_SCHEMA
    # FastAPI's own validation answer is ours (the Error shape, see errors.install)
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    for item in paths.values():
        for op in item.values():
            r422 = op.get("responses", {}).get("422")
            if r422 and "HTTPValidationError" in str(r422):
                op["responses"]["422"] = error(422)
    app.openapi_schema = schema
    return schema


def install(app: FastAPI) -> None:
    """Serve :func:`build`'s document at ``/openapi.json``."""
    import swiftshot.api.openapi_routes  # noqa: F401 - documents the built-in routes

    app.openapi = lambda: build(app)  # type: ignore[method-assign]
