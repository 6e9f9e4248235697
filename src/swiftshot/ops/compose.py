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

from swiftshot.ops.shadows import ShadowParams, reflection_layer, shadow_map

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


@dataclass(frozen=True)
class Fitted:
    rgb: np.ndarray
    """uint8 h×w×3 product pixels, scaled."""
    alpha: np.ndarray
    """float32 h×w alpha, scaled."""
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


def decontaminate(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Replace semi-transparent edge pixels by the colour of the solid product next to them."""
    edge = (alpha > 0.01) & (alpha < 0.97)
    if not edge.any():
        return rgb
    h, w = alpha.shape
    k = max(1, round(max(h, w) / 400))  # the fill colour is smooth: estimate it small
    small_rgb = cv2.resize(rgb, (max(1, w // k), max(1, h // k)), interpolation=cv2.INTER_AREA)
    solid = (alpha >= 0.97).astype(np.float32)
    small_w = cv2.resize(solid, (small_rgb.shape[1], small_rgb.shape[0]), interpolation=cv2.INTER_AREA)
    sigma = 3.0
    num = cv2.GaussianBlur(small_rgb.astype(np.float32) * small_w[..., None], (0, 0), sigma)
    den = cv2.GaussianBlur(small_w, (0, 0), sigma)[..., None]
    fill = np.where(den > 1e-3, num / np.maximum(den, 1e-3), small_rgb)
    fill = cv2.resize(fill.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    # Trust the pixel itself in proportion to its alpha: at alpha 1 it is pure product.
    t = np.clip((alpha - 0.5) * 2.0, 0, 1)[..., None]
    out = rgb.astype(np.float32) * t + fill * (1 - t)
    return np.where(edge[..., None], np.clip(out + 0.5, 0, 255), rgb).astype(np.uint8)


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
        out = np.empty((h, w, 3), np.uint8)
        out[...] = np.asarray(backdrop, np.uint8)
        return out
    img = backdrop.convert("RGB")
    if img.size != (w, h):
        # Cover the canvas (scale to the larger ratio, then centre-crop), never distort.
        s = max(w / img.width, h / img.height)
        rw, rh = max(w, round(img.width * s)), max(h, round(img.height * s))
        img = img.resize((rw, rh), Image.Resampling.BILINEAR)
        left, top = (rw - w) // 2, (rh - h) // 2
        img = img.crop((left, top, left + w, top + h))
    return np.array(img)


def _paste_region(canvas_shape: tuple[int, int], f: Fitted) -> tuple[slice, slice, slice, slice]:
    ch, cw = canvas_shape
    th, tw = f.alpha.shape
    cx0, cy0 = max(f.x, 0), max(f.y, 0)
    cx1, cy1 = min(f.x + tw, cw), min(f.y + th, ch)
    return (slice(cy0, cy1), slice(cx0, cx1), slice(cy0 - f.y, cy1 - f.y), slice(cx0 - f.x, cx1 - f.x))


def compose(product: Image.Image, backdrop: Image.Image | RGB, size: tuple[int, int] | None = None,
            params: ComposeParams | None = None) -> Image.Image:
    """The product (RGBA cutout) on the backdrop (image or colour), RGB at ``size``."""
    params = params or ComposeParams()
    if size is None:
        size = backdrop.size if isinstance(backdrop, Image.Image) else product.size
    w, h = size
    rgb, alpha = split(product)
    f = fit(rgb, alpha, size, params.placement)
    bg = backdrop_array(backdrop, size)
    prod = decontaminate(f.rgb, f.alpha)
    if params.colour_match > 0:
        mean = bg[:: max(1, h // 64), :: max(1, w // 64)].reshape(-1, 3).mean(0)
        prod = colour_match(prod, mean, params.colour_match)
    cy, cx, py, px = _paste_region((h, w), f)
    if cy.stop <= cy.start or cx.stop <= cx.start:
        return Image.fromarray(bg, "RGB")
    # The product's alpha on the whole canvas: shadows and reflection are made from it.
    placed_a = np.zeros((h, w), np.float32)
    placed_a[cy, cx] = f.alpha[py, px]
    if params.shadow is not None:
        bg = apply_shadow(bg, placed_a, params.shadow)
    if params.reflection > 0:
        placed_rgb = np.zeros_like(bg)
        placed_rgb[cy, cx] = prod[py, px]
        r_rgb, r_a = reflection_layer(placed_rgb, placed_a, params.reflection)
        bg = blend(r_rgb, bg, r_a)
    bg[cy, cx] = blend(prod[py, px], bg[cy, cx], f.alpha[py, px])
    return Image.fromarray(bg, "RGB")


def apply_shadow(bg: np.ndarray, alpha: np.ndarray, params: ShadowParams) -> np.ndarray:
    """Darken the backdrop under the shadow map; untouched where the map is 0."""
    dark = shadow_map(alpha, params)
    rows = np.nonzero(dark.max(1) > 1 / 512)[0]
    if not len(rows):
        return bg
    cols = np.nonzero(dark.max(0) > 1 / 512)[0]
    ys, xs = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
    keep = 1.0 - dark[ys, xs]
    keep[keep > 1 - 1 / 512] = 1.0  # below one level of 8-bit: leave the pixel exactly as it was
    bg[ys, xs] = blend(bg[ys, xs], np.zeros_like(bg[ys, xs]), keep)
    return bg


def blend(fg: np.ndarray, bg: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """fg·α + bg·(1-α) for uint8 images (OpenCV's threaded blend)."""
    a = np.ascontiguousarray(alpha, np.float32)
    return cv2.blendLinear(np.ascontiguousarray(fg), np.ascontiguousarray(bg), a, 1.0 - a)
