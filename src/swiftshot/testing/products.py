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
from functools import lru_cache

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
    category: str = "legacy"
    """Evaluation category (``CATEGORIES``); the 8 original cases are ``legacy``."""
    seed: int | None = None
    """Seed the case was drawn with (``eval_cases``); ``make_photo`` uses it by default."""
    frame: tuple[float, float, float] = (1.0, 0.0, 0.0)
    """Product placement: (scale, dx, dy) in frame fractions around the centre."""
    params: tuple[tuple[str, object], ...] = ()
    """Further drawing parameters (backdrop colours, horizon, texture, product colour ...)."""
    shadow_blur: float = 0.02
    """Blur of the cast shadow as a fraction of the width (0.004 hard .. 0.03 soft)."""
    exposure: float = 1.0
    """Brightness of the whole scene (low light < 1, before noise and JPEG)."""

    def param(self, key: str, default=None):
        return dict(self.params).get(key, default)


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

def _backdrop(kind: str, h: int, w: int, rng: np.random.Generator,
              case: Case | None = None) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    yn, xn = y / h, x / w
    vig = 0.10 if case is None else float(case.param("vignette", 0.10))
    vignette = 1.0 - vig * ((xn - 0.5) ** 2 + (yn - 0.45) ** 2) * 2
    if kind in ("wood", "linen", "stone"):
        base = np.array(case.param("bg_color", _TEXTURE_COLOURS[kind]) if case else
                        _TEXTURE_COLOURS[kind], np.float32)
        return base * _texture(kind, h, w, rng)[..., None] * vignette[..., None]
    if kind == "sweep":
        top = np.array(case.param("top"), np.float32)
        bottom = np.array(case.param("bottom"), np.float32)
        t = np.clip((yn - 0.1) / 0.8, 0, 1) ** float(case.param("gamma", 1.0))
        rgb = top + (bottom - top) * t[..., None]
        return rgb * vignette[..., None]
    if kind == "two_plane":
        return _two_plane(h, w, rng, case) * vignette[..., None]
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


_TEXTURE_COLOURS = {"wood": (168, 118, 74), "linen": (212, 202, 184), "stone": (150, 148, 144)}


def _noise_field(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    ch, cw = max(2, cells * h // max(h, w)), max(2, cells * w // max(h, w))
    return cv2.resize(rng.normal(0, 1, (ch, cw)).astype(np.float32), (w, h),
                      interpolation=cv2.INTER_CUBIC)


def _texture(kind: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative brightness texture (around 1) of a surface."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    side = float(max(h, w))
    if kind == "wood":
        # Planks along x, grain lines bent by low-frequency noise, dark seams between planks.
        warp = _noise_field(rng, h, w, 6) * 0.012 * side
        freq = rng.uniform(40, 70) / side
        grain = np.sin(2 * np.pi * (y + warp) * freq) ** 2
        fine = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 0.8)
        plank = max(24, int(side / rng.uniform(4, 7)))
        seam = (np.abs(((y + 0.3 * warp) % plank) - plank / 2) > plank / 2 - max(1.0, side / 500))
        t = 1 - 0.10 * grain + 0.02 * fine + 0.04 * _noise_field(rng, h, w, 4)
        return np.where(seam, t * 0.78, t)
    if kind == "linen":
        p = max(2.0, side / rng.uniform(150, 220))
        weave = np.sin(2 * np.pi * x / p) * np.sin(2 * np.pi * y / p)
        slub = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), sigmaX=1.0, sigmaY=6.0)
        return 1 + 0.025 * weave + 0.04 * slub + 0.02 * _noise_field(rng, h, w, 8)
    if kind == "stone":
        veins = np.abs(np.sin(2 * np.pi * (x / side * 3 + 1.5 * _noise_field(rng, h, w, 5))))
        speck = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 1.0)
        return (1 + 0.06 * _noise_field(rng, h, w, 10) + 0.03 * speck
                - 0.12 * np.clip(1 - veins * 12, 0, 1))
    raise ValueError(f"unknown texture {kind!r}")


