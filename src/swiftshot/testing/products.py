"""Synthetic seller photos with exact masks: the evaluation set of the cutout.

Each case draws a product (bottle, box, sneaker-like shoe, mug with a handle hole, a white item
on a white sweep ...) on a backdrop (white sweep, colour gradient, textured paper, grey seamless)
with the things real photos have: a soft cast shadow and a contact shadow on the backdrop (same
chroma as the backdrop, only darker), lens vignetting, sensor noise and JPEG artefacts. The true
coverage of the product is known, so a cutout can be scored by IoU.

Shapes are drawn 4× supersampled and area-averaged, so edges are anti-aliased like a photo's and
the mask is the product's exact fractional coverage.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

SS = 4  # supersampling factor of the drawn shapes


@dataclass(frozen=True)
class ProductPhoto:
    name: str
    image: Image.Image
    """RGB photo as a seller would upload it."""
    coverage: np.ndarray
    """float32 HxW in 0..1: the product's exact fractional coverage of each pixel."""

    @property
    def mask(self) -> np.ndarray:
        return self.coverage >= 0.5


@dataclass(frozen=True)
class Case:
    name: str
    product: str
    backdrop: str
    shadow: float = 0.45
    """Darkening of the backdrop at the core of the cast shadow (0 = none)."""
    shadow_dir: tuple[float, float] = (0.6, 0.15)
    noise: float = 2.0
    jpeg: int | None = 88


CASES: tuple[Case, ...] = (
    Case("bottle_white_sweep", "bottle", "white_sweep"),
    Case("box_gradient", "box", "gradient", shadow=0.5, shadow_dir=(-0.5, 0.2)),
    Case("sneaker_textured", "sneaker", "textured", shadow=0.4),
    Case("mug_handle_white_sweep", "mug", "white_sweep", shadow=0.4, shadow_dir=(0.3, 0.1)),
    Case("white_on_white", "white_box", "white_sweep", shadow=0.3),
    Case("bottle_grey_noisy_jpeg", "bottle", "grey", noise=4.0, jpeg=70),
    Case("dark_box_hard_shadow", "dark_box", "white_sweep", shadow=0.6, shadow_dir=(0.7, 0.25)),
    Case("mug_gradient_jpeg", "mug", "gradient", noise=3.0, jpeg=75, shadow_dir=(-0.4, 0.1)),
)
CASE_NAMES = tuple(c.name for c in CASES)


# -- backdrops -------------------------------------------------------------------------------

def _backdrop(kind: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    yn, xn = y / h, x / w
    vignette = 1.0 - 0.10 * ((xn - 0.5) ** 2 + (yn - 0.45) ** 2) * 2
    if kind == "white_sweep":
        # Wall fading into the floor through the sweep's curve; slightly warm, bright centre.
        level = 246 + 6 * np.clip(1 - np.abs(yn - 0.55) * 1.6, 0, 1)
        rgb = np.stack([level, level - 0.5, level - 2.0], -1)
        return np.clip(rgb * vignette[..., None] ** 0.3, 0, 255)
    if kind == "gradient":
        top, bottom = np.array([170, 196, 222], np.float32), np.array([118, 146, 178], np.float32)
        rgb = top + (bottom - top) * yn[..., None]
        return rgb * vignette[..., None]
    if kind == "grey":
        rgb = np.full((h, w, 3), (150, 150, 152), np.float32) * (0.9 + 0.1 * (1 - yn))[..., None]
        return rgb * vignette[..., None]
    if kind == "textured":
        # Kraft paper: low-frequency blotches plus fine fibre noise.
        low = cv2.resize(rng.normal(0, 1, (12, 12)).astype(np.float32), (w, h),
                         interpolation=cv2.INTER_CUBIC)
        fine = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 1.2)
        base = np.array([214, 190, 156], np.float32)
        rgb = base * (1 + 0.035 * low + 0.03 * fine)[..., None]
        return rgb * vignette[..., None]
    raise ValueError(f"unknown backdrop {kind!r}")


# -- products (drawn at SS× on a canvas of (h, w)) -------------------------------------------

def _canvas(h: int, w: int) -> np.ndarray:
    return np.zeros((h * SS, w * SS), np.uint8)


def _pts(points: list[tuple[float, float]], h: int, w: int) -> np.ndarray:
    return np.array([[int(px * w * SS), int(py * h * SS)] for px, py in points], np.int32)


def _ellipse(m: np.ndarray, cx: float, cy: float, rx: float, ry: float, h: int, w: int,
             value: int = 255, angle: float = 0) -> None:
    cv2.ellipse(m, (int(cx * w * SS), int(cy * h * SS)), (int(rx * w * SS), int(ry * h * SS)),
                angle, 0, 360, value, -1, cv2.LINE_8)


