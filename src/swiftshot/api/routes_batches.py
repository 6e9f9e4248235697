"""Batch jobs over HTTP: ``POST /v1/batches`` (202 once committed) and ``GET /v1/batches/{id}``.

Two request shapes:

* JSON: ``{"items": [RenderSpec-like objects], "webhook_url"?, "preset"?, "defaults"?}``;
* multipart: product photos as file parts plus an optional ``json`` field holding the document
  above, in which an item names its photo with ``"product_file": "<part or file name>"``. With
  no ``items`` every file becomes one item (``preset`` / ``webhook_url`` may be form fields).

Every item is validated before anything is stored, and errors name the item's index and field.
The 202 is sent only after the job, its items and its photos are committed to SQLite. A client
that may retry sends ``Idempotency-Key``: the same key (per tenant) answers with the first job.
"""

from __future__ import annotations

import asyncio
import errno
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.responses import Response

from swiftshot.api.common import base_url
from swiftshot.api.errors import ApiError, describe, retry_after, shown
from swiftshot.runtime import webhooks
from swiftshot.runtime.jobs import JobRunner, job_to_dict
from swiftshot.spec import RenderSpec
from swiftshot.store.jobs import NewItem

_TOP_FIELDS = ("items", "webhook_url", "preset", "defaults")
_ITEM_EXTRA = ("product_file",)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the job runner with the server (after the app's own start-up made the Service)."""
    runner: JobRunner | None = getattr(app.state, "jobs", None)
    if runner is None:
        runner = JobRunner.from_settings(app.state.settings, app.state.service)
        app.state.jobs = runner
    if runner.cfg.enabled:
        await runner.start()
    try:
        yield
    finally:
        await runner.stop()


router = APIRouter(lifespan=lifespan)


def _runner(request: Request) -> JobRunner:
    runner = getattr(request.app.state, "jobs", None)
    if runner is None:  # pragma: no cover - the lifespan always sets it
        raise ApiError(503, "batch jobs are not available on this server", code="jobs_disabled")
    return runner


def _tenant(request: Request, *, spend: bool) -> str:
    auth = getattr(request.app.state, "auth", None)
    if auth is None:
        return "anonymous"
    who = auth.authenticate(request.headers)
    if spend:  # polling a batch's status must not eat the tenant's rate
        auth.admit(who)
    return str(who.tenant)


@router.post("/v1/batches", status_code=202)
async def create_batch(request: Request) -> Response:
    tenant = _tenant(request, spend=True)
    runner = _runner(request)
    settings = runner.settings
    idem = request.headers.get("idempotency-key")
    if idem is not None and not 1 <= len(idem) <= 255:
        raise ApiError(422, "Idempotency-Key must be 1 to 255 characters", param="Idempotency-Key",
                       code="invalid_value")
    doc, files = await _read(request)
    items_raw = _items(doc, files, settings.limits.max_batch_items)
    specs, refs = _validate(items_raw, doc, files)
    _check_presets(specs, settings)
    webhook_url = doc.get("webhook_url")
    if webhook_url is not None:
        try:
            webhook_url = await asyncio.to_thread(
                webhooks.check_url, webhook_url,
                allow_private=settings.jobs.webhook_allow_private)
        except webhooks.WebhookURLError as e:
            raise ApiError(422, str(e), param="webhook_url", code="invalid_webhook_url") from None
    blobs = await _load_photos(files, refs, settings)
    new_items = []
    for spec, ref in zip(specs, refs, strict=True):
        sha = blobs[ref][0] if ref is not None else spec.product_sha256
        if ref is not None:
            spec = spec.model_copy(update={"product_sha256": sha})
        new_items.append(NewItem(spec.model_dump_json(exclude_defaults=True), sha))
    known = {sha: data for sha, data in blobs.values()}
    missing = [i for i, it in enumerate(new_items)
               if it.product_sha256 and it.product_sha256 not in known
               and await asyncio.to_thread(runner.store.blob, it.product_sha256) is None]
    if missing:
        i = missing[0]
        raise ApiError(422, f"items[{i}].product_sha256: no photo with this hash is stored; attach "
                            "the photo as a file part and name it with product_file",
                       param=f"items[{i}].product_sha256", code="unknown_product")
    try:
        job_id = await asyncio.to_thread(runner.store.create_job, new_items, tenant=tenant,
                                         webhook_url=webhook_url, preset=doc.get("preset"),
                                         blobs=known, idempotency_key=idem)
    except (sqlite3.OperationalError, OSError) as e:
        if not _disk_full(e):
            raise
        # The transaction rolled back: nothing of this job was written.
        raise ApiError(507, f"the job store's disk is full ({e}); the batch was not accepted "
                            "and nothing of it was written; retry later",
                       code="storage_full", headers=retry_after(30)) from None
    except KeyError:  # a stored photo was dropped (its last job ended) since the check above
        raise ApiError(422, "a product_sha256 names a photo that is no longer stored; attach "
                            "the photo as a file part", param="items",
                       code="unknown_product") from None
    runner.notify()
    url = f"/v1/batches/{job_id}"
    status, total = "queued", len(new_items)
    if idem is not None:  # maybe a replay: answer with the first job's state
        view = await asyncio.to_thread(runner.store.get_job, job_id)
        if view is not None:
            status, total = view.status, view.total
    body = {"id": job_id, "object": "batch", "status": status, "items": total, "url": url}
    return Response(orjson.dumps(body), status_code=202, media_type="application/json",
                    headers={"Location": url})


@router.get("/v1/batches/{job_id}")
async def get_batch(job_id: str, request: Request) -> Response:
    tenant = _tenant(request, spend=False)
    runner = _runner(request)
    view = await asyncio.to_thread(runner.store.get_job, job_id) if len(job_id) <= 64 else None
    auth = getattr(request.app.state, "auth", None)
    if view is None or (auth is not None and auth.enabled and view.tenant != tenant):
        raise ApiError(404, f"no batch with id {shown(job_id)}", param="id", code="batch_not_found")
    return Response(orjson.dumps(job_to_dict(view, base_url(request))),
                    media_type="application/json")


# -- parsing -----------------------------------------------------------------------------------


def _disk_full(e: BaseException) -> bool:
    return getattr(e, "errno", None) == errno.ENOSPC or "full" in str(e).lower()


async def _read(request: Request) -> tuple[dict[str, Any], dict[str, UploadFile]]:
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        form = await request.form(max_files=1000, max_fields=100)
        files: dict[str, UploadFile] = {}
        doc: dict[str, Any] = {}
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                key = value.filename or name
                if key in files:
                    key = f"{name}:{key}"
                files[key] = value
            elif name == "json":
                doc = _parse_json(value.encode())
            elif name in ("webhook_url", "preset"):
                doc.setdefault(name, value)
            else:
                raise ApiError(422, f"unknown form field {name!r}; send photos as file parts and "
                                    "json, preset or webhook_url as fields", param=name,
                               code="unknown_field")
        return doc, files
    if ctype and not ctype.startswith("application/json"):
        raise ApiError(415, f"Content-Type {ctype!r} is not accepted; send application/json or "
                            "multipart/form-data", code="unsupported_media_type")
    return _parse_json(await request.body()), {}


def _parse_json(raw: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise ApiError(400, f"body is not valid JSON: {e}", code="invalid_json") from None
    if not isinstance(doc, dict):
        raise ApiError(422, 'body must be a JSON object like {"items": [...]}', code="invalid_body")
    unknown = sorted(set(doc) - set(_TOP_FIELDS))
    if unknown:
        raise ApiError(422, f"unknown field {unknown[0]!r} (allowed: {', '.join(_TOP_FIELDS)})",
                       param=unknown[0], code="unknown_field")
    for name in ("webhook_url", "preset"):
        if doc.get(name) is not None and not isinstance(doc[name], str):
            raise ApiError(422, f"{name} must be a string", param=name, code="invalid_value")
    if not isinstance(doc.get("defaults", {}), dict):
        raise ApiError(422, "defaults must be an object of RenderSpec fields", param="defaults",
                       code="invalid_value")
    return doc


def _items(doc: dict[str, Any], files: dict[str, UploadFile], limit: int) -> list[Any]:
    items = doc.get("items")
    if items is None and files:
        items = [{"product_file": name} for name in files]
    if not isinstance(items, list) or not items:
        raise ApiError(422, "items must be a non-empty list of render specs (or upload product "
                            "photos as multipart files)", param="items", code="invalid_value")
    if len(items) > limit:
        raise ApiError(422, f"a batch holds at most {limit} items; got {len(items)}. Split it "
                            "into several batches", param="items", code="too_many_items")
    return items


def _validate(items: list[Any], doc: dict[str, Any], files: dict[str, UploadFile]
              ) -> tuple[list[RenderSpec], list[str | None]]:
    defaults = dict(doc.get("defaults") or {})
    if doc.get("preset") is not None:
        defaults.setdefault("preset", doc["preset"])
    specs: list[RenderSpec] = []
    refs: list[str | None] = []
    for i, raw in enumerate(items):
        if not isinstance(raw, dict):
            raise ApiError(422, f"items[{i}] must be an object of render spec fields",
                           param=f"items[{i}]", code="invalid_value")
        fields = {**defaults, **{k: v for k, v in raw.items() if k not in _ITEM_EXTRA}}
        ref = raw.get("product_file")
        if ref is not None and ref not in files:
            have = ", ".join(sorted(files)) or "none were sent"
            raise ApiError(422, f"items[{i}].product_file: no file part named {ref!r} "
                                f"(files: {have})", param=f"items[{i}].product_file",
                           code="unknown_file")
        try:
            specs.append(RenderSpec(**fields))
        except ValidationError as e:
            message, param = describe(e.errors(include_url=False), RenderSpec)
            raise ApiError(422, f"items[{i}]: {message}",
                           param=f"items[{i}].{param}" if param else f"items[{i}]",
                           code="invalid_item") from None
        refs.append(ref)
    unused = sorted(set(files) - {r for r in refs if r})
    if unused:
        raise ApiError(422, f"file {unused[0]!r} is not used by any item; name it in an item's "
                            "product_file or leave it out", param="files", code="unused_file")
    return specs, refs


def _check_presets(specs: list[RenderSpec], settings: Any) -> None:
    from swiftshot.ops.presets import get_preset

    for i, spec in enumerate(specs):
        if spec.preset is None:
            continue
        try:
            get_preset(spec.preset, settings.ops.presets)
        except ValueError as e:
            raise ApiError(422, f"items[{i}].preset: {e}", param=f"items[{i}].preset",
                           code="unknown_preset") from None


async def _load_photos(files: dict[str, UploadFile], refs: list[str | None],
                       settings: Any) -> dict[str, tuple[str, bytes]]:
    """name → (sha256, bytes); each photo decoded once now so a bad one is refused at once.

    Each decode holds its share of the memory budget (runtime/memory.py), as a render's does:
    a burst of big uploads waits its turn, and past ``limits.memory_wait_s`` the request is
    refused with 503 ``memory_busy`` + Retry-After (nothing of the job is stored) instead of
    decoding them all at once. One photo at a time: its pixels are dropped before the next."""
    from swiftshot.inputs import InputError, sha256_hex
    from swiftshot.runtime import memory

    out: dict[str, tuple[str, bytes]] = {}
    for name in dict.fromkeys(r for r in refs if r):
        data = await files[name].read()
        try:
            async with memory.admit_photos([data], settings.limits):
                await asyncio.to_thread(_check_photo, data, settings.limits)
        except InputError as e:
            idx = refs.index(name)
            raise ApiError(e.status, f"items[{idx}] file {name!r}: {e.message}",
                           param=f"items[{idx}].product_file", code=e.code) from None
        out[name] = (sha256_hex(data), data)
    return out


def _check_photo(data: bytes, limits: Any) -> None:
    """Decode ``data`` fully (a truncated or bomb photo raises InputError) and drop it."""
    from swiftshot.inputs import load_image

    load_image(data, limits).close()
