"""OpenAPI documentation of the routes: one ``openapi.document(...)`` call per route.

THE place to document a route (see :mod:`swiftshot.api.openapi` and docs/ARCHITECTURE.md):
a route registered on the app and missing here fails tests/api/test_openapi.py. Response
schemas are checked against the live server by schemathesis, so they must say what the route
really answers.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from swiftshot.api import openapi as oa
from swiftshot.api.routes_images import ImagesRequest
from swiftshot.spec import RenderSpec

IMAGE_TYPES = ("image/avif", "image/webp", "image/jpeg", "image/png")
SSE = {"text/event-stream": {"schema": {
    "type": "object", "required": ["data"],
    "description": "One server-sent event (stream=true): 'event: <type>' + 'data: <one-line "
    "JSON>' + a blank line, the JSON always carrying its type; ': keep-alive' comments between. "
    "Native: queued, started, partial, completed, error; OpenAI: image_generation.* / "
    "image_edit.* and error. See docs/ARCHITECTURE.md, Streaming.",
    "properties": {
        "event": {"type": "string", "example": "partial"},
        "data": {"type": "string", "contentMediaType": "application/json",
                 "contentSchema": {"type": "object", "required": ["type"],
                                   "properties": {"type": {"type": "string"},
                                                  "error": {"type": "object"}}}}}}}}
KEY_EXAMPLE = "3f1c9a0e5b7d2c4f6a8e0b1d3c5f7a9e2b4d6f8a0c1e3b5d7f9a2c4e6b8d0f1a"
TIMING_HEADERS = {"X-Cache": oa.header("memory | disk | redis | coalesced | miss"),
                  "Server-Timing": oa.header("cache, queue, infer, encode, total durations")}


# -- response and request models (documentation only; the routes build plain dicts) -----------


class ImageData(BaseModel):
    url: str | None = None
    """Immutable /i/{key}.{ext} URL (response_format=url)."""
    b64_json: str | None = None
    """The image, base64 (response_format=b64_json)."""
    revised_prompt: str | None = None


class ImagesResponse(BaseModel):
    created: int
    data: list[ImageData]
    output_format: str
    size: str
    quality: str
    background: str


class RenderRequest(RenderSpec):
    """A RenderSpec (``size``: "WxH" is accepted instead of width and height), optionally with
    the product photo and further images as base64."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    product_b64: str | None = None
    """The product photo: base64 or a data: URL (JPEG, PNG, WebP, AVIF)."""
    images_b64: list[str] | None = Field(None, max_length=8)
    """Further images named by hash in the ops (backdrops, masks), base64."""


class RuleVerdict(BaseModel):
    rule: str
    """size, longest_side, background, light_background, product_fill, format, colour_space,
    iptc_digital_source_type"""
    passed: bool
    measured: str
    """What was measured, e.g. "87.9% of the frame's side"."""
    required: str
    """The preset's limit, e.g. ">= 85%"."""


class ComplianceVerdict(BaseModel):
    """The preset's own check of the image it made (``X-Compliance`` says pass / fail)."""
    preset: str
    passed: bool
    failed: list[str]
    """The rules that failed (empty when passed)."""
    attempts: int
    """Placements tried (a fill outside the rule is corrected and checked again)."""
    rules: list[RuleVerdict]


class CutoutVerdict(BaseModel):
    """What the cutout said of itself (``X-Cutout-Confidence``)."""
    confidence: float
    level: str
    """high | medium | low (below 0.5: the cutout is a guess)."""
    notes: list[str]


class RenderResponse(BaseModel):
    key: str
    url: str
    urls: dict[str, str]
    cache: str
    width: int
    height: int
    seed: int | None = None
    timings: dict[str, float]
    product_sha256: str | None = None
    compliance: ComplianceVerdict | None = None
    """With a preset: its own check of the result."""
    cutout: CutoutVerdict | None = None
    """With a cutout: its confidence."""


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[dict[str, Any]] = Field(min_length=1, max_length=50)
    """RenderSpecs; an item may name an uploaded file part with product_file."""
    webhook_url: str | None = None
    """Signed (X-Swiftshot-Signature) POST when the job ends."""
    preset: str | None = None
    defaults: dict[str, Any] | None = None
    """RenderSpec fields every item starts from."""


class BatchCreated(BaseModel):
    id: str
    object: Literal["batch"]
    status: str
    items: int
    url: str