def _rect(m: np.ndarray, x0: float, y0: float, x1: float, y1: float, h: int, w: int,
          value: int = 255) -> None:
    cv2.rectangle(m, (int(x0 * w * SS), int(y0 * h * SS)), (int(x1 * w * SS), int(y1 * h * SS)),
                  value, -1)


def _down(m: np.ndarray, h: int, w: int) -> np.ndarray:
    return cv2.resize(m.astype(np.float32) / 255.0, (w, h), interpolation=cv2.INTER_AREA)


def _cylinder_shade(h: int, w: int, x0: float, x1: float) -> np.ndarray:
    """Lambert shading of a vertical cylinder spanning x0..x1 (fractions), lit from the left."""
    xn = (np.arange(w, dtype=np.float32) / w - x0) / max(x1 - x0, 1e-3)
    theta = (np.clip(xn, 0, 1) - 0.5) * np.pi
    shade = 0.72 + 0.38 * np.cos(theta - 0.5)
    return np.broadcast_to(shade[None, :], (h, w))


def _bottle(h, w, rng):
    m = _canvas(h, w)
    _rect(m, 0.38, 0.32, 0.62, 0.86, h, w)
    _ellipse(m, 0.50, 0.32, 0.12, 0.06, h, w)
    _ellipse(m, 0.50, 0.86, 0.12, 0.02, h, w)
    _rect(m, 0.46, 0.16, 0.54, 0.32, h, w)
    cap = _canvas(h, w)
    _rect(cap, 0.455, 0.10, 0.545, 0.17, h, w)
    cov, capc = _down(m, h, w), _down(cap, h, w)
    shade = _cylinder_shade(h, w, 0.38, 0.62)
    body = np.array([38, 120, 62], np.float32) * shade[..., None]
    highlight = np.exp(-(((np.arange(w) / w) - 0.44) / 0.012) ** 2)[None, :, None] * 120
    body = body + highlight
    label = _canvas(h, w)
    _rect(label, 0.38, 0.50, 0.62, 0.70, h, w)
    lab = _down(label, h, w)[..., None]
    body = body * (1 - lab) + np.array([236, 226, 200], np.float32) * shade[..., None] * lab
    capcol = np.array([200, 170, 60], np.float32) * shade[..., None]
    c = capc[..., None]
    rgb = body * (1 - c) + capcol * c
    return np.maximum(cov, capc), rgb


def _box(h, w, rng, front=(214, 92, 40), top=(238, 140, 80), side=(170, 70, 30)):
    f, t, s = _canvas(h, w), _canvas(h, w), _canvas(h, w)
    cv2.fillPoly(f, [_pts([(0.28, 0.40), (0.62, 0.40), (0.62, 0.84), (0.28, 0.84)], h, w)], 255)
    cv2.fillPoly(t, [_pts([(0.28, 0.40), (0.40, 0.30), (0.74, 0.30), (0.62, 0.40)], h, w)], 255)
    cv2.fillPoly(s, [_pts([(0.62, 0.40), (0.74, 0.30), (0.74, 0.74), (0.62, 0.84)], h, w)], 255)
    fc, tc, sc = _down(f, h, w), _down(t, h, w), _down(s, h, w)
    cov = np.clip(fc + tc + sc, 0, 1)
    rgb = (fc[..., None] * np.array(front, np.float32) + tc[..., None] * np.array(top, np.float32)
           + sc[..., None] * np.array(side, np.float32)) / np.maximum(cov, 1e-6)[..., None]
    tex = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 1.5)
    return cov, rgb * (1 + 0.03 * tex)[..., None]


def _white_box(h, w, rng):
    cov, _ = _box(h, w, rng)
    f, t = _canvas(h, w), _canvas(h, w)
    cv2.fillPoly(f, [_pts([(0.28, 0.40), (0.62, 0.40), (0.62, 0.84), (0.28, 0.84)], h, w)], 255)
    cv2.fillPoly(t, [_pts([(0.28, 0.40), (0.40, 0.30), (0.74, 0.30), (0.62, 0.40)], h, w)], 255)
    fc, tc = _down(f, h, w), _down(t, h, w)
    # A white carton: faces a few levels off the backdrop, the top face brighter than the sweep.
    rgb = np.full((h, w, 3), (234, 234, 232), np.float32)
    rgb = rgb * (1 - tc[..., None]) + np.array([253, 253, 253], np.float32) * tc[..., None]
    side = np.clip(cov - fc - tc, 0, 1)[..., None]
    rgb = rgb * (1 - side) + np.array([214, 214, 212], np.float32) * side
    yy = np.arange(h, dtype=np.float32)[:, None] / h
    rgb = rgb * (1 - 0.04 * np.clip((yy - 0.4) / 0.44, 0, 1))[..., None]
    return cov, rgb


