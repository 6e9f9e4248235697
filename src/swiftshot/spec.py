"""The request model: what one image is, validated and normalised, and its cache key.

A :class:`RenderSpec` holds everything that decides the pixels of a *master* image. Delivery
choices (output format, quality, the variant picked by Client Hints) do not change the master,
so they are kept out of :meth:`RenderSpec.cache_key`; the encoded variants are addressed by
:func:`variant_key`, which builds on it.

Normalisation makes requests that mean the same thing equal:
  * prompts have runs of whitespace collapsed and ends stripped;
  * ``size="WxH"`` and ``width``/``height`` are the same thing;
  * fields an engine ignores are cleared (the studio engine has no steps or guidance);
  * defaults are filled from the engine's defaults;
  * an omitted seed is derived from the rest of the request, so an unseeded request is still
    deterministic and cacheable (ask for ``seed=-1`` to get a fresh random one, uncached).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

OutputFormat = Literal["png", "jpeg", "webp", "avif"]
OUTPUT_FORMATS: tuple[str, ...] = ("png", "jpeg", "webp", "avif")
FORMAT_ALIASES = {"jpg": "jpeg"}
MIN_SIDE, MAX_SIDE, SIDE_STEP = 64, 2048, 8
MAX_PROMPT_CHARS = 2000
SEED_MAX = 2**32 - 1
KEY_VERSION = "1"
"""Bump when the canonical form itself changes meaning (it invalidates every cached image)."""

_SIZE_RE = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")

# Fallbacks for specs normalised without an engine at hand (tests, the CLI's spec checks). The
# server normalises with the engine's own ``EngineInfo`` (runtime/executor.py): the engine
# declares the fields it ignores and its defaults (diffusion's ``default_steps`` ...).
# Fields each engine ignores: cleared in the canonical form so they cannot split the cache.
_IGNORED_BY_ENGINE: dict[str, frozenset[str]] = {
    "studio": frozenset({"steps", "guidance", "negative_prompt", "model"}),
    "fake": frozenset({"steps", "guidance", "negative_prompt", "model"}),
}
# Defaults each engine fills in when the request leaves a field out.
_ENGINE_DEFAULTS: dict[str, dict[str, Any]] = {
    "diffusion": {"steps": 1, "guidance": 0.0},
}


def engine_ignored(engine: str) -> frozenset[str]:
    """Fields ``engine`` ignores when no engine object says otherwise."""
    return _IGNORED_BY_ENGINE.get(engine, frozenset())


def engine_defaults(engine: str) -> dict[str, Any]:
    """Defaults of ``engine`` when no engine object says otherwise."""
    return dict(_ENGINE_DEFAULTS.get(engine, {}))


def collapse_whitespace(text: str) -> str:
    return " ".join(text.split())


def parse_size(value: str) -> tuple[int, int]:
    """Parse ``"WxH"``; raise ValueError naming what is allowed."""
    m = _SIZE_RE.match(value) if isinstance(value, str) else None
    if not m:
        raise ValueError(
            f'size must be "WxH" with {MIN_SIDE} ≤ W,H ≤ {MAX_SIDE} and multiples of {SIDE_STEP} '
            f"(e.g. \"1024x1024\"); got {value!r}"
        )
    return int(m.group(1)), int(m.group(2))


def check_side(name: str, v: int) -> int:
    if not (MIN_SIDE <= v <= MAX_SIDE) or v % SIDE_STEP:
        raise ValueError(
            f"{name} must be a multiple of {SIDE_STEP} between {MIN_SIDE} and {MAX_SIDE}; got {v}"
        )
    return v


class Operation(BaseModel):
    """One product-image operation (cutout, compose, shadow, preset, enhance ...).

    ``op`` names it; the other keys are its parameters, validated by the ops layer, which
    knows each operation's schema. Kept generic here so the request model does not depend on
    the ops package.
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    op: str = Field(min_length=1, max_length=64)