class BatchItem(BaseModel):
    index: int
    status: str
    key: str | None = None
    url: str | None = None
    error: str | None = None
    compliance: ComplianceVerdict | None = None
    """A done item with a preset: the preset's own check of its result, as POST /v1/render
    answers it (passed, the failed rules, every rule with its measured value)."""
    cutout: CutoutVerdict | None = None
    """A done item with a cutout: its confidence."""


class Batch(BaseModel):
    id: str
    object: Literal["batch"]
    status: str
    created: int
    finished: int | None
    progress: dict[str, int]
    preset: str | None
    webhook: dict[str, Any] | None
    items: list[BatchItem]


class Health(BaseModel):
    status: Literal["ok"]


class EngineReadiness(BaseModel):
    name: str
    version: str
    model: str | None = None
    ready: bool
    workers: int
    """Workers (processes, replicas) this engine has."""
    warm: int
    """Of them, loaded, warmed up and alive."""
    error: str | None = None
    """Why a worker cannot start (a model that does not load ...)."""
    detail: list[dict[str, Any]] = []
    transport: dict[str, Any] | None = None
    """``ray`` only: how batches travel — ``configured`` (``ray.transport``), ``effective``
    (direct, serve or mixed), ``linked`` replicas of ``replicas``, ``shared_memory`` links, and a
    ``note`` when a direct front cannot use its channel (batches go through Serve)."""


class Ready(BaseModel):
    status: Literal["ready", "degraded"]
    engine: str
    version: str
    executor: str
    """What runs the engines: inline, process or ray."""
    engines: list[EngineReadiness]
    degraded: dict[str, str] | None = None
    """What is off or failing while it still serves (e.g. cache.disk: a full disk)."""


class PurgedKey(BaseModel):
    key: str
    deleted: int


class PurgedTag(BaseModel):
    tag: str
    deleted: int


RBG_ERROR: dict[str, Any] = {
    "type": "object", "required": ["errors"],
    "description": "remove.bg's error shape",
    "properties": {"errors": {"type": "array", "items": {
        "type": "object", "required": ["title", "code"],
        "properties": {"title": {"type": "string"}, "code": {"type": "string"},
                       "detail": {"type": "string"}}}}},
}


class PresetInfo(BaseModel):
    name: str
    label: str
    """Shop name as a seller knows it (Amazon, Google Merchant ...)."""
    width: int
    height: int
    format: str
    quality: int
    background: str
    """#rrggbb, or "keeps the backdrop"."""
    checks: list[str]
    """The rules its check holds, in words."""


class PresetList(BaseModel):
    presets: list[PresetInfo]
    engine: str
    """The engine served here (the web page offers an AI backdrop for diffusion)."""
    max_upload_bytes: int


class RuleCheck(BaseModel):
    rule: str
    passed: bool
    measured: str
    required: str


class CheckResult(BaseModel):
    preset: str
    passed: bool
    failed: list[str]
    width: int
    height: int
    format: str | None
    rules: list[RuleCheck]


class PrefetchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    specs: list[dict[str, Any]] = Field(min_length=1, max_length=500)
    """RenderSpecs (no photos; product renders by product_sha256 when cached)."""


class PrefetchItemState(BaseModel):
    index: int
    state: Literal["queued", "rendering", "done", "cached", "failed"]
    key: str | None = None
    error: dict[str, Any] | None = None


class PrefetchJob(BaseModel):
    id: str
    status: Literal["running", "completed"]
    created_at: int
    total: int
    counts: dict[str, int]
    items: list[PrefetchItemState]
    url: str


def _with_sse(response: dict[str, Any]) -> dict[str, Any]:
    return {**response, "content": {**response["content"], **SSE}}


# -- the routes --------------------------------------------------------------------------------

oa.document(
    "POST", "/v1/images/generations", tags=["images"],
    summary="Generate images (OpenAI Images API compatible)",
    description="The official openai client works with base_url=http://HOST/v1. n images are "
    "rendered with seeds seed, seed+1, ...; response_format url (default) gives immutable "
    "/i/ URLs, b64_json the bytes.",
    body=oa.json_body(ImagesRequest, {"model": "studio", "prompt": "sage green paper sweep",
                                      "size": "1024x1024", "output_format": "webp"}),
    responses={200: _with_sse(oa.json_ok(ImagesResponse, "The images (stream=true: "
                                         "image_generation.partial_image / .completed events)",
                                         headers=TIMING_HEADERS, example={
        "created": 1764806400, "data": [{"url": f"http://127.0.0.1:8000/i/{KEY_EXAMPLE}.webp"}],
        "output_format": "webp", "size": "1024x1024", "quality": "auto",
        "background": "auto"}))},
    errors=(400, 409, 422, 499, 502, 504))

