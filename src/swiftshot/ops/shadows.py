"""Shadows and reflections made from a product's alpha mask.

A product pasted on a backdrop without a shadow floats; a real one sits on the floor. Two
shadows make it sit: a tight, dark **contact shadow** along the base (where the product touches
the floor, almost no light gets in) and a wide, soft **cast shadow** thrown back and to the side
by the key light, fading and softening with distance from the base. Both are computed on a
sixth-size copy (a shadow is blurry by nature, so the eye cannot tell) and returned as a
*darkening* map in 0..1 that the compositor multiplies the backdrop by, so a shadow has the
backdrop's own colour, only darker, as on a real sweep.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class ShadowParams:
    contact: float = 0.55
    """Opacity of the contact shadow at its darkest (0 turns it off)."""
    contact_softness: float = 1.0
    """Blur of the contact shadow, relative to the default (about 1% of the product height)."""
    cast: float = 0.28
    """Opacity of the cast shadow where it leaves the base (0 turns it off)."""
    direction: float = -35.0
    """Direction the cast shadow falls, degrees from straight back (negative: to the left)."""
    length: float = 0.35
    """Length of the cast shadow on the floor, as a fraction of the product height."""
    softness: float = 1.0
    """Blur of the cast shadow, relative to the default (about 4% of the product height)."""


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-like blur; stack blur for wide ones (its cost does not grow with the radius)."""
    if sigma < 4:
        return cv2.GaussianBlur(x, (0, 0), max(sigma, 0.3))
    return cv2.stackBlur(x, (2 * round(sigma * 1.7) + 1,) * 2)


def _base_line(alpha: np.ndarray) -> tuple[int, int, int, int, int] | None:
    """(top, bottom, left, right, base_y) of the product's alpha, or None when it is empty."""
    rows = np.nonzero(alpha.max(1) > 0.5)[0]
    cols = np.nonzero(alpha.max(0) > 0.5)[0]
    if not len(rows) or not len(cols):
        return None
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1]), int(rows[-1])


def shadow_map(alpha: np.ndarray, params: ShadowParams, scale: int = 6) -> np.ndarray:
    """Darkening (0 = none, 1 = black) at alpha's size, from the placed product's alpha."""
    h, w = alpha.shape
    small, _ = shadow_small(alpha, params, scale)
    out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(out, 0.0, 1.0, out=out)


def shadow_small(alpha: np.ndarray, params: ShadowParams, scale: int = 6
                 ) -> tuple[np.ndarray, int]:
    """The darkening map at 1/scale of alpha's size (the compositor upsamples only its box)."""
    h, w = alpha.shape
    small = cv2.resize(alpha, (max(1, w // scale), max(1, h // scale)), interpolation=cv2.INTER_AREA)
    return darkening(small, params), scale


def darkening(small: np.ndarray, params: ShadowParams) -> np.ndarray:
    """The darkening map from a (small) placed alpha, at the same size."""
    sh, sw = small.shape
    box = _base_line(small)
    if box is None:
        return np.zeros_like(small)
    top, bottom, left, right, base = box
    ph = max(bottom - top, 1)
    cx = (left + right) / 2
    dark = np.zeros_like(small)
    if params.cast > 0:
        # Project the silhouette onto the floor: squash it about the base line and shear it in
        # the light's direction, so its top lands `length` product-heights behind the base.
        theta = np.deg2rad(params.direction)
        k = params.length
        shear = np.tan(theta) * k if abs(params.direction) < 85 else np.sign(theta) * 10 * k
        m = np.float32([[1, -shear, shear * base], [0, k, base * (1 - k)]])
        cast = cv2.warpAffine(small, m, (sw, sh), flags=cv2.INTER_LINEAR)
        # Fade and widen with distance from the base: near the product the shadow is sharper.
        yy = np.arange(sh, dtype=np.float32)[:, None]
        dist = np.clip((base - yy) / max(k * ph, 1), 0, 1)
        sigma = max(1.0, 0.04 * ph * params.softness)
        near = _blur(cast, sigma * 0.4)
        far = _blur(cast, sigma * 1.6)
        cast = near * (1 - dist) + far * dist
        dark = np.maximum(dark, params.cast * cast * (1 - 0.7 * dist))
    if params.contact > 0:
        # The footprint: the lowest few percent of the silhouette, flattened onto the base line.
        band = max(2, round(0.03 * ph))
        foot = np.zeros_like(small)
        foot[max(base - band, 0):base + 1] = small[max(base - band, 0):base + 1]
        # Slightly wider than the footprint and flattened onto the base line.
        m = np.float32([[1.04, 0, -0.04 * cx], [0, 0.35, base * 0.65 + 1]])
        foot = cv2.warpAffine(foot, m, (sw, sh), flags=cv2.INTER_LINEAR)
        foot = cv2.GaussianBlur(foot, (0, 0), max(0.8, 0.012 * ph * params.contact_softness))
        peak = float(foot.max())
        if peak > 0:
            dark = np.maximum(dark, params.contact * np.clip(foot / peak * 1.3, 0, 1))
    return np.clip(dark, 0.0, 1.0, out=dark)


def reflection_layer(rgb: np.ndarray, alpha: np.ndarray, strength: float, fade: float = 0.3
                     ) -> tuple[np.ndarray, np.ndarray]:
    """A floor reflection: the product mirrored below its base, fading out over ``fade`` of
    its height. Returns (rgb, alpha) at the canvas size, to be laid under the product."""
    box = _base_line(alpha)
    out_rgb, out_a = np.zeros_like(rgb), np.zeros_like(alpha)
    if box is None or strength <= 0:
        return out_rgb, out_a
    top, bottom, _, _, base = box
    h = alpha.shape[0]
    span = min(bottom - top + 1, h - base - 1)
    if span <= 0:
        return out_rgb, out_a
    src = slice(base - span + 1, base + 1)
    dst = slice(base + 1, base + 1 + span)
    out_rgb[dst] = rgb[src][::-1]
    ramp = np.clip(1 - np.arange(span, dtype=np.float32) / max(fade * (bottom - top), 1), 0, 1)
    out_a[dst] = alpha[src][::-1] * (strength * ramp ** 1.5)[:, None]
    out_a = cv2.GaussianBlur(out_a, (0, 0), 1.5)
    return out_rgb, out_a