class RenderSpec(BaseModel):
    """Everything that decides the pixels of one image."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)

    prompt: str = Field("", max_length=MAX_PROMPT_CHARS)
    """What to make. For the studio engine: the backdrop (material, colour, light)."""
    negative_prompt: str = Field("", max_length=MAX_PROMPT_CHARS)
    """What to avoid (diffusion engines)."""
    width: int = 1024
    height: int = 1024
    seed: int | None = Field(None, ge=-1, le=SEED_MAX)
    """Random seed; omitted → derived from the request (deterministic); -1 → fresh random."""
    steps: int | None = Field(None, ge=1, le=100)
    """Denoising steps (diffusion); the engine's default when omitted."""
    guidance: float | None = Field(None, ge=0, le=30)
    """Classifier-free guidance scale (diffusion); the engine's default when omitted."""
    engine: str = Field("studio", min_length=1, max_length=32, pattern=r"^[a-z0-9_\-]+$")
    model: str | None = Field(None, max_length=512)
    """Model name or folder for engines that have several (diffusion)."""
    output_format: OutputFormat = "png"
    """Format of the delivered file. Not part of the cache key: variants share one master."""
    quality: int | None = Field(None, ge=1, le=100)
    """Lossy quality 1-100 for jpeg/webp/avif; the format's default when omitted."""
    category: str = Field("adhoc", max_length=32, pattern=r"^[a-z0-9_\-]+$")
    """Cache category (TTL class: preview, adhoc, catalog ...). Not part of the cache key."""
    tags: tuple[str, ...] = Field((), max_length=16)
    """Purge tags, e.g. a product id. Not part of the cache key."""
    product_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    """Content hash of the uploaded product photo the operations apply to."""
    ops: tuple[Operation, ...] = Field((), max_length=32)
    """Ordered product-image operations."""
    preset: str | None = Field(None, max_length=64, pattern=r"^[a-z0-9_\-]+$")
    """Marketplace preset (amazon, shopify ...) applied after the ops."""

    @model_validator(mode="before")
    @classmethod
    def _size_alias(cls, data: Any) -> Any:
        if isinstance(data, dict) and "size" in data:
            data = dict(data)
            size = data.pop("size")
            if size is not None:
                w, h = parse_size(size)
                if ("width" in data and data["width"] != w) or (
                    "height" in data and data["height"] != h
                ):
                    raise ValueError(f"size {size!r} disagrees with width/height given beside it")
                data["width"], data["height"] = w, h
        if isinstance(data, dict) and isinstance(data.get("output_format"), str):
            fmt = data["output_format"].lower()
            data = {**data, "output_format": FORMAT_ALIASES.get(fmt, fmt)}
        return data

    @field_validator("width", "height")
    @classmethod
    def _side(cls, v: int, info: Any) -> int:
        return check_side(info.field_name, v)

    @field_validator("prompt", "negative_prompt")
    @classmethod
    def _collapse(cls, v: str) -> str:
        return collapse_whitespace(v)

    @field_validator("guidance")
    @classmethod
    def _no_negative_zero(cls, v: float | None) -> float | None:
        # -0.0 passes ge=0 and guides like 0.0, but would dump as "-0.0" and split the cache
        return v + 0.0 if v is not None else None

    @field_validator("model")
    @classmethod
    def _model(cls, v: str | None) -> str | None:
        return v.strip() or None if v is not None else None

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    # -- canonical form and keys -------------------------------------------------------------

    def normalized(self, *, ignored: Any = None, defaults: Any = None) -> RenderSpec:
        """Defaults filled, ignored fields cleared, seed fixed. Idempotent. ``ignored`` and
        ``defaults`` come from the engine (``EngineInfo``); None: spec.py's fallback tables."""
        updates, _ = self._canonical_pass(ignored, defaults)
        return self.model_copy(update=updates) if updates else self

    def normalized_and_key(self, engine_name: str | None = None, engine_version: str = "0",
                           ops_version: str = "0", *, ignored: Any = None,
                           defaults: Any = None) -> tuple[RenderSpec, str]:
        """``(self.normalized(), self.cache_key(...))`` in one pass: the pixel fields are
        dumped once and both the derived seed and the key are hashed from that dict (the two
        calls apart dump and normalise twice; this is the cache-hit path)."""
        updates, data = self._canonical_pass(ignored, defaults)
        spec = self.model_copy(update=updates) if updates else self
        return spec, _key(data, engine_name or self.engine, engine_version, ops_version)

    def _canonical_pass(self, ignored: Any = None, defaults: Any = None
                        ) -> tuple[dict[str, Any], dict[str, Any]]:
        """(field updates that normalise self, pixel fields of the normalised spec)."""
        updates: dict[str, Any] = {}
        if ignored is None:
            ignored = _IGNORED_BY_ENGINE.get(self.engine, ())
        if defaults is None:
            defaults = _ENGINE_DEFAULTS.get(self.engine, {})
        for name in ignored:
            default = _FIELD_DEFAULTS[name]
            if getattr(self, name) != default:
                updates[name] = default
        for name, default in defaults.items():
            if getattr(self, name) is None:
                updates[name] = default
        if self.tags and self.tags != tuple(sorted(set(self.tags))):
            updates["tags"] = tuple(sorted(set(self.tags)))
        data = _pixel_fields(self)
        for name, value in updates.items():
            if name in data:  # the updates are plain JSON values (defaults), as dumped
                data[name] = value
        if self.seed is None:
            updates["seed"] = data["seed"] = _seed_of(
                {k: v for k, v in data.items() if k != "seed"})
        elif self.seed == -1:
            updates["seed"] = data["seed"] = secrets.randbelow(SEED_MAX + 1)
        return updates, data

    @property
    def cacheable(self) -> bool:
        """False for seed=-1 (the caller asked for a fresh random image)."""
        return self.seed != -1

    def canonical(self) -> dict[str, Any]:
        """The pixel-deciding fields of the normalised spec, as plain JSON-able data."""
        return self._canonical_pass()[1]

    def cache_key(self, engine_name: str | None = None, engine_version: str = "0",
                  ops_version: str = "0") -> str:
        """Hex SHA-256 of the canonical form plus the engine's name and version.

        Two specs that mean the same thing share a key; any change that alters the master's
        pixels (including a new engine or ops version) changes it.
        """
        return _key(self.canonical(), engine_name or self.engine, engine_version, ops_version)

    def batch_fields(self) -> tuple[Any, ...]:
        """Fields that must match for two specs to share one engine forward pass."""
        return (self.engine, self.model, self.width, self.height, self.steps, self.guidance)