_render_multipart = oa.multipart({
    "spec": {"type": "string", "description": "the RenderSpec as JSON",
             "example": '{"preset": "amazon"}'},
    "product": oa.FILE,
    "images": {"type": "array", "items": oa.FILE},
})
oa.document(
    "POST", "/v1/render", tags=["images"],
    summary="Render an image from a full RenderSpec, optionally with a product photo",
    description="JSON (a RenderSpec, the photo as product_b64) or multipart (spec + product "
    "file). Answers JSON, or the image itself when Accept prefers an image, or server-sent "
    "events (queued, started, partial, completed | error) with stream=true or Accept: "
    "text/event-stream.",
    parameters=[{"name": "stream", "in": "query", "required": False,
                 "schema": {"type": "string", "enum": ["true", "false", "1", "0"]}},
                {"name": "partial_images", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 0, "maximum": 3}}],
    body=oa.json_body(RenderRequest, {"prompt": "white marble, morning light",
                                      "width": 1024, "height": 1024, "output_format": "webp"},
                      multipart=_render_multipart),
    responses={200: {"description": "The render: JSON, or the image (Accept: image/*)",
                     "headers": TIMING_HEADERS,
                     "content": {"application/json": {"schema": oa.ref(RenderResponse)},
                                 **{m: {"schema": oa.FILE} for m in IMAGE_TYPES}, **SSE}}},
    errors=(400, 406, 409, 422, 499, 502, 504))

oa.document(
    "POST", "/v1/onmodel", tags=["images"],
    summary="On-model shot: a garment photo worn by a model (person) photo",
    description="multipart: file parts garment (the top: flat lay, hollow, or an RGBA "
    "cutout) and model (a person front-on, head to at least the hips); optional preset, "
    "format (jpeg, png, webp, avif; default jpeg), quality, person_segmenter (auto, "
    "classical), inpaint_seams (true needs the diffusion engine with inpainting), light "
    "(0-1). A render of the onmodel op (cached like /v1/render). Answers the image, or the "
    "render JSON with Accept: application/json. 422 when a part is missing or no person is "
    "found in the model photo; 413/415/422 for photos as /v1/render.",
    body={"required": True, "content": {"multipart/form-data": {"schema": oa.multipart({
        "garment": oa.FILE, "model": oa.FILE,
        "preset": {"type": "string", "example": "shopify"},
        "format": {"type": "string", "enum": ["jpeg", "jpg", "png", "webp", "avif"]},
        "quality": {"type": "string", "example": "90"},
        "person_segmenter": {"type": "string", "enum": ["auto", "classical"]},
        "inpaint_seams": {"type": "string", "enum": ["true", "false"]},
        "light": {"type": "string", "example": "0.8"}}, required=("garment", "model")),
        "example": {"garment": "(tee.jpg)", "model": "(model.jpg)", "format": "jpeg"}}}},
    responses={200: {"description": "The dressed model photo (or the render JSON)",
                     "headers": TIMING_HEADERS,
                     "content": {"application/json": {"schema": oa.ref(RenderResponse)},
                                 **{m: {"schema": oa.FILE} for m in IMAGE_TYPES}}}},
    errors=(400, 409, 413, 415, 422, 499, 502, 504))