def _dark_box(h, w, rng):
    return _box(h, w, rng, front=(34, 34, 38), top=(58, 58, 62), side=(22, 22, 26))


def _sneaker(h, w, rng):
    upper, sole = _canvas(h, w), _canvas(h, w)
    _ellipse(upper, 0.50, 0.60, 0.30, 0.13, h, w)
    _ellipse(upper, 0.36, 0.50, 0.13, 0.12, h, w)
    cv2.fillPoly(upper, [_pts([(0.22, 0.62), (0.30, 0.42), (0.46, 0.44), (0.80, 0.62)], h, w)], 255)
    cv2.fillPoly(sole, [_pts([(0.19, 0.66), (0.82, 0.64), (0.84, 0.72), (0.20, 0.74)], h, w)], 255)
    uc, sc = _down(upper, h, w), _down(sole, h, w)
    cov = np.clip(uc + sc, 0, 1)
    shade = 0.85 + 0.2 * (1 - np.arange(h, dtype=np.float32)[:, None] / h)
    up = np.array([40, 70, 160], np.float32) * shade[..., None] * np.ones((1, w, 1), np.float32)
    laces = _canvas(h, w)
    for i in range(4):
        x = 0.33 + i * 0.05
        cv2.line(laces, (int(x * w * SS), int(0.47 * h * SS)), (int((x + 0.04) * w * SS),
                 int(0.52 * h * SS)), 255, max(2, w * SS // 200))
    lc = _down(laces, h, w)[..., None]
    up = up * (1 - lc) + 240 * lc
    s = sc[..., None]
    rgb = up * (1 - s) + np.array([228, 224, 216], np.float32) * s
    return cov, rgb


def _mug(h, w, rng):
    body, handle, hole = _canvas(h, w), _canvas(h, w), _canvas(h, w)
    _rect(body, 0.30, 0.34, 0.62, 0.82, h, w)
    _ellipse(body, 0.46, 0.82, 0.16, 0.03, h, w)
    _ellipse(handle, 0.64, 0.55, 0.12, 0.15, h, w)
    _ellipse(hole, 0.64, 0.55, 0.065, 0.09, h, w)
    handle = cv2.subtract(handle, hole)
    bc, hc = _down(body, h, w), _down(handle, h, w)
    cov = np.clip(bc + hc, 0, 1)
    shade = _cylinder_shade(h, w, 0.30, 0.62)
    rgb = np.array([176, 36, 46], np.float32) * shade[..., None]
    rim = _canvas(h, w)
    _ellipse(rim, 0.46, 0.34, 0.16, 0.025, h, w)
    rc = _down(rim, h, w)[..., None]
    rgb = rgb * (1 - rc) + np.array([90, 20, 24], np.float32) * rc
    return cov, rgb


PRODUCTS: dict[str, Callable] = {
    "bottle": _bottle, "box": _box, "white_box": _white_box, "dark_box": _dark_box,
    "sneaker": _sneaker, "mug": _mug,
}


def _shadow(cov: np.ndarray, case: Case) -> np.ndarray:
    """Darkening factor (0..1) of the backdrop: a soft cast shadow plus a tight contact shadow."""
    h, w = cov.shape
    dx, dy = case.shadow_dir
    ys = np.nonzero(cov.max(1) > 0.5)[0]
    base = int(ys.max()) if len(ys) else h // 2
    # Cast: the silhouette sheared away from the light and squashed onto the floor.
    m = np.float32([[1, dx, -dx * base], [0, 0.35, base * (1 - 0.35) + dy * 0.05 * h]])
    cast = cv2.warpAffine(cov, m, (w, h))
    cast = cv2.GaussianBlur(cast, (0, 0), max(2.0, 0.02 * w))
    contact = np.zeros_like(cov)
    xs = np.nonzero(cov[max(base - 2, 0)] > 0.3)[0]
    if len(xs):
        cv2.ellipse(contact, (int(xs.mean()), base), (int((xs.max() - xs.min()) / 2 + 4), max(2, h // 120)),
                    0, 0, 360, 1.0, -1)
        contact = cv2.GaussianBlur(contact, (0, 0), max(1.5, 0.006 * w))
    return np.clip(case.shadow * (0.8 * cast + 0.6 * contact), 0, 0.7)


def make_photo(case: Case | str, size: tuple[int, int] = (640, 640), seed: int = 0) -> ProductPhoto:
    """Render one case at ``size`` (width, height)."""
    if isinstance(case, str):
        found = [c for c in CASES if c.name == case]
        if not found:
            raise ValueError(f"unknown case {case!r}; known: {', '.join(CASE_NAMES)}")
        case = found[0]
    w, h = size
    rng = np.random.default_rng(seed)
    bg = _backdrop(case.backdrop, h, w, rng)
    cov, prod = PRODUCTS[case.product](h, w, rng)
    if case.shadow:
        bg = bg * (1 - _shadow(cov, case))[..., None]
    c = cov[..., None]
    img = bg * (1 - c) + np.clip(prod, 0, 255) * c
    if case.noise:
        img = img + rng.normal(0, case.noise, img.shape)
    out = Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8), "RGB")
    if case.jpeg:
        buf = io.BytesIO()
        out.save(buf, "JPEG", quality=case.jpeg)
        out = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return ProductPhoto(case.name, out, cov.astype(np.float32))


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """IoU of two masks (bool, or float alpha thresholded at 0.5)."""
    a = pred >= 0.5 if pred.dtype != bool else pred
    b = truth >= 0.5 if truth.dtype != bool else truth
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


@dataclass(frozen=True)
class MannequinPhoto:
    image: Image.Image
    garment: np.ndarray
    """bool: the garment itself."""
    mannequin: np.ndarray
    """bool: visible mannequin (neck above the collar and chest inside the neck opening)."""
    opening: np.ndarray
    """bool: the part of the mannequin inside the neck opening (should become the inner back)."""
    key_color: tuple[int, int, int]


def make_mannequin_photo(size: tuple[int, int] = (480, 600), seed: int = 0) -> MannequinPhoto:
    """A navy T-shirt on a beige mannequin, on a white sweep, with the true masks."""
    w, h = size
    rng = np.random.default_rng(seed)
    key = (214, 188, 156)
    bg = _backdrop("white_sweep", h, w, rng)
    man, shirt, neck_cut = _canvas(h, w), _canvas(h, w), _canvas(h, w)
    _rect(man, 0.43, 0.06, 0.57, 0.30, h, w)          # neck column
    _ellipse(man, 0.50, 0.06, 0.09, 0.05, h, w)       # top of the neck form
    _ellipse(man, 0.50, 0.45, 0.24, 0.22, h, w)       # chest (mostly hidden by the shirt)
    cv2.fillPoly(shirt, [_pts([(0.30, 0.24), (0.42, 0.21), (0.58, 0.21), (0.70, 0.24),
                               (0.90, 0.40), (0.80, 0.48), (0.72, 0.40), (0.72, 0.92),
                               (0.28, 0.92), (0.28, 0.40), (0.20, 0.48), (0.10, 0.40)], h, w)], 255)
    _ellipse(neck_cut, 0.50, 0.21, 0.09, 0.08, h, w)
    shirt = cv2.subtract(shirt, neck_cut)
    mc, sc = _down(man, h, w), _down(shirt, h, w)
    man_vis = np.clip(mc - sc, 0, 1)
    shade = _cylinder_shade(h, w, 0.25, 0.75)[..., None]
    shirt_rgb = np.array([30, 44, 92], np.float32) * shade
    man_rgb = np.array(key, np.float32) * (0.93 + 0.07 * shade)
    img = bg * (1 - np.clip(mc + sc, 0, 1))[..., None] + man_rgb * man_vis[..., None] + \
        shirt_rgb * sc[..., None]
    img = img + rng.normal(0, 1.5, img.shape)
    out = Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8), "RGB")
    garment = sc >= 0.5
    mannequin = man_vis >= 0.5
    opening = mannequin & (_down(neck_cut, h, w) >= 0.5) & (np.arange(h)[:, None] > 0.21 * h)
    return MannequinPhoto(out, garment, mannequin, opening, key)


