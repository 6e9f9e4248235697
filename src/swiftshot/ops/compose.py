"""Compose: place a cut-out product on a backdrop so that it looks photographed there.

Steps, in order (``compose`` calls them in this order):

1. ``fit`` — crop the cutout to its alpha's bounding box and scale it so its bounding box fills
   ``fill`` of the canvas (on whichever side limits it), centred on ``position``.
2. ``decontaminate`` — the product's edge pixels still carry the old backdrop's colour (a grey
   halo on a new white backdrop); they are replaced by the product's own colour from nearby.
3. ``colour_match`` — a touch of the new backdrop's colour cast on the product (light bounces).
4. shadows (contact + cast, :mod:`swiftshot.ops.shadows`) darken the backdrop, then an optional
   floor reflection, then the product on top.

Only the region the product and its shadow cover is touched; the rest of the backdrop is left
exactly as it was (a pure white backdrop stays RGB 255,255,255, which marketplaces check).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image

from swiftshot.ops.pixels import array as pixel_array
from swiftshot.ops.pixels import rgb_array
from swiftshot.ops.shadows import ShadowParams, darkening, reflection_layer, shadow_small

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Placement:
    fill: float = 0.8
    """Fraction of the canvas the product's bounding box fills on its limiting side."""
    position: tuple[float, float] = (0.5, 0.5)
    """Where the centre of the product's bounding box goes, as fractions of width, height."""


@dataclass(frozen=True)
class ComposeParams:
    placement: Placement = field(default_factory=Placement)
    shadow: ShadowParams | None = field(default_factory=ShadowParams)
    reflection: float = 0.0
    """Opacity of a floor reflection (0 = none; 0.2-0.35 looks like a glossy surface)."""
    colour_match: float = 0.12
    """How much of the backdrop's colour cast the product takes on (0 = none)."""


PLACED_INFO = "placed_product"
"""``image.info`` key under which ``compose`` leaves a :class:`PlacedProduct`."""


@dataclass(frozen=True)
class PlacedProduct:
    """Where ``compose`` put the product's own parts (the alpha it pasted, leftovers already
    dropped): the bounding box of alpha > 127 (the threshold ``presets.check`` measures the
    fill with), in pixels of an image of ``size``. A preset's check reads the fill from it
    instead of segmenting the composed image again; ``placed_box`` trusts it only on an image
    of that size (a resize or an upscale after compose leaves a stale one)."""

    box: tuple[int, int, int, int] | None
    """(x0, y0, x1, y1), exclusive ends, clipped to the canvas; None: nothing solid placed."""
    size: tuple[int, int]
    faint: bool = False
    """On some side of ``box`` the product's outermost solid pixels are within
    ``_FAINT_LEVELS`` of the backdrop's colour (a white product on white): a segmentation of
    the image, which is what ``check`` runs on a file, may end short of the box there, so a
    preset's own check segments too instead of trusting the box (``_faint_rim``)."""


def placed_box(image: Image.Image) -> tuple[int, int, int, int] | None | bool:
    """The :class:`PlacedProduct` box of an image compose made, or False when not known."""
    p = image.info.get(PLACED_INFO)
    if not isinstance(p, PlacedProduct) or p.size != image.size:
        return False
    return p.box


@dataclass(frozen=True)
class Fitted:
    rgb: np.ndarray
    """uint8 h×w×3 product pixels, scaled."""
    alpha: np.ndarray
    """float32 h×w alpha in 0..1 (uint8 0..255 inside ``compose``), scaled."""
    x: int
    y: int
    """Top-left corner on the canvas (may be negative: the product is clipped)."""