oa.document(
    "POST", "/v1.0/removebg", tags=["images"],
    summary="Remove the background (remove.bg compatible)",
    description="image_file / image_file_b64 / image_url (allow-listed hosts only); the answer "
    "is the image (png, jpg, webp or zip), or JSON with Accept: application/json. Errors use "
    "remove.bg's shape.",
    body={"required": True, "content": {
        "multipart/form-data": {"schema": oa.multipart({
            "image_file": oa.FILE, "image_file_b64": {"type": "string"},
            "image_url": {"type": "string"}, "size": {"type": "string", "example": "auto"},
            "type": {"type": "string"}, "format": {"type": "string", "example": "png"},
            "bg_color": {"type": "string", "example": "ffffff"}, "bg_image_file": oa.FILE,
            "crop": {"type": "string"}, "crop_margin": {"type": "string"},
            "scale": {"type": "string"}, "position": {"type": "string"},
            "channels": {"type": "string"}, "add_shadow": {"type": "string"}})},
        "application/json": {"example": {"image_file_b64": "iVBORw0KGgo...", "size": "auto",
                                         "format": "png"},
                             "schema": {"type": "object", "properties": {
            "image_file_b64": {"type": "string"}, "image_url": {"type": "string"},
            "size": {"type": "string"}, "format": {"type": "string"},
            "bg_color": {"type": "string"}}}}}},
    responses={200: {"description": "The cut-out image (or JSON with result_b64)",
                     "content": {"image/png": {"schema": oa.FILE},
                                 "image/jpeg": {"schema": oa.FILE},
                                 "image/webp": {"schema": oa.FILE},
                                 "application/zip": {"schema": oa.FILE},
                                 "application/json": {"schema": {
                                     "type": "object", "properties": {"data": {
                                         "type": "object"}}}}}}},
    errors=(400, 404, 408, 413, 415, 422, 499, 502, 504), error_schema=RBG_ERROR)

_name = {"name": "name", "in": "path", "required": True,
         "description": "KEY (64 hex) with an optional .avif/.webp/.jpg/.png",
         "schema": {"type": "string"}, "example": f"{KEY_EXAMPLE}.webp"}
oa.document(
    "GET", "/i/{name}", tags=["delivery"],
    summary="An image by key: immutable, ETag/304, format from the extension or Accept",
    parameters=[_name,
                {"name": "q", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                {"name": "w", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 2048}}],
    responses={200: oa.binary_ok(IMAGE_TYPES, "The image", headers={
                   "ETag": oa.header("hash of the bytes"),
                   "X-Cache": oa.header("memory | disk | redis (ready), coalesced, miss"),
                   "Cache-Control": oa.header("public, max-age=31536000, immutable")}),
               304: {"description": "Not modified (If-None-Match matched)"}},
    errors=(400, 404, 406, 503), common_errors=False)  # 503: a refused encode (work gate)

oa.document("GET", "/healthz", tags=["ops"], summary="Alive", common_errors=False,
            responses={200: oa.json_ok(Health, "The process answers", {"status": "ok"})})
oa.document("GET", "/readyz", tags=["ops"], common_errors=False,
            summary="Ready: 503 while warming up, after a failed start, and while draining",
            responses={200: oa.json_ok(Ready, "Ready to serve")}, errors=(503,))
oa.document("GET", "/metrics", tags=["ops"], summary="Prometheus metrics (auth on: any key)",
            common_errors=False, errors=(401,),
            responses={200: {"description": "Prometheus text format",
                             "content": {"text/plain": {"schema": {"type": "string"}}}}})
oa.document("GET", "/", tags=["ops"], summary="The seller's web page", common_errors=False,
            responses={200: {"description": "HTML",
                             "content": {"text/html": {"schema": {"type": "string"}}}}})

oa.document(
    "DELETE", "/v1/cache/{key}", tags=["cache"],
    summary="Purge a master and its variants (admin key; auth off: loopback only)",
    parameters=[{"name": "key", "in": "path", "required": True,
                 "schema": {"type": "string"}, "example": KEY_EXAMPLE}],
    responses={200: oa.json_ok(PurgedKey, "Purged")}, errors=(400, 403, 404))
oa.document(
    "DELETE", "/v1/cache/tags/{tag}", tags=["cache"],
    summary="Purge everything carrying a tag (admin key; auth off: loopback only)",
    parameters=[{"name": "tag", "in": "path", "required": True,
                 "schema": {"type": "string"}, "example": "sku-1234"}],
    responses={200: oa.json_ok(PurgedTag, "Purged")}, errors=(400, 403))

oa.document(
    "POST", "/v1/batches", tags=["batches"],
    summary="Create a batch job (up to 50 items; durable; signed webhook)",
    description="JSON, or multipart with photos as file parts and the JSON as the json field. "
    "Idempotency-Key replays the first job.",
    parameters=[{"name": "Idempotency-Key", "in": "header", "required": False,
                 "schema": {"type": "string", "maxLength": 255}}],
    body=oa.json_body(BatchRequest, {"items": [{"prompt": "oak table", "size": "512x512"}]},
                      multipart=oa.multipart({"json": {"type": "string"},
                                              "preset": {"type": "string"},
                                              "webhook_url": {"type": "string"}})),
    responses={202: oa.json_ok(BatchCreated, "Accepted", headers={
        "Location": oa.header("/v1/batches/{id}")})},
    errors=(400, 422, 507))