def base_band(coverage: np.ndarray, frac: float = 0.02) -> np.ndarray:
    """bool: the backdrop just under the product, a band ``frac`` of the product's height tall
    below the lowest pixel the product touches in each of its columns. The contact shadow lies
    there; a cutout that keeps it prints a sliver of the old backdrop under every composite."""
    h, w = coverage.shape
    solid = coverage >= 0.5
    rows = np.nonzero(solid.any(1))[0]
    if not len(rows):
        return np.zeros((h, w), bool)
    tall = max(2, round(frac * (rows[-1] - rows[0] + 1)))
    cols = np.nonzero(solid.any(0))[0]
    touched = coverage[:, cols] > 0.02
    lowest = h - 1 - np.argmax(touched[::-1], axis=0)
    y = np.arange(h)[:, None]
    band = np.zeros((h, w), bool)
    band[:, cols] = (y > lowest) & (y <= lowest + tall)
    return band & (coverage <= 0.0)


def base_band_alpha(alpha: np.ndarray, coverage: np.ndarray, frac: float = 0.02) -> float:
    """Mean alpha a cutout left in ``base_band`` (0 is right; a kept shadow band is 0.3–0.7)."""
    band = base_band(coverage, frac)
    return float(alpha[band].mean()) if band.any() else 0.0