def split(product: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 RGB, float32 alpha) of an RGBA (or RGB: fully opaque) image."""
    if product.mode != "RGBA":
        rgb = np.asarray(product.convert("RGB"))
        return rgb, np.ones(rgb.shape[:2], np.float32)
    arr = np.asarray(product)
    return np.ascontiguousarray(arr[..., :3]), arr[..., 3].astype(np.float32) * (1 / 255.0)


def alpha_bbox(alpha: np.ndarray, threshold: float = 0.05) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1), exclusive ends, of alpha above threshold; None when nothing is there."""
    rows = np.nonzero(alpha.max(1) > threshold)[0]
    cols = np.nonzero(alpha.max(0) > threshold)[0]
    if not len(rows) or not len(cols):
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def fit(rgb: np.ndarray, alpha: np.ndarray, canvas: tuple[int, int], placement: Placement) -> Fitted:
    """Crop to the product, scale it to fill the canvas, and say where it goes."""
    cw, ch = canvas
    box = alpha_bbox(alpha)
    if box is None:
        raise ValueError("the cutout is empty: no product was found in the photo")
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    s = placement.fill * min(cw / bw, ch / bh)
    tw, th = max(1, round(bw * s)), max(1, round(bh * s))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
    crop_rgb = rgb[y0:y1, x0:x1]
    crop_a = alpha[y0:y1, x0:x1]
    if (tw, th) != (bw, bh):
        crop_rgb = cv2.resize(crop_rgb, (tw, th), interpolation=interp)
        crop_a = np.clip(cv2.resize(crop_a, (tw, th), interpolation=interp), 0, 1)
    px, py = placement.position
    return Fitted(np.ascontiguousarray(crop_rgb), crop_a, round(px * cw - tw / 2),
                  round(py * ch - th / 2))


def fit_rgba(rgba: np.ndarray, canvas: tuple[int, int], placement: Placement
             ) -> tuple[np.ndarray, np.ndarray, int, int]:
    """``fit`` for an RGBA uint8 array already cropped to the product: one resize for colour
    and alpha together. Returns (rgb, alpha uint8, x, y)."""
    cw, ch = canvas
    bh, bw = rgba.shape[:2]
    s = placement.fill * min(cw / bw, ch / bh)
    tw, th = max(1, round(bw * s)), max(1, round(bh * s))
    if (tw, th) != (bw, bh):
        rgba = cv2.resize(rgba, (tw, th), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    px, py = placement.position
    return (cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB), np.ascontiguousarray(rgba[..., 3]),
            round(px * cw - tw / 2), round(py * ch - th / 2))


_TRUST = np.clip((np.arange(256, dtype=np.uint8).astype(np.float32) * (1 / 255.0) - 0.5) * 2.0,
                 0, 1)
"""``decontaminate``'s trust in a pixel's own colour for each 8-bit alpha: the same float32
values as the expression on the gathered alpha, looked up."""