_FIELD_DEFAULTS: dict[str, Any] = {n: f.default for n, f in RenderSpec.model_fields.items()}
_NOT_PIXELS = frozenset({"output_format", "quality", "category", "tags"})
_PIXEL_NAMES = tuple(n for n in RenderSpec.model_fields if n not in _NOT_PIXELS)


def _pixel_fields(spec: RenderSpec) -> dict[str, Any]:
    # The pixel fields other than ops are str/int/float/None, already JSON values: read them
    # directly rather than through model_dump (tests/test_spec.py holds the two equal, order
    # included, since FakeEngine hashes the repr).
    values = spec.__dict__
    data = {name: values[name] for name in _PIXEL_NAMES}
    data["ops"] = [op.model_dump(mode="json") for op in spec.ops]
    return data


def _seed_of(data: dict[str, Any]) -> int:
    """Seed derived from the pixel fields without the seed."""
    digest = hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).digest()
    return int.from_bytes(digest[:4], "big")


def _key(data: dict[str, Any], engine: str, engine_version: str, ops_version: str) -> str:
    payload = {"v": KEY_VERSION, "engine": engine, "engine_version": engine_version,
               "ops_version": ops_version, "spec": data}
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


def variant_key(master_key: str, fmt: str, quality: int, width: int | None = None) -> str:
    """Key of one encoded variant of a master: format, quality and (optional) resized width."""
    w = "" if width is None else f"-w{width}"
    return f"{master_key}.{fmt}-q{quality}{w}"