oa.document(
    "GET", "/v1/batches/{job_id}", tags=["batches"], summary="A batch job's state",
    responses={200: oa.json_ok(Batch, "The job")}, errors=(404,))

oa.document(
    "GET", "/v1/presets", tags=["presets"], common_errors=False,
    summary="Marketplace presets (built in and from the config) with the rules each checks",
    responses={200: oa.json_ok(PresetList, "The presets", {
        "presets": [{"name": "amazon", "label": "Amazon", "width": 2000, "height": 2000,
                     "format": "jpeg", "quality": 88, "background": "#ffffff",
                     "checks": ["longest side >= 1000 px", "pure white border",
                                "product fills >= 85%", "JPEG", "sRGB"]}],
        "engine": "studio", "max_upload_bytes": 26214400})})
oa.document(
    "POST", "/v1/check", tags=["presets"],
    summary="Check an image against a preset: each rule pass/fail with its measured value",
    description="As `swiftshot check` prints it (the same function). A failing rule is a 200 "
    "with passed: false; an unreadable image or unknown preset is a 4xx.",
    body={"required": True, "content": {"multipart/form-data": {"schema": oa.multipart(
        {"image": oa.FILE, "preset": {"type": "string", "example": "amazon"}},
        required=("image", "preset")), "example": {"preset": "amazon",
                                                   "image": "(the JPEG's bytes)"}}}},
    responses={200: oa.json_ok(CheckResult, "Every rule with what was measured", {
        "preset": "amazon", "passed": True, "failed": [], "width": 2000, "height": 2000,
        "format": "JPEG", "rules": [{"rule": "longest_side", "passed": True,
                                     "measured": "2000 px", "required": ">= 1000 px"}]})},
    errors=(400, 422))

oa.document(
    "POST", "/v1/images/edits", tags=["images"],
    summary="Put a product photo into a scene (OpenAI image edit compatible)",
    description="multipart: image (the product photo), prompt (the scene), optional mask "
    "(transparent where the scene goes, the image's size), and the generation fields. The "
    "product is composed onto the engine's backdrop (inpainted around it when the engine can). "
    "stream=true answers image_edit.partial_image / image_edit.completed events.",
    body={"required": True, "content": {"multipart/form-data": {
        "schema": oa.multipart({
            "image": oa.FILE, "mask": oa.FILE,
            "prompt": {"type": "string", "example": "oak table, golden hour"},
            "model": {"type": "string"}, "n": {"type": "integer", "minimum": 1},
            "size": {"type": "string", "example": "1024x1024"},
            "response_format": {"type": "string", "enum": ["url", "b64_json"]},
            "output_format": {"type": "string", "enum": ["png", "jpeg", "webp", "avif"]},
            "quality": {"type": "string"}, "background": {"type": "string"},
            "stream": {"type": "string", "enum": ["true", "false"]},
            "partial_images": {"type": "integer", "minimum": 0, "maximum": 3},
        }, required=("image", "prompt")),
        "example": {"prompt": "oak table, golden hour", "size": "1024x1024"}}}},
    responses={200: _with_sse(oa.json_ok(ImagesResponse, "The edited images",
                                         headers=TIMING_HEADERS))},
    errors=(400, 409, 422, 499, 502, 504))

oa.document(
    "POST", "/v1/prefetch", tags=["prefetch"],
    summary="Render a list of specs ahead of demand, at the lowest priority",
    description="Answered at once with 202 and a handle; poll it with GET /v1/prefetch/{id}.",
    body=oa.json_body(PrefetchRequest, {"specs": [{"prompt": "oak table, golden hour",
                                                   "size": "1024x1024"}]}),
    responses={202: oa.json_ok(PrefetchJob, "Accepted", headers={
        "Location": oa.header("/v1/prefetch/{id}")})},
    errors=(400, 422))
oa.document(
    "GET", "/v1/prefetch/{job_id}", tags=["prefetch"], summary="A prefetch's progress",
    responses={200: oa.json_ok(PrefetchJob, "Each item's state")}, errors=(404,))