def decontaminate(rgb: np.ndarray, alpha: np.ndarray, inplace: bool = False) -> np.ndarray:
    """Replace semi-transparent edge pixels by the colour of the solid product next to them.
    ``alpha`` is float 0..1 or uint8 0..255. ``inplace``: write into ``rgb`` (a contiguous
    array the caller owns) instead of a copy."""
    a8 = alpha if alpha.dtype == np.uint8 else cv2.convertScaleAbs(alpha, alpha=255.0)
    edge = cv2.findNonZero(cv2.inRange(a8, 3, 247))  # ~30× faster than np.nonzero at 2000²
    if edge is None:
        return rgb
    edge = edge.reshape(-1, 2)
    ys, xs = edge[:, 1], edge[:, 0]
    h, w = a8.shape
    c = rgb.shape[2]
    k = max(1, round(max(h, w) / 400))  # the fill colour is smooth: estimate it small
    sh, sw = max(1, h // k), max(1, w // k)
    # An exact integer factor (the few rows/columns past it are dropped) takes OpenCV's fast
    # area path; a fractional one is several times slower.
    hk, wk = min(h, sh * k), min(w, sw * k)
    small_rgb = cv2.resize(rgb[:hk, :wk], (sw, sh), interpolation=cv2.INTER_AREA).astype(np.float32)
    small_w = cv2.resize((a8[:hk, :wk] >= 248).astype(np.float32), (sw, sh),
                         interpolation=cv2.INTER_AREA)
    # (OpenCV's multiply by the weight merged to three channels: the same products as numpy's
    # broadcast over a last axis of 3, several times faster.)
    num = cv2.GaussianBlur(cv2.multiply(small_rgb, cv2.merge([small_w] * c)), (0, 0), 3.0)
    den = cv2.GaussianBlur(small_w, (0, 0), 3.0)
    # The fill colour only where edge pixels read it (the same per-pixel arithmetic as over the
    # whole small copy), everything gathered by flat index: numpy's 2-D fancy indexing of an
    # h×w×3 array is several times slower than a take along the first axis of its (h·w)×3 view.
    si = (np.minimum(np.arange(h) * sh // h, sh - 1)[ys] * sw
          + np.minimum(np.arange(w) * sw // w, sw - 1)[xs])
    d = den.ravel().take(si)[:, None]
    f = np.where(d > 1e-3, num.reshape(-1, c).take(si, 0) / np.maximum(d, 1e-3),
                 small_rgb.reshape(-1, c).take(si, 0))
    # Trust the pixel itself in proportion to its alpha: at alpha 1 it is pure product.
    fi = ys.astype(np.intp) * w + xs
    t = _TRUST.take(a8.ravel().take(fi))[:, None]
    px = rgb.reshape(-1, c).take(fi, 0)
    out = rgb if inplace and rgb.flags.c_contiguous else rgb.copy()
    out.reshape(-1, c)[fi] = np.clip(px * t + f * (1 - t) + 0.5, 0, 255).astype(np.uint8)
    return out


def colour_match(rgb: np.ndarray, backdrop_mean: np.ndarray, strength: float) -> np.ndarray:
    """Tint the product towards the backdrop's colour cast (not its brightness)."""
    if strength <= 0:
        return rgb
    cast = backdrop_mean / max(float(backdrop_mean.mean()), 1.0)
    gain = 1.0 + strength * (cast - 1.0)
    if np.allclose(gain, 1.0, atol=2e-3):
        return rgb
    return cv2.multiply(rgb, np.array([*gain, 0.0]), dtype=cv2.CV_8U) if rgb.ndim == 3 else rgb


def backdrop_array(backdrop: Image.Image | RGB, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    if isinstance(backdrop, tuple):
        # Fill row-wise: broadcasting a 3-vector over the last axis is 15× slower.
        out = np.empty((h, w * 3), np.uint8)
        out[:] = np.tile(np.asarray(backdrop, np.uint8), w)
        return out.reshape(h, w, 3)
    return np.array(_cover(backdrop.convert("RGB"), size))


def _cover(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scale to the larger ratio, then centre-crop to ``size``: cover the canvas, never distort."""
    w, h = size
    if img.size == (w, h):
        return img
    s = max(w / img.width, h / img.height)
    rw, rh = max(w, round(img.width * s)), max(h, round(img.height * s))
    img = img.resize((rw, rh), Image.Resampling.BILINEAR)
    left, top = (rw - w) // 2, (rh - h) // 2
    return img.crop((left, top, left + w, top + h))


def _paste_region(canvas_shape: tuple[int, int], f: Fitted) -> tuple[slice, slice, slice, slice]:
    ch, cw = canvas_shape
    th, tw = f.alpha.shape
    cx0, cy0 = max(f.x, 0), max(f.y, 0)
    cx1, cy1 = min(f.x + tw, cw), min(f.y + th, ch)
    return (slice(cy0, cy1), slice(cx0, cx1), slice(cy0 - f.y, cy1 - f.y), slice(cx0 - f.x, cx1 - f.x))


def backdrop_image(backdrop: Image.Image | RGB, size: tuple[int, int]) -> Image.Image:
    """A new RGB image of ``size`` to draw on: a colour, or the backdrop scaled to cover."""
    if isinstance(backdrop, tuple):
        return Image.new("RGB", size, backdrop)
    img = backdrop.convert("RGB") if backdrop.mode != "RGB" else backdrop.copy()
    return _cover(img, size)


def own_alpha(a8: np.ndarray, min_part: float = 0.03) -> np.ndarray | None:
    """0/1 uint8 mask (at ``a8``'s size) of the product's own parts: the largest solid region
    (alpha ≥ 0.5) and any other at least ``min_part`` of its area, grown by a few pixels to
    keep their soft edges. None when nothing is solid. Found on a copy ≤ ~512 px long."""
    h, w = a8.shape
    k = max(1, max(h, w) // 512)
    small = a8 if k == 1 else cv2.resize(a8[:h // k * k, :w // k * k], (w // k, h // k),
                                         interpolation=cv2.INTER_AREA)
    solid = (small >= 128).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(solid, connectivity=8)
    if n <= 1:
        return None
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.zeros(n, np.uint8)
    keep[1:] = areas >= min_part * areas.max()
    # Faint alpha (< 0.5) touching a kept region is its edge; elsewhere it is a leftover.
    near = cv2.dilate(keep[labels], np.ones((5, 5), np.uint8))
    if k > 1:
        near = cv2.resize(near, (w // k * k, h // k * k), interpolation=cv2.INTER_NEAREST)
        near = cv2.copyMakeBorder(near, 0, h - near.shape[0], 0, w - near.shape[1],
                                  cv2.BORDER_REPLICATE)
    return near


def product_only(product: Image.Image) -> Image.Image:
    """The RGBA cutout with alpha outside the product's own parts (``own_alpha``) cleared."""
    arr = np.asarray(product)
    keep = own_alpha(arr[..., 3])
    if keep is None or keep[arr[..., 3] > 0].all():
        return product
    out = arr.copy()
    out[..., 3] *= keep
    return Image.fromarray(out, "RGBA")


def compose(product: Image.Image, backdrop: Image.Image | RGB, size: tuple[int, int] | None = None,
            params: ComposeParams | None = None) -> Image.Image:
    """The product (RGBA cutout) on the backdrop (image or colour), RGB at ``size``.

    Drawing is done with Pillow's in-place masked paste (C, no copies of the canvas): shadow
    as black pasted through the darkening mask, then the product through its alpha.
    """
    params = params or ComposeParams()
    if size is None:
        size = backdrop.size if isinstance(backdrop, Image.Image) else product.size
    w, h = size
    product = product if product.mode == "RGBA" else product.convert("RGBA")
    rgb, a8, x, y = fit_rgba(_own_crop(product), size, params.placement)
    canvas = backdrop_image(backdrop, size)
    prod = decontaminate(rgb, a8, inplace=True)  # fit_rgba's rgb is a new array
    if params.colour_match > 0:
        if isinstance(backdrop, tuple):
            mean = np.asarray(backdrop, np.float32)
        else:
            thumb = canvas.resize((16, 16), Image.Resampling.NEAREST)
            mean = np.asarray(thumb, np.float32).reshape(-1, 3).mean(0)
        prod = colour_match(prod, mean, params.colour_match)
    placed = Fitted(prod, a8, x, y)
    if params.shadow is not None:
        paste_darkening(canvas, darkening(_placed_small(placed, (h, w), SHADOW_SCALE),
                                          params.shadow))
    if params.reflection > 0:
        cy, cx, py, px = _paste_region((h, w), placed)
        placed_a = np.zeros((h, w), np.float32)
        placed_rgb = np.zeros((h, w, 3), np.uint8)
        placed_a[cy, cx] = a8[py, px] * (1 / 255.0)
        placed_rgb[cy, cx] = prod[py, px]
        r_rgb, r_a = reflection_layer(placed_rgb, placed_a, params.reflection)
        canvas.paste(Image.fromarray(r_rgb, "RGB"), (0, 0),
                     Image.fromarray(cv2.convertScaleAbs(r_a, alpha=255.0), "L"))
    canvas.paste(Image.fromarray(prod, "RGB"), (x, y), Image.fromarray(a8, "L"))
    faint = isinstance(backdrop, tuple) and _faint_rim(prod, a8, backdrop)
    canvas.info[PLACED_INFO] = PlacedProduct(_placed_bbox(a8, x, y, size), size, faint)
    return canvas


def _faint_rim(prod: np.ndarray, a8: np.ndarray, colour: RGB) -> bool:
    """Whether the box of the solid alpha (> 127, the box ``PlacedProduct`` gives) reaches
    farther, on some side, than the box of the solid pixels clearly off ``colour`` (by
    ``_FAINT_LEVELS`` in a channel) — by more than ``_FAINT_SLACK`` of the product's side.
    A white product on a white preset: its lit faces and any pale wisp of the old backdrop
    the cutout kept are a few levels off the white, which a segmentation of the result reads
    as backdrop or shadow (held-out white on white 1003 at 640², a white box with wisps
    beside it: the placed box gave Amazon's fill 86.8 %, ``check`` on the file 83.8 %).
    On a copy about 256 px long (a strided view: ~1 ms at 2000²)."""
    s = max(1, max(a8.shape) // 256)
    a = a8[::s, ::s]
    solid = a > 127
    solid_box = alpha_bbox(solid, 0.5)
    if solid_box is None:
        return False
    d = np.abs(prod[::s, ::s].astype(np.int16) - np.asarray(colour, np.int16))
    # (The largest channel by element-wise maxima: numpy's reduce over an axis of 3 took
    # ~3× as long, the same values.)
    off = np.maximum(np.maximum(d[..., 0], d[..., 1]), d[..., 2]) >= _FAINT_LEVELS
    seen = alpha_bbox(solid & off, 0.5)
    if seen is None:
        return True
    slack = _FAINT_SLACK * max(solid_box[2] - solid_box[0], solid_box[3] - solid_box[1])
    return (seen[0] - solid_box[0] > slack or seen[1] - solid_box[1] > slack
            or solid_box[2] - seen[2] > slack or solid_box[3] - seen[3] > slack)


_FAINT_LEVELS = 24
_FAINT_SLACK = 0.01


def _own_crop(product: Image.Image) -> np.ndarray:
    """The RGBA cutout's own parts (``product_only``), cropped to their bounding box, as an
    array. Placement comes from the product's own alpha: specks and leftovers of the old
    backdrop away from it would widen the bounding box (the product off centre, or over the
    edge). Only the alpha's bounding box is copied out of the image: the transparent rest of a
    2000² cutout is most of its pixels."""
    box = product.getbbox()  # an RGBA image's box is its alpha's (no 2000² channel copy)
    if box is None:
        raise ValueError("the cutout is empty: no product was found in the photo")
    arr = pixel_array(product, box)  # a view of the cutout's memory: never written to
    a = arr[..., 3]
    keep = own_alpha(a)
    if keep is None:
        return arr
    kept = a * keep
    if np.array_equal(kept, a):
        return arr
    arr = arr.copy()
    arr[..., 3] = kept
    inner = alpha_bbox(kept, 0)
    if inner is None:  # pragma: no cover - own_alpha keeps the largest solid part
        raise ValueError("the cutout is empty: no product was found in the photo")
    x0, y0, x1, y1 = inner
    return arr[y0:y1, x0:x1]


def _placed_bbox(a8: np.ndarray, x: int, y: int, size: tuple[int, int]
                 ) -> tuple[int, int, int, int] | None:
    box = alpha_bbox(a8, 127)
    if box is None:
        return None
    w, h = size
    x0, y0, x1, y1 = max(0, box[0] + x), max(0, box[1] + y), min(w, box[2] + x), min(h, box[3] + y)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def paste_darkening(canvas: Image.Image, small: np.ndarray) -> None:
    """Darken ``canvas`` in place by a small darkening map (upsampled on its own box only)."""
    # The map goes to 8 bits while small (below half a level rounds to 0: untouched) and is
    # upsampled as 8 bits: a quarter of the memory traffic of a full-size float box.
    found = _upsample_box(cv2.convertScaleAbs(small, alpha=255.0), (canvas.height, canvas.width))
    if found is None:
        return
    mask, box = found
    # Black pasted through the mask is roi·(255-mask)/255: the same pixels as Pillow's masked
    # colour paste, at about half its time (OpenCV's saturating multiply).
    roi = rgb_array(canvas, box)
    keep = cv2.cvtColor(cv2.bitwise_not(mask), cv2.COLOR_GRAY2RGB)
    canvas.paste(Image.fromarray(cv2.multiply(roi, keep, scale=1 / 255), "RGB"), box[:2])


def _upsample_box(small: np.ndarray, hw: tuple[int, int]
                  ) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
    """The darkening map's own box brought to full size: (map, (x0, y0, x1, y1)). ``small`` is
    float 0..1 or uint8 0..255 (then the result is uint8)."""
    floor = 0 if small.dtype == np.uint8 else 1 / 512
    rows = np.nonzero(small.max(1) > floor)[0]
    if not len(rows):
        return None
    cols = np.nonzero(small.max(0) > floor)[0]
    h, w = hw
    sh, sw = small.shape
    # Bring only the shadow's own box to full size (a pixel of margin for interpolation).
    y0, y1 = max(rows[0] - 1, 0), min(rows[-1] + 2, sh)
    x0, x1 = max(cols[0] - 1, 0), min(cols[-1] + 2, sw)
    fy0, fy1 = y0 * h // sh, min(h, y1 * h // sh)
    fx0, fx1 = x0 * w // sw, min(w, x1 * w // sw)
    # warpAffine maps the small box onto the full-size box with half-pixel centres kept.
    sx, sy = sw / w, sh / h
    m = np.float32([[sx, 0, (fx0 + 0.5) * sx - 0.5 - x0], [0, sy, (fy0 + 0.5) * sy - 0.5 - y0]])
    dark = cv2.warpAffine(np.ascontiguousarray(small[y0:y1, x0:x1]), m, (fx1 - fx0, fy1 - fy0),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)
    if dark.dtype != np.uint8:
        np.clip(dark, 0.0, 1.0, out=dark)
    return dark, (fx0, fy0, fx1, fy1)


SHADOW_SCALE = 6
"""Shadows are made at 1/6 of the canvas size: they are blurry, the eye cannot tell."""


def _placed_small(f: Fitted, canvas_hw: tuple[int, int], scale: int) -> np.ndarray:
    """The placed product's alpha on a 1/scale canvas, without building the full-size one."""
    h, w = canvas_hw
    sh, sw = max(1, h // scale), max(1, w // scale)
    th, tw = f.alpha.shape
    sx, sy = sw / w, sh / h
    area = cv2.resize(f.alpha, (max(1, round(tw * sx)), max(1, round(th * sy))),
                      interpolation=cv2.INTER_AREA)
    if area.dtype == np.uint8:
        area = area.astype(np.float32) * (1 / 255.0)
    out = np.zeros((sh, sw), np.float32)
    x0, y0 = round(f.x * sx), round(f.y * sy)
    ah, aw = area.shape
    ox0, oy0 = max(x0, 0), max(y0, 0)
    ox1, oy1 = min(x0 + aw, sw), min(y0 + ah, sh)
    if ox1 > ox0 and oy1 > oy0:
        out[oy0:oy1, ox0:ox1] = area[oy0 - y0:oy1 - y0, ox0 - x0:ox1 - x0]
    return out


def apply_shadow(bg: np.ndarray, alpha: np.ndarray, params: ShadowParams) -> np.ndarray:
    """Darken the backdrop under the shadow of a full-size alpha; untouched where there is none."""
    small, _ = shadow_small(alpha, params, SHADOW_SCALE)
    return apply_darkening(bg, small)


def apply_darkening(bg: np.ndarray, small: np.ndarray) -> np.ndarray:
    """Darken the array ``bg`` by a small darkening map (see ``paste_darkening``)."""
    found = _upsample_box(small, bg.shape[:2])
    if found is None:
        return bg
    dark, (fx0, fy0, fx1, fy1) = found
    keep = 1.0 - dark
    keep[keep > 1 - 1 / 512] = 1.0  # below one level of 8-bit: leave the pixel exactly as it was
    roi = bg[fy0:fy1, fx0:fx1]
    bg[fy0:fy1, fx0:fx1] = blend(roi, np.zeros_like(roi), keep)
    return bg


def blend(fg: np.ndarray, bg: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """fg·α + bg·(1-α) for uint8 images (OpenCV's threaded blend)."""
    a = np.ascontiguousarray(alpha, np.float32)
    return cv2.blendLinear(np.ascontiguousarray(fg), np.ascontiguousarray(bg), a, 1.0 - a)
