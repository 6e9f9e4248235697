"""One request's recipe: which engine, then which product operations, in order.

``run_batch`` is the single place the request path turns specs into master images; the worker,
the CLI and the batch jobs all call it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from swiftshot import telemetry
from swiftshot.config import OpsSettings
from swiftshot.engines.base import Engine, StepCallback, check_cancel, wanted_previews
from swiftshot.ops import (
    ComposeOp,
    CutoutOp,
    OnModelOp,
    Op,
    OpContext,
    OpsError,
    backdrop_prompt,
    needs_engine,
    run_ops,
    validate_ops,
)
from swiftshot.ops.presets import apply_preset, get_preset
from swiftshot.spec import RenderSpec

OPS_VERSION = "53"
"""Part of every cache key: bump when an operation's pixels change, or what is cached with
them: the cutout's confidence and its notes go with the master (its meta entry, and the
answers of later hits), so a re-fit of the confidence bumps it too, or a hit would go on
saying the old figure (53: a thin dark line off the backdrop's hue by more than the backdrop's own colour noise is product, not shadow (grey metal legs on a wood table, under the chroma threshold the grain sets), ``cutout._off_hue_lines``, and the edge matte holds such a line at the lifted thin-parts value (stool19); 52: white on white: the upper half of a soft shadow line on the floor kept between white headphones' ear cups given back, ``cutout._drop_floor_line``; a white bottle's lit neck and shoulder left out by the outline's closing given back where the product's own column shading goes on up (a white strap walked up from its foot too), ``cutout._shading_goes_up``, and such pixels not cut again as a cast shadow; the confidence records ``white_up`` (not weighed); 51: a light sole's strip above a table's horizon, of the wall's colour, kept as the face it is of (``cutout._face_across`` in ``_open_pockets`` and ``_fill_sandwiched``), a label of the table's colour straight across a bottle filled (``cutout._band_across``), and the confidence's ``lit_grain`` doubt, a lit step beyond the outline on a grained table (plane19); 50: a stool's hard shadow parted from its grey legs and given back (``cutout._split_thin_legs``), and no smooth part taken on a plain sweep's rows whose 80th percentile a hard shadow's edges called textured (``cutout._plain_rows``: a bag's, a mug's shadow, the sweep inside a headphone band's shadow loop); 49: the floor left in a band round the gaps cut from between a stool's thin parts cut with them, ``cutout._trim_gap_rims``; the confidence of such a cutout re-weighed (``enclosed`` 4 -> 3, ``bg_inside`` off the outline, ``enclosed_unsup``); 48: every pair of side-strip steps that agree is a horizon candidate, not only the strongest (a light table's seam pair tilted across the horizon), and a grained table's border judged within 1.5 σ of its own noise when no candidate won the capped border (light planks and stone under a wall kept as product), ``cutout._find_horizon``, ``_grain_gain``; 47: the confidence's ``white_above`` doubt on white on white (white18); 46: 45's thin dark lines taken out of the shadow-coloured pixels (``cutout._dark_lines``) taken out again: a lamp's dark base on its pole, freed from the pole, was cut as its shadow; 45: a stool's thin dark legs and ring kept whole by the edge matte on a floor of their own grey, ``cutout._thin_parts``; the floor hung under the product by thin parts left out of the white-on-white reading, ``cutout._hung_bodies``; thin dark lines not taken for the product's shadow, ``cutout._dark_lines``; 44: the confidence's ``shadow_lit`` doubt, a blob of shadow kept with a lit band beyond the outline (a mug's soft cast shadow kept on a white sweep, said `high`, now `medium`/`low`); 43: the confidence's ``soft_shadow`` doubt on white on white, a stretch of the outline along shadow with no sharp step (a white bottle's soft cast shadow kept, said `high`, now `medium`), ``cutout._soft_shadow_outline``; 42: a horizon paired from the two side strips where one strip's table is the other's in the product's cast shadow (a light stone table kept as product under one surface), ``cutout._same_table``; 41: a dark cylinder's flank strip at the "black" line kept, not cut as a cast shadow (chrome bottles on grey), ``cutout._flank_goes_on``; 40: the confidence's ``white_left`` and ``white_apart`` doubts on white on white (white headphones whose band was dropped, or kept apart from the ear cups, said `high`), ``cutout._white_left``, ``_apart``; 39: the white-on-white faces (38) only on a neutral sweep, ``cutout._neutral_sweep`` (a plant on a wood table taken for white on white kept bands of the table); 38: 28's white-on-white faces back with their wisps mended: a small tinted piece joins only where it meets the evidence itself, and the tint is held to a 3×3 mean past a face's outline, ``cutout._joined_faces``, ``_held_tint``; 37: a smooth streak of a textured table running off from the product dropped, ``cutout._runs_off``; 36: the confidence's ``soft_rim`` doubt, an edge the matte left part-transparent over a wide rim (light sunglasses frames said `medium`, were `high`), ``cutout._soft_rim``; 35: a horizon paired from both strips that is not one line across the frame dropped, ``cutout._pair_traced``; 34: a dark product's lighter hard shadow split from it and given back, ``cutout._split_dark_faces``, and a horizon seen in one strip traced for its tilt, ``cutout._traced_tilt``; 33: the backdrop under sunglasses' bridge, a walled hole plain at the top and darkening downward into the product's shadow, given back, ``cutout._open_shaded_holes``; 32: the known shapes' never-seen misses (known16): side fits compared on the whole border, ``cutout._best_side_fit``; a black face going on past the 0.25 line kept, ``cutout._face_goes_on``; a JPEG-flattened band's edge unit from its tail, ``cutout._unflattened_median``; 31: 28's white-on-white faces taken out again (a white box's thin white wisps kept beside it broke held-out compliance, 99/100); 30: the backdrop in bays between a plant's leaves given back, ``cutout._open_pockets``; 29: the floor framed by a product's thin parts, a body of the mask that hangs from the rest by thin parts only and looks like the backdrop, cut down to its dark evidence, and no sole given back under thin parts, ``cutout._drop_framed_backdrop``; 28: a white product's faces told by their hue or by a flat face walled in by its outline, and the floor seen under a white band judged as a hole, on white on white, ``cutout._white_tint``, ``_keep_white_faces``, ``_see_through``; 27: the confidence's backdrop-pocket doubt, ``cutout._backdrop_pockets``,
pixels as in 26; 26: a part of the product between two parts of it that opens sideways through a gap in its outline judged as a hole, ``cutout._fill_sandwiched``; 25: the backdrop enclosed by a product's thin parts in its shadow
cut, ``cutout._drop_enclosed_shadow``, and a product that is mostly evidence no longer closed
as white on white, ``_mostly_outline``; 24: framing's backdrop (a one-strip horizon, a covered
side) and the white notch of the confidence, the fourteenth pass; 23: the confidence leaves a sole given back by ``_restore_lit_parts``
out of its looks-like-backdrop doubts, pixels as in 22; 22: the thirteenth pass, a light sole under the product given back
to it, ``cutout._restore_lit_parts``; 21: a black case's grey sheen kept, ``_darkens_into``,
and the lit-band doubt full from 0.13; 20: the confidence re-fitted on OPS 17/19's cutouts,
pixels as in 19; 18: the lit-band term of the confidence, pixels as in 17)."""


def source_type_for(spec: RenderSpec) -> str:
    """IPTC DigitalSourceType of the image this spec makes (Google Merchant asks for it)."""
    generated = spec.engine == "diffusion"
    if spec.product_sha256:
        return "compositeWithTrainedAlgorithmicMedia" if generated else "compositeSynthetic"
    return "trainedAlgorithmicMedia" if generated else "algorithmicMedia"


_OPS_SETTINGS = OpsSettings()


def configure(settings: OpsSettings) -> None:
    """Set the segmenter, model folder and user presets the pipeline uses (call at start-up)."""
    global _OPS_SETTINGS
    _OPS_SETTINGS = settings
    _segmenter.cache_clear()
    _person_segmenter.cache_clear()


@lru_cache(maxsize=4)
def _person_segmenter(kind: str, model_dir: Path | None):
    from swiftshot.ops.onmodel import PersonSegmenter

    return PersonSegmenter(kind, model_dir)


def person_segmenter_for(kind: str):
    try:
        return _person_segmenter(kind, _OPS_SETTINGS.model_dir)
    except (ValueError, FileNotFoundError) as e:
        raise OpsError(str(e)) from None


@lru_cache(maxsize=8)
def _segmenter(name: str, model_dir: Path | None):
    from swiftshot.ops.cutout import create_segmenter

    return create_segmenter(name, model_dir)


def segmenter_for(name: str | None):
    cfg = _OPS_SETTINGS
    try:
        return _segmenter(name or cfg.segmenter, cfg.model_dir)
    except (ValueError, FileNotFoundError) as e:
        raise OpsError(str(e)) from None


def run_batch(engine: Engine, specs: Sequence[RenderSpec], on_step: StepCallback | None = None,
              products: Mapping[str, Image.Image] | None = None) -> list[Image.Image]:
    """Render normalised specs that share one batch key. The stages, in order:

    plan (validate ops) → engine (only for specs that need its image) → ops → preset.
    A spec without a product is the engine's image (then its ops and preset, if any).
    """
    products = products or {}
    plans = [plan(spec) for spec in specs]
    preview_without_engine(specs, plans, on_step, products)
    t0 = time.time_ns()
    backdrops = render_engine(engine, specs, plans, on_step, products)
    t1 = time.time_ns()
    out = [apply_preset_stage(spec, run_ops_stage(engine, spec, ops, backdrop, products))
           for spec, ops, backdrop in zip(specs, plans, backdrops, strict=True)]
    telemetry.record_span("engine", t0, t1)  # (span record of the worker, when one is open)
    telemetry.record_span("ops", t1, time.time_ns())
    return out


def plan(spec: RenderSpec) -> list[Op]:
    """The spec's ops, validated. With a product and a preset but no cutout or compose, the
    product is cut out first: a preset places a product, not a photo of one."""
    ops = validate_ops(spec.ops)
    if spec.preset is not None:
        get_preset(spec.preset, _OPS_SETTINGS.presets)  # unknown preset: refuse before work
        if spec.product_sha256 and not any(isinstance(o, (CutoutOp, ComposeOp, OnModelOp))
                                           for o in ops):
            ops = [CutoutOp(), *ops]
    return ops


def render_engine(engine: Engine, specs: Sequence[RenderSpec], plans: Sequence[Sequence[Op]],
                  on_step: StepCallback | None,
                  products: Mapping[str, Image.Image] | None = None) -> list[Image.Image | None]:
    """One engine call for the specs that need an engine image; None for the others."""
    wanted = [i for i, (spec, ops) in enumerate(zip(specs, plans, strict=True))
              if needs_engine(ops, spec.product_sha256 is not None)]
    out: list[Image.Image | None] = [None] * len(specs)
    if not wanted:
        return out
    batch = [_backdrop_spec(specs[i], plans[i]) for i in wanted]
    on_step = _spec_previews(on_step, specs, plans, wanted, products or {})
    for i, image in zip(wanted, engine.run(batch, on_step), strict=True):
        out[i] = image
    return out


def _spec_previews(on_step: StepCallback | None, specs: Sequence[RenderSpec],
                   plans: Sequence[Sequence[Op]], wanted: Sequence[int],
                   products: Mapping[str, Image.Image]) -> StepCallback | None:
    """``on_step`` seeing previews per spec of the whole batch (the engine's list covers only
    the specs it renders), a product spec's preview being its product composed onto the coarse
    backdrop (a coarse render of the whole image, not the bare backdrop)."""
    if on_step is None or not wanted_previews(on_step):
        return on_step

    def step(i: int, n: int, preview: Any) -> bool | None:
        if preview is not None:
            images = preview if isinstance(preview, (list, tuple)) else [preview]
            full: list[Image.Image | None] = [None] * len(specs)
            for j, image in zip(wanted, images, strict=False):
                spec = specs[j]
                full[j] = image if image is None or spec.product_sha256 is None else \
                    coarse_product(spec, plans[j], image, products)
            preview = full
        return on_step(i, n, preview)

    step.previews = wanted_previews(on_step)  # type: ignore[attr-defined]
    return step


def coarse_product(spec: RenderSpec, ops: Sequence[Op], backdrop: Image.Image,
                   products: Mapping[str, Image.Image]) -> Image.Image:
    """A quick preview of a product render: the ops run at the coarse backdrop's scale (the
    photo shrunk to match, so its cutout costs a few ms), then the preset (if any) at that
    scale, unverified. Falls back to the backdrop itself when the recipe cannot be previewed
    that way (ops other than cutout/compose)."""
    photo = products.get(spec.product_sha256 or "")
    if photo is None or not all(isinstance(op, (CutoutOp, ComposeOp)) for op in ops):
        return backdrop
    scale = backdrop.width / max(1, spec.width)
    small_ops: list[Op] = []
    for op in ops:
        if isinstance(op, ComposeOp):
            update: dict[str, Any] = {"backdrop": "engine"} if op.backdrop == "inpaint" else {}
            if op.size is not None:
                update["size"] = (max(8, round(op.size[0] * scale)),
                                  max(8, round(op.size[1] * scale)))
            op = op.model_copy(update=update)
        small_ops.append(op)
    side = max(16, round(max(photo.size) * scale))
    small = photo.copy()
    small.thumbnail((side, side))
    ctx = OpContext(size=backdrop.size, backdrop=backdrop, products=products,
                    segmenter=segmenter_for)
    try:
        return _small_preset(spec, run_ops(small, small_ops, ctx), scale)
    except Exception:  # noqa: BLE001 - a preview that fails is simply not better than the backdrop
        return backdrop


def _small_preset(spec: RenderSpec, image: Image.Image, scale: float) -> Image.Image:
    """The spec's preset (if any) applied at ``scale`` of its canvas, without its check (a
    preview is not delivered)."""
    if spec.preset is None:
        return image
    rule = get_preset(spec.preset, _OPS_SETTINGS.presets)
    small = rule.model_copy(update={"width": max(8, round(rule.width * scale)),
                                    "height": max(8, round(rule.height * scale))})
    return apply_preset(image, small, spec.preset, verify=False)


PREVIEW_SCALE = 4
"""A preview is 1/4 of the final's side (as the engines' coarse renders)."""


def preview_without_engine(specs: Sequence[RenderSpec], plans: Sequence[Sequence[Op]],
                           on_step: StepCallback | None,
                           products: Mapping[str, Image.Image]) -> None:
    """One coarse preview, when previews are wanted, for each product spec that needs no
    engine image (a preset-only render, a compose on a colour): otherwise a stream shows the
    photo, then nothing until the final. The preview is the recipe run on the photo shrunk to
    a quarter of the output's side (its cutout costs a few ms) and placed by the preset on
    its colour at that size. Sent as step 1 of 2, before the engine's own steps (if any spec
    of the batch needs the engine)."""
    if on_step is None or not wanted_previews(on_step):
        return
    previews: list[Image.Image | None] = [None] * len(specs)
    for i, (spec, ops) in enumerate(zip(specs, plans, strict=True)):
        if spec.product_sha256 is not None and not needs_engine(ops, True):
            previews[i] = coarse_without_engine(spec, ops, products)
    if any(p is not None for p in previews):
        check_cancel(on_step, 1, 2, previews)


def coarse_without_engine(spec: RenderSpec, ops: Sequence[Op],
                          products: Mapping[str, Image.Image]) -> Image.Image | None:
    """The product render at 1/``PREVIEW_SCALE`` of its side (None when the recipe cannot be
    previewed that way: ops other than cutout/compose, or it fails on the small photo)."""
    photo = products.get(spec.product_sha256 or "")
    if photo is None or not all(isinstance(op, (CutoutOp, ComposeOp)) for op in ops):
        return None
    rule = get_preset(spec.preset, _OPS_SETTINGS.presets) if spec.preset else None
    composed = next((op for op in ops if isinstance(op, ComposeOp)), None)
    out_w, out_h = (rule.width, rule.height) if rule is not None else         (composed.size if composed is not None and composed.size else (spec.width, spec.height))
    k = PREVIEW_SCALE
    small_ops: list[Op] = []
    for op in ops:
        if isinstance(op, ComposeOp) and op.size is not None:
            op = op.model_copy(update={"size": (max(8, op.size[0] // k), max(8, op.size[1] // k))})
        small_ops.append(op)
    small = photo.copy()
    side = max(16, max(out_w, out_h) // k)
    small.thumbnail((side, side))
    ctx = OpContext(size=(max(8, spec.width // k), max(8, spec.height // k)), products=products,
                    segmenter=segmenter_for)
    try:
        return _small_preset(spec, run_ops(small, small_ops, ctx) if small_ops else small, 1 / k)
    except Exception:  # noqa: BLE001 - a preview that fails is simply not sent
        return None


def _backdrop_spec(spec: RenderSpec, ops: Sequence[Op]) -> RenderSpec:
    if spec.product_sha256 is None:
        return spec
    update: dict[str, object] = {"ops": (), "product_sha256": None, "preset": None}
    prompt = backdrop_prompt(ops)
    if prompt:
        update["prompt"] = " ".join(prompt.split())
    return spec.model_copy(update=update)


def run_ops_stage(engine: Engine, spec: RenderSpec, ops: Sequence[Op],
                  backdrop: Image.Image | None, products: Mapping[str, Image.Image]) -> Image.Image:
    if spec.product_sha256 is not None:
        if spec.product_sha256 not in products:
            raise OpsError(f"product image {spec.product_sha256[:12]}… was not given with the "
                           "request", 422)
        image = products[spec.product_sha256]
    elif backdrop is not None:
        image = backdrop
    else:  # pragma: no cover - render_engine gives every product-less spec an image
        raise OpsError("nothing to render: no product and no engine image")
    if not ops:
        return image
    ctx = OpContext(size=(spec.width, spec.height), backdrop=backdrop, products=products,
                    segmenter=segmenter_for, inpaint=_inpainter(engine, spec),
                    person_segmenter=person_segmenter_for)
    return run_ops(image, ops, ctx)


def _inpainter(engine: Engine, spec: RenderSpec):
    run_inpaint = getattr(engine, "run_inpaint", None)
    if run_inpaint is None:
        return None

    def inpaint(image: Image.Image, repaint: np.ndarray) -> Image.Image:
        mask = Image.fromarray((np.clip(repaint, 0, 1) * 255 + 0.5).astype(np.uint8), "L")
        target = spec.model_copy(update={"ops": (), "product_sha256": None, "preset": None})
        return run_inpaint([target], [image], [mask])[0]

    return inpaint


def apply_preset_stage(spec: RenderSpec, image: Image.Image) -> Image.Image:
    if spec.preset is None:
        return image
    rule = get_preset(spec.preset, _OPS_SETTINGS.presets)
    try:
        return apply_preset(image, rule, spec.preset)
    except ValueError as e:  # an empty cutout: the photo's fault, a 422 like run_ops's errors
        raise OpsError(f"preset {spec.preset}: {e}") from None
