"""Ecommerce image operations, their parameter schemas, and the registry that runs them.

A request's ``ops`` is a list of ``{"op": NAME, ...params}``. Each NAME has a pydantic schema
here (``OPS``), so a bad request is refused with the op's index, the field and what is allowed,
before anything runs. Running an op is a plain function from an image (and a small context) to
an image; the functions live in the modules beside this one and know nothing of requests.

=========  ===========================================================================
op         what it does
=========  ===========================================================================
cutout     product photo → RGBA with the product's alpha (``segmenter``: classical, u2net …)
compose    RGBA product → RGB on a backdrop: ``engine`` (the spec's engine renders the prompt,
           studio by default), ``color``, ``image`` (an uploaded backdrop), ``inpaint`` (the
           diffusion engine paints around the product, when it offers ``run_inpaint``)
enhance    white balance, levels, denoise, sharpen, upscale
mannequin  ghost mannequin: remove the mannequin by ``key_color`` or ``mask_sha256``
onmodel    garment (the request's product photo) worn by the model in ``model_sha256``
=========  ===========================================================================
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from swiftshot.errors import ServiceError

RGB = tuple[int, int, int]

_NAMED = {"white": (255, 255, 255), "black": (0, 0, 0), "grey": (128, 128, 128),
          "gray": (128, 128, 128), "offwhite": (245, 245, 242)}
_HEX = re.compile(r"^#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})$")


class OpsError(ValueError, ServiceError):
    """A request's operations cannot run as asked (a user error: a 4xx ServiceError)."""

    status = 422
    code = "invalid_ops"
    _param = "ops"

    def __init__(self, message: str, status: int = 422) -> None:
        ServiceError.__init__(self, message, status=status, param=self._param)


def parse_colour(v: Any) -> RGB:
    """``"#ff8800"``, ``"f80"``, ``"white"``, ``[255, 136, 0]`` or ``"255,136,0"`` → RGB."""
    if isinstance(v, str):
        s = v.strip().lower()
        if s in _NAMED:
            return _NAMED[s]
        m = _HEX.match(s)
        if m:
            h = m.group(1)
            h = "".join(c * 2 for c in h) if len(h) == 3 else h
            return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)
        if s.count(",") == 2:
            v = [p.strip() for p in s.split(",")]
    if isinstance(v, (list, tuple)) and len(v) == 3:
        try:
            rgb = tuple(int(c) for c in v)
        except (TypeError, ValueError):
            rgb = ()
        if len(rgb) == 3 and all(0 <= c <= 255 for c in rgb):
            return rgb  # type: ignore[return-value]
    raise ValueError(f'colour must be "#rrggbb", a name ({", ".join(_NAMED)}) or [r, g, b] '
                     f"with 0-255 each; got {v!r}")