def _two_plane(h: int, w: int, rng: np.random.Generator, case: Case) -> np.ndarray:
    """A table top meeting a wall at a horizon behind the product (a slight tilt, a soft line:
    the wall is out of focus), each plane lit on its own; the table may be textured."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    yn, xn = y / h, x / w
    horizon = float(case.param("horizon", 0.45)) + float(case.param("tilt", 0.0)) * (xn - 0.5)
    soft = float(case.param("soft", 0.004))
    t = np.clip(0.5 + (yn - horizon) / max(soft * 2, 1e-4), 0, 1)
    t = t * t * (3 - 2 * t)
    wall = np.array(case.param("wall"), np.float32) * (
        1 + float(case.param("wall_falloff", 0.06)) * (yn - 0.5))[..., None]
    wall = wall * (1 - 0.05 * (xn - float(case.param("light_x", 0.3))) ** 2)[..., None]
    table = np.array(case.param("table"), np.float32) * (
        1 + float(case.param("table_falloff", 0.08)) * (yn - 1.0))[..., None]
    tex = case.param("table_texture")
    if tex:
        table = table * _texture(tex, h, w, rng)[..., None]
    return wall * (1 - t[..., None]) + table * t[..., None]


# -- products (drawn at SS× on a canvas of (h, w)) -------------------------------------------

def _canvas(h: int, w: int) -> np.ndarray:
    return np.zeros((h * SS, w * SS), np.uint8)


# Where the product goes: products are drawn in frame fractions around (0.5, 0.5); the frame
# transform (scale, dx, dy) moves and scales them (off-centre and cropped framing). Set by
# ``make_photo`` for the duration of one drawing.
_FRAME: list[tuple[float, float, float]] = [(1.0, 0.0, 0.0)]


def _fx(px: float) -> float:
    s, dx, _ = _FRAME[-1]
    return px if (s, dx) == (1.0, 0.0) else (px - 0.5) * s + 0.5 + dx


def _fy(py: float) -> float:
    s, _, dy = _FRAME[-1]
    return py if (s, dy) == (1.0, 0.0) else (py - 0.5) * s + 0.5 + dy


def _fs(r: float) -> float:
    return r * _FRAME[-1][0]


def _pts(points: list[tuple[float, float]], h: int, w: int) -> np.ndarray:
    return np.array([[int(_fx(px) * w * SS), int(_fy(py) * h * SS)] for px, py in points],
                    np.int32)


def _ellipse(m: np.ndarray, cx: float, cy: float, rx: float, ry: float, h: int, w: int,
             value: int = 255, angle: float = 0) -> None:
    cv2.ellipse(m, (int(_fx(cx) * w * SS), int(_fy(cy) * h * SS)),
                (int(_fs(rx) * w * SS), int(_fs(ry) * h * SS)), angle, 0, 360, value, -1,
                cv2.LINE_8)


def _rect(m: np.ndarray, x0: float, y0: float, x1: float, y1: float, h: int, w: int,
          value: int = 255) -> None:
    cv2.rectangle(m, (int(_fx(x0) * w * SS), int(_fy(y0) * h * SS)),
                  (int(_fx(x1) * w * SS), int(_fy(y1) * h * SS)), value, -1)


def _down(m: np.ndarray, h: int, w: int) -> np.ndarray:
    return cv2.resize(m.astype(np.float32) / 255.0, (w, h), interpolation=cv2.INTER_AREA)


def _cylinder_shade(h: int, w: int, x0: float, x1: float) -> np.ndarray:
    """Lambert shading of a vertical cylinder spanning x0..x1 (fractions), lit from the left."""
    x0, x1 = _fx(x0), _fx(x1)
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
    highlight = np.exp(-(((np.arange(w) / w) - _fx(0.44)) / _fs(0.012)) ** 2)[None, :, None] * 120
    body = body + highlight
    label = _canvas(h, w)
    _rect(label, 0.38, 0.50, 0.62, 0.70, h, w)
    lab = _down(label, h, w)[..., None]
    body = body * (1 - lab) + np.array([236, 226, 200], np.float32) * shade[..., None] * lab
    capcol = np.array([200, 170, 60], np.float32) * shade[..., None]
    c = capc[..., None]
    rgb = body * (1 - c) + capcol * c
    return np.maximum(cov, capc), rgb


def _box(h, w, rng, front=None, top=None, side=None):
    if _P("color") is None:
        front, top, side = front or (214, 92, 40), top or (238, 140, 80), side or (170, 70, 30)
    else:
        col = np.array(_P("color"), np.float32)
        front = front or tuple(col)
        top = top or tuple(np.clip(col * 1.1 + 16, 0, 255))
        side = side or tuple(col * 0.8)
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
    rgb = rgb * (1 - 0.04 * np.clip((yy - _fy(0.4)) / _fs(0.44), 0, 1))[..., None]
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
        cv2.line(laces, (int(_fx(x) * w * SS), int(_fy(0.47) * h * SS)),
                 (int(_fx(x + 0.04) * w * SS), int(_fy(0.52) * h * SS)), 255,
                 max(2, int(_fs(1) * w * SS // 200)))
    lc = _down(laces, h, w)[..., None]
    up = up * (1 - lc) + 240 * lc
    s = sc[..., None]
    rgb = up * (1 - s) + np.array([228, 224, 216], np.float32) * s
    return cov, rgb


def _mug(h, w, rng, color=None):
    body, handle, hole = _canvas(h, w), _canvas(h, w), _canvas(h, w)
    _rect(body, 0.30, 0.34, 0.62, 0.82, h, w)
    _ellipse(body, 0.46, 0.82, 0.16, 0.03, h, w)
    _ellipse(handle, 0.64, 0.55, 0.12, 0.15, h, w)
    _ellipse(hole, 0.64, 0.55, 0.065, 0.09, h, w)
    handle = cv2.subtract(handle, hole)
    bc, hc = _down(body, h, w), _down(handle, h, w)
    cov = np.clip(bc + hc, 0, 1)
    shade = _cylinder_shade(h, w, 0.30, 0.62)
    col = np.array(color or _P("color", (176, 36, 46)), np.float32)
    rgb = col * shade[..., None]
    rim = _canvas(h, w)
    _ellipse(rim, 0.46, 0.34, 0.16, 0.025, h, w)
    rc = _down(rim, h, w)[..., None]
    rim_col = np.array((90, 20, 24), np.float32) if color is None and _P("color") is None \
        else col * 0.52
    rgb = rgb * (1 - rc) + rim_col * rc
    return cov, rgb


_PARAMS: list[dict] = [{}]


def _P(key: str, default=None):
    """A drawing parameter of the case being drawn."""
    return _PARAMS[-1].get(key, default)


def _white_bottle(h, w, rng):
    cov, _ = _bottle(h, w, rng)
    shade = _cylinder_shade(h, w, 0.38, 0.62)
    col = np.array(_P("color", (242, 241, 238)), np.float32)
    rgb = np.clip(col * np.clip(shade, 0.8, 1.04)[..., None], 0, 255)
    cap = _canvas(h, w)
    _rect(cap, 0.455, 0.10, 0.545, 0.17, h, w)
    c = _down(cap, h, w)[..., None]
    return cov, rgb * (1 - c) + np.array(_P("cap", (200, 200, 204)), np.float32) * c


def _ring(h, w, rng):
    """A roll of tape / a ring seen from the front: the backdrop shows through its middle."""
    outer, inner = _canvas(h, w), _canvas(h, w)
    r = float(_P("inner", 0.45))
    _ellipse(outer, 0.5, 0.55, 0.26, 0.26, h, w)
    _ellipse(inner, 0.5, 0.55, 0.26 * r, 0.26 * r, h, w)
    cov = _down(cv2.subtract(outer, inner), h, w)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = np.arctan2(y / h - _fy(0.55), x / w - _fx(0.5))
    col = np.array(_P("color", (60, 140, 200)), np.float32)
    rgb = col * (0.85 + 0.2 * np.cos(ang + 2.2))[..., None]
    return cov, rgb


def _bag(h, w, rng):
    """A handbag: body plus a thin strap arc whose inside shows the backdrop."""
    body, strap = _canvas(h, w), _canvas(h, w)
    cv2.fillPoly(body, [_pts([(0.26, 0.50), (0.74, 0.50), (0.80, 0.86), (0.20, 0.86)], h, w)], 255)
    thick = max(1, int(_fs(float(_P("strap", 0.012))) * w * SS))
    cv2.ellipse(strap, (int(_fx(0.5) * w * SS), int(_fy(0.50) * h * SS)),
                (int(_fs(0.17) * w * SS), int(_fs(0.26) * h * SS)), 0, 180, 360, 255, thick)
    bc, sc = _down(body, h, w), _down(strap, h, w)
    cov = np.clip(bc + sc, 0, 1)
    col = np.array(_P("color", (120, 70, 40)), np.float32)
    yy = np.arange(h, dtype=np.float32)[:, None, None] / h
    rgb = col * (1.05 - 0.25 * yy) * np.ones((1, w, 1), np.float32)
    flap = _canvas(h, w)
    cv2.fillPoly(flap, [_pts([(0.26, 0.50), (0.74, 0.50), (0.72, 0.62), (0.28, 0.62)], h, w)], 255)
    fc = _down(flap, h, w)[..., None]
    return cov, rgb * (1 - 0.25 * fc)


def _cable(h, w, rng):
    """Earbuds case with a thin cable curling away from it."""
    case_m, cable = _canvas(h, w), _canvas(h, w)
    _ellipse(case_m, 0.42, 0.64, 0.14, 0.10, h, w)
    _rect(case_m, 0.28, 0.64, 0.56, 0.76, h, w)
    t = np.linspace(0, 1, 80)
    amp = float(_P("amp", 0.12))
    xs = 0.56 + 0.30 * t
    ys = 0.70 - 0.40 * t + amp * np.sin(t * np.pi * 2.2)
    thick = max(1, int(_fs(float(_P("cable", 0.007))) * w * SS))
    cv2.polylines(cable, [_pts(list(zip(xs, ys, strict=True)), h, w)], False, 255, thick)
    plug = _canvas(h, w)
    _rect(plug, xs[-1] - 0.012, ys[-1] - 0.035, xs[-1] + 0.012, ys[-1], h, w)
    cc, kc, pc = _down(case_m, h, w), _down(cable, h, w), _down(plug, h, w)
    cov = np.clip(cc + kc + pc, 0, 1)
    col = np.array(_P("color", (30, 30, 34)), np.float32)
    rgb = col * (0.9 + 0.2 * np.random.default_rng(1).random((1, 1, 1), np.float32))
    rgb = np.broadcast_to(rgb, (h, w, 3)).copy()
    hl = np.exp(-(((np.arange(h) / h) - _fy(0.60)) / _fs(0.02)) ** 2)[:, None, None]
    return cov, rgb + 60 * hl * cc[..., None]


def _chrome(h, w, rng):
    """A glossy metal bottle: bands of the room mirrored on a cylinder, a black cap."""
    cov, _ = _bottle(h, w, rng)
    x0, x1 = _fx(0.38), _fx(0.62)
    xn = np.clip((np.arange(w, dtype=np.float32) / w - x0) / max(x1 - x0, 1e-3), 0, 1)
    theta = (xn - 0.5) * np.pi
    phase = float(_P("phase", 0.4))
    env = 0.5 + 0.5 * np.cos(3.0 * theta + phase)
    v = 35 + 200 * env ** 2
    tint = np.array(_P("tint", (1.0, 0.98, 0.95)), np.float32)
    rgb = np.broadcast_to((v[None, :, None] * tint), (h, w, 3)).copy()
    yy = np.arange(h, dtype=np.float32)[:, None] / h
    spec = np.exp(-((np.arange(w) / w - _fx(0.45)) / _fs(0.008)) ** 2)[None, :] * \
        ((yy > _fy(0.40)) & (yy < _fy(0.75)))
    rgb = rgb + 60 * spec[..., None]
    cap = _canvas(h, w)
    _rect(cap, 0.455, 0.10, 0.545, 0.17, h, w)
    c = _down(cap, h, w)[..., None]
    return cov, np.clip(rgb * (1 - c) + 28 * c, 0, 255)


def _glass(h, w, rng):
    """A tinted glass bottle: the backdrop seen through it (tinted, darker), dark walls seen
    edge-on at its outline, a highlight. Returns a third layer: how much backdrop shows."""
    cov, _ = _bottle(h, w, rng)
    edge = cov - cv2.erode(cov, np.ones((max(3, w // 90), max(3, w // 90)), np.uint8))
    tint = np.array(_P("tint", (0.55, 0.75, 0.45)), np.float32)
    see = np.clip(1 - 1.6 * edge, 0, 1) * float(_P("clarity", 0.75))
    rgb = np.full((h, w, 3), 20.0, np.float32) * (1 - see)[..., None]
    hl = np.exp(-((np.arange(w) / w - _fx(0.43)) / _fs(0.01)) ** 2)[None, :, None] * 110
    return cov, rgb + hl, see[..., None] * tint


PRODUCTS: dict[str, Callable] = {
    "bottle": _bottle, "box": _box, "white_box": _white_box, "dark_box": _dark_box,
    "sneaker": _sneaker, "mug": _mug, "white_bottle": _white_bottle, "ring": _ring,
    "bag": _bag, "cable": _cable, "chrome": _chrome, "glass": _glass,
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
    cast = cv2.GaussianBlur(cast, (0, 0), max(2.0 * min(1.0, case.shadow_blur / 0.02), case.shadow_blur * w))
    contact = np.zeros_like(cov)
    xs = np.nonzero(cov[max(base - 2, 0)] > 0.3)[0]
    if len(xs):
        cv2.ellipse(contact, (int(xs.mean()), base), (int((xs.max() - xs.min()) / 2 + 4), max(2, h // 120)),
                    0, 0, 360, 1.0, -1)
        contact = cv2.GaussianBlur(contact, (0, 0), max(1.5, 0.006 * w))
    return np.clip(case.shadow * (0.8 * cast + 0.6 * contact), 0, 0.7)


def make_photo(case: Case | str, size: tuple[int, int] = (640, 640), seed: int | None = None
               ) -> ProductPhoto:
    """Render one case at ``size`` (width, height). ``seed`` defaults to the case's own seed
    (0 for the legacy cases)."""
    if isinstance(case, str):
        found = [c for c in CASES if c.name == case]
        if not found:
            raise ValueError(f"unknown case {case!r}; known: {', '.join(CASE_NAMES)}")
        case = found[0]
    if seed is None:
        seed = case.seed or 0
    cache = _photo_cache_path(case, size, seed)
    if cache is not None:
        hit = _cache_read(cache, case.name)
        if hit is not None:
            return hit
    photo = _draw_photo(case, size, seed)
    if cache is not None:
        _cache_write(cache, photo)
    return photo


_SOURCE_DIGEST: list[str] = []
_MODULE_DIGESTS: dict[str, str] = {}


def _photo_cache_path(case: Case, size: tuple[int, int], seed: int):
    """Where ``SWIFTSHOT_PHOTO_CACHE`` (a folder; unset = no cache) keeps this photo: keyed on
    the case, size, seed and this module's own source, so a changed generator never reads an
    old photo (a shape drawn in another module keys on that module's source as well).
    Evaluations draw the same photos again and again (main against a branch, three
    sizes, every guard), and drawing costs 2-10x the cutout being measured."""
    import hashlib
    import os
    import sys
    from pathlib import Path

    root = os.environ.get("SWIFTSHOT_PHOTO_CACHE")
    if not root:
        return None
    if not _SOURCE_DIGEST:
        _SOURCE_DIGEST.append(hashlib.sha256(Path(__file__).read_bytes()).hexdigest())
    parts: tuple = (_SOURCE_DIGEST[0], case, tuple(size), seed)
    drawer = PRODUCTS.get(case.product)
    module = sys.modules.get(getattr(drawer, "__module__", "") or "")
    if module is not None and module is not sys.modules[__name__]:
        # A shape drawn in another module (``testing.novel``): its source keys the photo too.
        if module.__name__ not in _MODULE_DIGESTS:
            _MODULE_DIGESTS[module.__name__] = hashlib.sha256(
                Path(module.__file__).read_bytes()).hexdigest()
        parts += (_MODULE_DIGESTS[module.__name__],)
    key = hashlib.sha256(repr(parts).encode()).hexdigest()
    return Path(root) / key[:2] / f"{key}.npz"


def _cache_read(path, name: str) -> ProductPhoto | None:
    import zipfile

    try:
        with np.load(path) as z:
            rgb, cov = z["rgb"], z["coverage"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # absent, torn, foreign
        return None
    return ProductPhoto(name, Image.fromarray(rgb, "RGB"), cov)


def _cache_write(path, photo: ProductPhoto) -> None:
    import os
    import tempfile

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, rgb=np.asarray(photo.image), coverage=photo.coverage)
        os.replace(tmp, path)  # readers see the whole file or none (several runs share it)
    except OSError:
        pass  # a cache that cannot be written only costs speed


def _draw_photo(case: Case, size: tuple[int, int], seed: int) -> ProductPhoto:
    w, h = size
    rng = np.random.default_rng(seed)
    _FRAME.append(case.frame)
    _PARAMS.append(dict(case.params))
    try:
        bg = _backdrop(case.backdrop, h, w, rng, case)
        drawn = PRODUCTS[case.product](h, w, rng)
    finally:
        _FRAME.pop()
        _PARAMS.pop()
    cov, prod = drawn[0], drawn[1]
    if case.shadow:
        bg = bg * (1 - _shadow(cov, case))[..., None]
    prod = np.clip(prod, 0, 255)
    if len(drawn) > 2:  # see-through product: the (shadowed) backdrop shows through, tinted
        prod = prod + bg * drawn[2]
    c = cov[..., None]
    img = bg * (1 - c) + prod * c
    if case.exposure != 1.0:
        img = img * case.exposure
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


BLIND_SEEDS: tuple[range, ...] = (range(5130, 5160), range(5540, 5700))
"""Known-shape seeds kept for the lead's blind checks: never tuned on, and no test sets a floor
on them (``case_iou`` refuses them, as the held-out seeds). A range run once as blind is
burned and may be opened for diagnosis (5160-5199 and 5500-5539 are: the tests use 5183,
5193, 5196 and 5508). 5600-5639, burned at the fifteenth session's end, stay listed until a
test needs one; 5540-5599 and 5640-5699 are still unseen."""


def case_iou(category: str, seed: int, side: int = 640, segmenter=None) -> float:
    """IoU of a segmenter's mask (classical by default) with the truth on the evaluation case
    ``category``/``seed`` drawn at ``side``²: the tests' floor on one case. Refuses the
    held-out and blind seeds (a floor set on them would be tuning on them)."""
    if seed in HELDOUT_SEEDS or any(seed in r for r in BLIND_SEEDS):
        raise ValueError(f"seed {seed} is held out or blind: no test floors on it")
    photo = make_photo(_eval_case(category, seed), (side, side))
    return iou((segmenter or _classical()).mask(photo.image), photo.coverage)


@lru_cache(maxsize=1)
def _classical():
    from swiftshot.ops.cutout import ClassicalSegmenter

    return ClassicalSegmenter()


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


# -- the evaluation set: categories × seeds --------------------------------------------------

CATEGORIES: tuple[str, ...] = (
    "two_plane", "holes", "white_on_white", "glossy_transparent", "thin_parts", "textured",
    "gradient_vignette", "cast_shadows", "low_light", "framing",
)
"""What sellers shoot that a one-colour backdrop model does not cover (issue 10)."""

TUNING_SEEDS: tuple[int, ...] = tuple(range(0, 5))
"""Seeds the cutout was tuned on (looked at, floors set from)."""
HELDOUT_SEEDS: tuple[int, ...] = tuple(range(1000, 1010))
"""Seeds never looked at while tuning: the figures reported as held-out come from these.
Ten a category since the sixth pass (1000-1004 until then; 1005-1009 first printed
4 Dec 2026, per category only)."""

_PRODUCT_COLOURS = ((176, 36, 46), (40, 70, 160), (38, 120, 62), (214, 92, 40), (232, 190, 40),
                    (120, 70, 40), (30, 30, 34), (90, 40, 120), (20, 130, 140), (200, 80, 120))
_WALLS = ((236, 232, 226), (206, 212, 220), (226, 214, 196), (190, 196, 190), (240, 240, 240),
          (214, 200, 210), (170, 178, 186))
_TABLES = ((150, 112, 80), (246, 244, 240), (120, 124, 130), (196, 172, 140), (96, 84, 76),
           (226, 226, 222), (180, 150, 120))


def _pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def _colour_far(rng: np.random.Generator, seq, *avoid, min_dist: float = 70.0):
    """A colour from ``seq`` at least ``min_dist`` from each colour in ``avoid``."""
    options = [c for c in seq if all(np.linalg.norm(np.subtract(c, a)) >= min_dist for a in avoid)]
    return _pick(rng, options or seq)


def _simple_backdrop(rng: np.random.Generator) -> tuple[str, tuple]:
    kind = _pick(rng, ("white_sweep", "sweep", "grey", "gradient", "two_plane"))
    return kind, _backdrop_params(kind, rng)


def _backdrop_params(kind: str, rng: np.random.Generator) -> tuple:
    if kind == "sweep":
        top = tuple(int(v) for v in rng.integers(150, 246, 3))
        dark = rng.uniform(0.6, 0.9)
        bottom = tuple(int(v * dark) for v in top)
        return (("top", top), ("bottom", bottom), ("gamma", float(rng.uniform(0.7, 1.6))))
    if kind == "two_plane":
        wall = _pick(rng, _WALLS)
        table = _colour_far(rng, _TABLES, wall, min_dist=45.0)
        return (("wall", wall), ("table", table), ("horizon", float(rng.uniform(0.25, 0.7))),
                ("tilt", float(rng.uniform(-0.03, 0.03))), ("soft", float(rng.uniform(0.002, 0.01))),
                ("light_x", float(rng.uniform(0.1, 0.9))))
    return ()


def _eval_case(category: str, seed: int) -> Case:
    rng = np.random.default_rng([seed, CATEGORIES.index(category), 10])
    shadow = float(rng.uniform(0.25, 0.5))
    sdir = (float(rng.uniform(-0.7, 0.7)), float(rng.uniform(0.0, 0.25)))
    noise, jpeg = float(rng.uniform(1.5, 3.0)), int(rng.integers(80, 93))
    frame = (float(rng.uniform(0.85, 1.05)), float(rng.uniform(-0.05, 0.05)),
             float(rng.uniform(-0.03, 0.03)))
    extra: dict = {}
    blur, exposure = float(rng.uniform(0.012, 0.03)), 1.0
    colour = _pick(rng, _PRODUCT_COLOURS)
    if category == "two_plane":
        product = _pick(rng, ("bottle", "box", "mug", "sneaker", "bag", "ring"))
        backdrop, bparams = "two_plane", _backdrop_params("two_plane", rng)
    elif category == "holes":
        product = _pick(rng, ("mug", "ring", "bag"))
        backdrop, bparams = _simple_backdrop(rng)
        extra = {"strap": float(rng.uniform(0.015, 0.03)), "inner": float(rng.uniform(0.35, 0.6))}
    elif category == "white_on_white":
        product = _pick(rng, ("white_box", "white_bottle", "mug"))
        backdrop, bparams = "white_sweep", ()
        v = int(rng.integers(232, 248))
        colour = (v, v - int(rng.integers(0, 3)), v - int(rng.integers(0, 5)))
        extra = {"cap": tuple(int(x) for x in rng.integers(150, 230, 3))}
    elif category == "glossy_transparent":
        product = _pick(rng, ("chrome", "glass"))
        backdrop = _pick(rng, ("white_sweep", "sweep", "grey"))
        bparams = _backdrop_params(backdrop, rng)
        extra = {"phase": float(rng.uniform(-1, 1)),
                 "tint": tuple(float(x) for x in rng.uniform(0.4, 0.95, 3)) if product == "glass"
                 else tuple(float(x) for x in rng.uniform(0.92, 1.0, 3)),
                 "clarity": float(rng.uniform(0.55, 0.8))}
    elif category == "thin_parts":
        product = _pick(rng, ("bag", "cable"))
        backdrop, bparams = _simple_backdrop(rng)
        extra = {"strap": float(rng.uniform(0.006, 0.012)), "cable": float(rng.uniform(0.004, 0.009)),
                 "amp": float(rng.uniform(0.05, 0.15))}
    elif category == "textured":
        product = _pick(rng, ("bottle", "box", "mug", "sneaker", "bag"))
        tex = _pick(rng, ("wood", "linen", "stone"))
        if rng.random() < 0.5:
            backdrop, bparams = tex, (("bg_color", _pick(rng, (_TEXTURE_COLOURS[tex],
                                                            (196, 150, 104), (180, 176, 170)))),)
        else:
            backdrop = "two_plane"
            bparams = _backdrop_params("two_plane", rng) + (("table_texture", tex),)
        colour = _colour_far(rng, _PRODUCT_COLOURS, (168, 118, 74), (150, 148, 144))
    elif category == "gradient_vignette":
        product = _pick(rng, ("bottle", "box", "mug", "sneaker"))
        backdrop, bparams = "sweep", _backdrop_params("sweep", rng)
        extra = {"vignette": float(rng.uniform(0.15, 0.35))}
    elif category == "cast_shadows":
        product = _pick(rng, ("bottle", "box", "mug", "dark_box", "bag"))
        backdrop = _pick(rng, ("white_sweep", "sweep", "grey"))
        bparams = _backdrop_params(backdrop, rng)
        shadow = float(rng.uniform(0.4, 0.65))
        blur = float(_pick(rng, (rng.uniform(0.003, 0.007), rng.uniform(0.02, 0.035))))
        sdir = (float(rng.uniform(-1.0, 1.0)), float(rng.uniform(0.0, 0.3)))
    elif category == "low_light":
        product = _pick(rng, ("bottle", "box", "mug", "sneaker", "ring"))
        backdrop, bparams = _simple_backdrop(rng)
        exposure = float(rng.uniform(0.35, 0.6))
        noise, jpeg = float(rng.uniform(3.0, 6.0)), int(rng.integers(55, 76))
    elif category == "framing":
        product = _pick(rng, ("bottle", "box", "mug", "sneaker", "bag"))
        backdrop, bparams = _simple_backdrop(rng)
        if rng.random() < 0.5:  # off-centre
            frame = (float(rng.uniform(0.6, 0.85)), float(rng.choice([-1, 1]) * rng.uniform(0.12, 0.2)),
                     float(rng.uniform(-0.12, 0.08)))
        else:  # partly cropped by the frame's edge (bottom or a side)
            s = float(rng.uniform(1.15, 1.4))
            if rng.random() < 0.5:
                frame = (s, float(rng.uniform(-0.05, 0.05)), float(rng.uniform(0.2, 0.3)))
            else:
                frame = (s, float(rng.choice([-1, 1]) * rng.uniform(0.22, 0.3)), 0.0)
    else:
        raise ValueError(f"unknown category {category!r}; known: {', '.join(CATEGORIES)}")
    params = dict(bparams)
    params.update(extra)
    params["color"] = colour
    return Case(f"{category}_{seed}_{product}_{backdrop}", product, backdrop, shadow=shadow,
                shadow_dir=sdir, noise=noise, jpeg=jpeg, category=category, seed=seed,
                frame=frame, params=tuple(params.items()), shadow_blur=blur, exposure=exposure)


def eval_cases(seeds: tuple[int, ...] | range = TUNING_SEEDS,
               categories: tuple[str, ...] = CATEGORIES) -> list[Case]:
    """One case per category and seed, drawn from the seed: products, backdrops, framing,
    light and artefacts vary within the category's range."""
    return [_eval_case(c, s) for c in categories for s in seeds]


# -- scoring ---------------------------------------------------------------------------------

def _boundary(m: np.ndarray) -> np.ndarray:
    m8 = m.astype(np.uint8)
    return (m8 - cv2.erode(m8, np.ones((3, 3), np.uint8))) > 0


def boundary_f(pred: np.ndarray, truth: np.ndarray, tol: float = 0.005) -> float:
    """Boundary F-score (Perazzi et al., DAVIS): precision and recall of the predicted outline
    against the true one within ``tol`` of the image diagonal (5 px at 640²)."""
    a = pred >= 0.5 if pred.dtype != bool else pred
    b = truth >= 0.5 if truth.dtype != bool else truth
    ba, bb = _boundary(a), _boundary(b)
    if not ba.any() and not bb.any():
        return 1.0
    if not ba.any() or not bb.any():
        return 0.0
    r = max(1, round(tol * np.hypot(*a.shape)))
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    near_b = cv2.dilate(bb.astype(np.uint8), disc) > 0
    near_a = cv2.dilate(ba.astype(np.uint8), disc) > 0
    precision = float((ba & near_b).sum() / ba.sum())
    recall = float((bb & near_a).sum() / bb.sum())
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def evaluate(segment: Callable[[Image.Image], np.ndarray], cases: list[Case],
             size: tuple[int, int] = (640, 640), segmenter=None) -> list[dict]:
    """IoU and boundary F of ``segment`` (image -> alpha) on each case. With ``segmenter``
    (a ``Segmenter``; ``segment`` is then ignored) each row also has the cutout's
    ``confidence``, its ``level`` and ``notes``, and for the classical segmenter the
    ``signals`` it was weighed from."""
    from swiftshot.ops.cutout import (
        ClassicalSegmenter,
        _confidence_from,
        confidence_label,
        cutout,
    )

    rows = []
    for case in cases:
        photo = make_photo(case, size)
        extra: dict = {}
        if segmenter is None:
            alpha = segment(photo.image)
        elif isinstance(segmenter, ClassicalSegmenter):
            rgb = np.asarray(photo.image)
            found = segmenter.find(rgb)
            signals = dict(found.signals or {})
            alpha = segmenter.refine(found, rgb, signals).astype(np.float32) * (1 / 255.0)
            conf, why = _confidence_from(signals)
            extra = {"confidence": conf, "notes": list(why),
                     "signals": {k: round(float(v), 5) for k, v in signals.items()}}
        else:
            out = cutout(photo.image, segmenter)
            alpha = np.asarray(out.getchannel("A"), np.float32) * (1 / 255.0)
            extra = {"confidence": float(out.info["cutout_confidence"]),
                     "notes": list(out.info.get("cutout_notes", ()))}
        if extra:
            extra["level"] = confidence_label(extra["confidence"])
        rows.append({"case": case.name, "category": case.category, "seed": case.seed,
                     "size": list(size), "iou": iou(alpha, photo.coverage),
                     "bf": boundary_f(alpha, photo.coverage), **extra})
    return rows


def by_category(rows: list[dict]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for cat in dict.fromkeys(r["category"] for r in rows):
        ious = [r["iou"] for r in rows if r["category"] == cat]
        bfs = [r["bf"] for r in rows if r["category"] == cat]
        out[cat] = {"n": len(ious), "mean_iou": float(np.mean(ious)), "min_iou": float(np.min(ious)),
                    "mean_bf": float(np.mean(bfs)), "min_bf": float(np.min(bfs))}
    return out


def report_table(stats: dict[str, dict[str, float]], goal_mean: float = 0.97,
                 goal_min: float = 0.93) -> str:
    lines = ["| category | n | mean IoU | min IoU | mean boundary F | min boundary F | goal |",
             "|---|---|---|---|---|---|---|"]
    for cat, s in stats.items():
        ok = s["mean_iou"] >= goal_mean and s["min_iou"] >= goal_min
        lines.append(f"| {cat} | {s['n']} | {s['mean_iou']:.3f} | {s['min_iou']:.3f} | "
                     f"{s['mean_bf']:.3f} | {s['min_bf']:.3f} | {'met' if ok else '**missed**'} |")
    return "\n".join(lines)


# -- confidence against IoU ------------------------------------------------------------------

BAD_IOU = 0.93
"""A cutout under this IoU should be said ``low`` (the issue's per-case floor)."""
GOOD_IOU = 0.97
"""...and one at or over this should not (the issue's mean goal)."""


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean of their ranks), for Spearman's correlation."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), np.float64)
    ranks[order] = np.arange(len(x), dtype=np.float64)
    xs = x[order]
    i = 0
    while i < len(xs):
        j = i
        while j + 1 < len(xs) and xs[j + 1] == xs[i]:
            j += 1
        if j > i:
            ranks[order[i:j + 1]] = (i + j) / 2.0
        i = j + 1
    return ranks


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def confidence_report(rows: list[dict], low: float | None = None) -> dict:
    """How well the cutouts' confidence predicts their IoU over ``rows`` (``evaluate`` rows
    with a ``confidence``): Pearson and Spearman correlation, and the practical figures —
    of the cutouts under ``BAD_IOU`` how many are said ``low`` (caught), of those at or over
    ``GOOD_IOU`` how many are said ``low`` anyway (false alarms), per category too."""
    from swiftshot.ops.cutout import LOW_CONFIDENCE

    low = LOW_CONFIDENCE if low is None else low
    rows = [r for r in rows if "confidence" in r]
    ious = np.array([r["iou"] for r in rows], np.float64)
    conf = np.array([r["confidence"] for r in rows], np.float64)
    flagged = conf < low

    def part(sel: np.ndarray) -> dict:
        bad, good = sel & (ious < BAD_IOU), sel & (ious >= GOOD_IOU)
        return {"n": int(sel.sum()), "pearson": _corr(conf[sel], ious[sel]),
                "spearman": _corr(_ranks(conf[sel]), _ranks(ious[sel])),
                "bad": int(bad.sum()), "bad_caught": int((bad & flagged).sum()),
                "good": int(good.sum()), "good_flagged": int((good & flagged).sum()),
                "flagged": int((sel & flagged).sum()),
                "missed": sorted(r["case"] for r, b, f in zip(rows, bad, flagged, strict=True)
                                 if b and not f),
                "false_alarms": sorted(r["case"] for r, g, f in zip(rows, good, flagged,
                                                                     strict=True) if g and f)}

    everything = np.ones(len(rows), bool)
    cats = {c: part(np.array([r["category"] == c for r in rows], bool))
            for c in dict.fromkeys(r["category"] for r in rows)}
    return {"low": low, "bad_iou": BAD_IOU, "good_iou": GOOD_IOU, "all": part(everything),
            "categories": cats}


def confidence_table(report: dict) -> str:
    """``confidence_report`` as a Markdown table (all cases first, then per category)."""
    lines = [f"| cases | n | Pearson | Spearman | IoU < {report['bad_iou']} said low | "
             f"IoU ≥ {report['good_iou']} said low (false alarms) |",
             "|---|---|---|---|---|---|"]

    def fmt(x: float) -> str:
        return "—" if x != x else f"{x:.3f}"

    for name, s in [("**all**", report["all"]), *report["categories"].items()]:
        lines.append(f"| {name} | {s['n']} | {fmt(s['pearson'])} | {fmt(s['spearman'])} | "
                     f"{s['bad_caught']}/{s['bad']} | {s['good_flagged']}/{s['good']} |")
    return "\n".join(lines)


def compliance_matrix(cases: list[Case], segmenter, size: tuple[int, int] = (640, 640)
                      ) -> dict[str, dict[str, dict]]:
    """Every case × every built-in preset: cut out, apply the preset, encode as the preset
    says (with the IPTC source type the pipeline writes), re-open the file and run ``check``
    on it. ``{case: {preset: {"passed", "failed", "self_check"}}}``; ``self_check`` is what
    the preset stage itself reported."""
    from swiftshot.delivery.codecs import encode
    from swiftshot.ops.cutout import cutout
    from swiftshot.ops.presets import BUILTIN_PRESETS, apply_preset, check

    out: dict[str, dict[str, dict]] = {}
    for case in cases:
        cut = cutout(make_photo(case, size).image, segmenter)
        row = {}
        for name, rule in BUILTIN_PRESETS.items():
            img = apply_preset(cut, rule, name)
            data = encode(img, rule.format, rule.quality, source_type="compositeSynthetic")
            results = check(Image.open(io.BytesIO(data)), rule)
            failed = [r.rule for r in results if not r.passed]
            row[name] = {"passed": not failed, "failed": failed,
                         "self_check": img.info["compliance"].passed}
        out[case.name] = row
    return out


def _sizes(text: str) -> list[int]:
    """``640,800,1500`` -> [640, 800, 1500] (square sides, 64..4096)."""
    out = []
    for part in text.split(","):
        side = int(part)
        if not 64 <= side <= 4096:
            raise ValueError(f"size {side} outside 64..4096")
        out.append(side)
    return list(dict.fromkeys(out))


def main(argv: list[str] | None = None) -> int:
    """``python -m swiftshot.testing.products [--split tuning|heldout|both] [--sizes 640,800]
    [--segmenter classical] [--model-dir DIR] [--confidence] [--out FILE]``: the per-category
    table (per size), and with ``--confidence`` how well the confidence predicts IoU."""
    import argparse
    import json
    import time
    from pathlib import Path

    from swiftshot.ops.cutout import create_segmenter

    ap = argparse.ArgumentParser(prog="python -m swiftshot.testing.products")
    ap.add_argument("--split", choices=("tuning", "heldout", "both"), default="both")
    ap.add_argument("--seeds", default=None,
                    help="tuning seeds to use instead of the default ones, e.g. 0-44 or 5,7,9 "
                         "(never the held-out range: that is --split heldout)")
    ap.add_argument("--categories", default=None, help="comma-separated categories (all)")
    ap.add_argument("--size", type=int, default=None, help="one square side (default 640)")
    ap.add_argument("--sizes", default=None,
                    help="several square sides in one run, e.g. 640,800,1500: the table per "
                         "size (and per size in --out)")
    ap.add_argument("--segmenter", default="classical")
    ap.add_argument("--model-dir", default=None)
    ap.add_argument("--out", default=None, help="JSON file for the per-case rows")
    ap.add_argument("--show", action="store_true", help="print each case")
    ap.add_argument("--confidence", action="store_true",
                    help="also print how well the cutout's confidence predicts IoU: Pearson, "
                         "Spearman, of cutouts under IoU 0.93 how many are said low, of those "
                         "at 0.97 or over how many are said low anyway (per category)")
    ap.add_argument("--compliance", action="store_true",
                    help="also render every case with every built-in preset, encode it, and "
                         "run the preset's check on the file (the compliance matrix)")
    args = ap.parse_args(argv)
    if args.size is not None and args.sizes is not None:
        ap.error("give --size or --sizes, not both")
    try:
        sizes = _sizes(args.sizes) if args.sizes else [args.size or 640]
    except ValueError as e:
        ap.error(f"--sizes: {e} (a comma-separated list of square sides, e.g. 640,800,1500)")
    seg = create_segmenter(args.segmenter, args.model_dir)
    splits = {"tuning": TUNING_SEEDS, "heldout": HELDOUT_SEEDS}
    if args.seeds:
        seeds: list[int] = []
        for part in args.seeds.split(","):
            lo, _, hi = part.partition("-")
            seeds.extend(range(int(lo), int(hi or lo) + 1))
        if set(seeds) & set(HELDOUT_SEEDS):
            ap.error("--seeds may not include held-out seeds (use --split heldout)")
        splits["tuning"] = tuple(seeds)
        if args.split == "both":
            args.split = "tuning"
    cats = tuple(args.categories.split(",")) if args.categories else CATEGORIES
    wanted = list(splits) if args.split == "both" else [args.split]
    result: dict = {"segmenter": args.segmenter, "sizes": sizes}
    if len(sizes) == 1:
        result["size"] = sizes[0]
    for name in wanted:
        per_size: dict = {}
        for side in sizes:
            t0 = time.perf_counter()
            rows = evaluate(seg.mask, eval_cases(splits[name], cats), (side, side), segmenter=seg)
            stats = by_category(rows)
            seeds = splits[name]
            print(f"\n{name} seeds {seeds[0]}-{seeds[-1]} at {side}² ({len(rows)} cases, "
                  f"{time.perf_counter() - t0:.1f} s)")
            if args.show:
                for r in rows:
                    print(f"  {r['case']:<48} IoU {r['iou']:.3f}  BF {r['bf']:.3f}  "
                          f"confidence {r['confidence']:.2f} ({r['level']})")
            print(report_table(stats))
            entry: dict = {"rows": rows, "categories": stats}
            if args.confidence:
                rep = confidence_report(rows)
                print(f"\nconfidence against IoU ({name}, {side}², 'low' under {rep['low']}):")
                print(confidence_table(rep))
                if args.show:
                    print("  IoU < 0.93 not said low: " + (", ".join(rep["all"]["missed"])
                                                           or "none"))
                    print("  IoU ≥ 0.97 said low: " + (", ".join(rep["all"]["false_alarms"])
                                                      or "none"))
                entry["confidence"] = rep
            if args.compliance:
                t0 = time.perf_counter()
                matrix = compliance_matrix(eval_cases(splits[name], cats), seg, (side, side))
                passed = sum(all(v["passed"] for v in row.values()) for row in matrix.values())
                print(f"compliance: {passed}/{len(matrix)} cases pass every preset's check "
                      f"({time.perf_counter() - t0:.0f} s)")
                for case, row in matrix.items():
                    for preset, v in row.items():
                        if not v["passed"]:
                            print(f"  FAIL {case} {preset}: {v['failed']}")
                entry["compliance"] = matrix
            per_size[str(side)] = entry
        # One size: the split's entry is that size's (as before --sizes); several: by size.
        result[name] = per_size[str(sizes[0])] if len(sizes) == 1 else {"sizes": per_size}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