Colour = Annotated[RGB, BeforeValidator(parse_colour)]
Sha = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class _Op(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CutoutOp(_Op):
    op: Literal["cutout"] = "cutout"
    segmenter: str | None = Field(None, max_length=64)
    """classical (default from settings), or a rembg model name whose .onnx is in ops.model_dir."""


class ShadowSpec(_Op):
    contact: float = Field(0.55, ge=0, le=1)
    cast: float = Field(0.28, ge=0, le=1)
    direction: float = Field(-35.0, ge=-90, le=90)
    length: float = Field(0.35, ge=0, le=1.5)
    softness: float = Field(1.0, ge=0.1, le=5)


ENGINE_BACKDROPS = ("engine", "studio", "prompt")


class ComposeOp(_Op):
    op: Literal["compose"] = "compose"
    backdrop: Literal["engine", "studio", "prompt", "color", "image", "inpaint"] = "engine"
    prompt: str | None = Field(None, max_length=2000)
    """Backdrop prompt for the engine; the spec's prompt when omitted."""
    color: Colour = (255, 255, 255)
    image_sha256: Sha | None = None
    """Uploaded backdrop (backdrop="image")."""
    size: tuple[int, int] | None = None
    """Canvas (width, height); the spec's size when omitted."""
    fill: float = Field(0.8, gt=0.05, le=1.0)
    position: tuple[float, float] = (0.5, 0.5)
    shadow: ShadowSpec | bool = True
    reflection: float = Field(0.0, ge=0, le=1)
    colour_match: float = Field(0.12, ge=0, le=1)


class EnhanceOp(_Op):
    op: Literal["enhance"] = "enhance"
    white_balance: bool = True
    levels: bool = True
    denoise: float = Field(0.0, ge=0, le=1)
    sharpen: float = Field(0.4, ge=0, le=2)
    upscale: float = Field(1.0, ge=1, le=4)


class MannequinOp(_Op):
    op: Literal["mannequin"] = "mannequin"
    key_color: Colour | None = None
    tolerance: float = Field(28.0, gt=0, le=100)
    mask_sha256: Sha | None = None
    """Uploaded mask image of the mannequin (white on the mannequin)."""
    inside_sha256: Sha | None = None
    """Uploaded photo of the garment's inside back (neck label area)."""


class OnModelOp(_Op):
    """The product photo (a garment: flat lay, hollow, or a mannequin op's result) put on the
    model (person) photo ``model_sha256``; the result is the model photo, dressed."""

    op: Literal["onmodel"] = "onmodel"
    model_sha256: Sha
    """Uploaded photo of the model: a person front-on, head to at least the hips."""
    person_segmenter: Literal["auto", "classical"] = "auto"
    """auto: a person ONNX model in ops.model_dir (u2net_human_seg, then the rembg models)
    when one is there, else classical."""
    inpaint_seams: bool = False
    """Repaint the garment's outline with the diffusion engine's inpainting (needs it)."""
    light: float = Field(0.8, ge=0, le=1)
    """How much of the model photo's light the garment takes on."""


Op = CutoutOp | ComposeOp | EnhanceOp | MannequinOp | OnModelOp
OPS: dict[str, type[_Op]] = {"cutout": CutoutOp, "compose": ComposeOp, "enhance": EnhanceOp,
                             "mannequin": MannequinOp, "onmodel": OnModelOp}


def _fmt_errors(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        msg = err.get("msg", "invalid").removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def validate_ops(ops: Sequence[Any]) -> list[Op]:
    """Validate ``RenderSpec.ops`` entries (``Operation`` models or dicts); OpsError if bad."""
    out: list[Op] = []
    for i, raw in enumerate(ops):
        data = raw.model_dump() if isinstance(raw, BaseModel) else dict(raw)
        name = data.get("op")
        if name not in OPS:
            raise OpsError(f"ops[{i}]: unknown op {name!r}; known ops: {', '.join(OPS)}")
        try:
            out.append(OPS[name].model_validate(data))  # type: ignore[arg-type]
        except ValidationError as e:
            raise OpsError(f"ops[{i}] ({name}): {_fmt_errors(e)}") from None
    _check_order(out)
    return out


def _check_order(ops: Sequence[Op]) -> None:
    seen_compose = seen_onmodel = False
    for i, op in enumerate(ops):
        if isinstance(op, (CutoutOp, ComposeOp, MannequinOp, OnModelOp)) and seen_onmodel:
            raise OpsError(f"ops[{i}]: {op.op} cannot follow onmodel (onmodel makes the "
                           "finished photo of the model; only enhance may follow it)")
        if isinstance(op, OnModelOp):
            if seen_compose:
                raise OpsError(f"ops[{i}]: onmodel must come before compose")
            seen_onmodel = True
        elif isinstance(op, ComposeOp):
            if seen_compose:
                raise OpsError(f"ops[{i}]: compose may appear once")
            seen_compose = True
        elif isinstance(op, (CutoutOp, MannequinOp)) and seen_compose:
            raise OpsError(f"ops[{i}]: {op.op} must come before compose (compose flattens the "
                           "product onto its backdrop)")


def needs_engine(ops: Sequence[Op], has_product: bool) -> bool:
    """Does this request need an engine image? Without a product the engine image *is* the
    image; with one, only a compose onto an engine-rendered backdrop needs it."""
    if not has_product:
        return True
    return any(isinstance(op, ComposeOp) and op.backdrop in (*ENGINE_BACKDROPS, "inpaint")
               for op in ops)


def backdrop_prompt(ops: Sequence[Op]) -> str | None:
    for op in ops:
        if isinstance(op, ComposeOp) and op.backdrop in ENGINE_BACKDROPS and op.prompt:
            return op.prompt
    return None


# -- running ---------------------------------------------------------------------------------

@dataclass
class OpContext:
    """What an op may need beyond its input image."""

    size: tuple[int, int]
    """The spec's (width, height)."""
    backdrop: Image.Image | None = None
    """The engine's image for this spec, when one was rendered."""
    products: Mapping[str, Image.Image] = field(default_factory=dict)
    segmenter: Callable[[str | None], Any] | None = None
    """name (None = the default) → Segmenter."""
    inpaint: Callable[[Image.Image, np.ndarray], Image.Image] | None = None
    """(composite, mask of what to repaint) → image, when the engine can inpaint."""
    person_segmenter: Callable[[str], Any] | None = None
    """"auto"/"classical" → the person segmenter (onmodel); None: classical."""


def _product(ctx: OpContext, sha: str, what: str) -> Image.Image:
    try:
        return ctx.products[sha]
    except KeyError:
        raise OpsError(f"{what} {sha[:12]}… was not uploaded with this request", 422) from None


def _segmenter(ctx: OpContext, name: str | None):
    if ctx.segmenter is not None:
        return ctx.segmenter(name)
    from swiftshot.ops.cutout import create_segmenter

    return create_segmenter(name or "classical")


def run_cutout(op: CutoutOp, image: Image.Image, ctx: OpContext) -> Image.Image:
    from swiftshot.ops.cutout import cutout

    return cutout(image, _segmenter(ctx, op.segmenter))


def run_compose(op: ComposeOp, image: Image.Image, ctx: OpContext) -> Image.Image:
    from swiftshot.ops.compose import ComposeParams, Placement, compose
    from swiftshot.ops.shadows import ShadowParams

    size = op.size or ctx.size
    if image.mode != "RGBA":
        # Compose places a cutout; an RGB photo is cut out first rather than pasted as a block.
        image = run_cutout(CutoutOp(), image, ctx)
    if op.shadow is True:
        shadow: ShadowParams | None = ShadowParams()
    elif op.shadow is False:
        shadow = None
    else:
        shadow = ShadowParams(**op.shadow.model_dump())
    params = ComposeParams(placement=Placement(op.fill, op.position), shadow=shadow,
                           reflection=op.reflection, colour_match=op.colour_match)
    if op.backdrop == "color":
        return compose(image, op.color, size, params)
    if op.backdrop == "image":
        if op.image_sha256 is None:
            raise OpsError('compose: backdrop "image" needs image_sha256 (an uploaded backdrop)')
        return compose(image, _product(ctx, op.image_sha256, "backdrop image"), size, params)
    if ctx.backdrop is None:
        raise OpsError(f'compose: backdrop "{op.backdrop}" needs an engine image and none was made')
    if op.backdrop == "inpaint":
        if ctx.inpaint is None:
            raise OpsError('compose: backdrop "inpaint" needs the diffusion engine with '
                           "inpainting (run_inpaint); use backdrop \"engine\" instead")
        placed = compose(image, ctx.backdrop, size, params)
        from swiftshot.ops.compose import fit, split

        rgb, alpha = split(image)
        f = fit(rgb, alpha, size, params.placement)
        keep = np.zeros((size[1], size[0]), np.float32)
        y0, x0 = max(f.y, 0), max(f.x, 0)
        sub = f.alpha[y0 - f.y:y0 - f.y + size[1] - y0, x0 - f.x:x0 - f.x + size[0] - x0]
        keep[y0:y0 + sub.shape[0], x0:x0 + sub.shape[1]] = sub
        return ctx.inpaint(placed, 1.0 - keep)
    return compose(image, ctx.backdrop, size, params)


def run_enhance(op: EnhanceOp, image: Image.Image, ctx: OpContext) -> Image.Image:
    from swiftshot.ops.enhance import EnhanceParams, enhance

    return enhance(image, EnhanceParams(op.white_balance, op.levels, op.denoise, op.sharpen,
                                        upscale=op.upscale))


def run_mannequin(op: MannequinOp, image: Image.Image, ctx: OpContext) -> Image.Image:
    from swiftshot.ops.mannequin import ghost_mannequin

    mask = None
    if op.mask_sha256:
        m = _product(ctx, op.mask_sha256, "mannequin mask").convert("L")
        if m.size != image.size:
            raise OpsError(f"mannequin mask is {m.width}x{m.height}; the photo is "
                           f"{image.width}x{image.height}")
        mask = np.asarray(m) > 127
    if mask is None and op.key_color is None:
        raise OpsError("mannequin: give key_color (the mannequin's colour) or mask_sha256")
    inside = _product(ctx, op.inside_sha256, "inside photo") if op.inside_sha256 else None
    return ghost_mannequin(image, mannequin_mask=mask, key_color=op.key_color,
                           tolerance=op.tolerance, inside=inside,
                           segmenter=_segmenter(ctx, None))


def run_onmodel(op: OnModelOp, image: Image.Image, ctx: OpContext) -> Image.Image:
    from swiftshot.ops.onmodel import dress

    model = _product(ctx, op.model_sha256, "model photo")
    if op.inpaint_seams and ctx.inpaint is None:
        raise OpsError("onmodel: inpaint_seams needs the diffusion engine with inpainting "
                       "(run_inpaint); leave inpaint_seams false for the feathered seam")
    person = ctx.person_segmenter(op.person_segmenter) if ctx.person_segmenter else None
    return dress(model, image, person_segmenter=person, garment_segmenter=_segmenter(ctx, None),
                 inpaint=ctx.inpaint if op.inpaint_seams else None, light=op.light).image


RUNNERS: dict[str, Callable[[Any, Image.Image, OpContext], Image.Image]] = {
    "cutout": run_cutout, "compose": run_compose, "enhance": run_enhance,
    "mannequin": run_mannequin, "onmodel": run_onmodel,
}


CARRIED_INFO = ("cutout_confidence", "cutout_notes")


def carry_info(src: Image.Image, dst: Image.Image) -> None:
    """Keep what a cutout said of itself (its confidence) on the images made from it."""
    for key in CARRIED_INFO:
        if key in src.info and key not in dst.info:
            dst.info[key] = src.info[key]


def run_ops(image: Image.Image, ops: Sequence[Op], ctx: OpContext) -> Image.Image:
    """Apply validated ops in order. A ValueError from an op (an empty cutout, a mask of the
    wrong size) is the request's fault: it leaves as OpsError naming the op."""
    for i, op in enumerate(ops):
        try:
            before = image
            image = RUNNERS[op.op](op, image, ctx)
            carry_info(before, image)
        except OpsError:
            raise
        except ValueError as e:
            raise OpsError(f"ops[{i}] ({op.op}): {e}") from None
    return image


__all__ = [
    "OPS", "Op", "OpsError", "OpContext", "CutoutOp", "ComposeOp", "EnhanceOp", "MannequinOp",
    "OnModelOp",
    "ShadowSpec", "validate_ops", "needs_engine", "backdrop_prompt", "run_ops", "parse_colour",
]
