"""Same-bits rewrites in the compositor (speed18), each compared bit for bit with the plain
numpy expression it replaced: ``decontaminate`` by flat takes, the fill read only where edge
pixels read it and a trust table; ``_faint_rim``'s largest channel by element-wise maxima."""

from __future__ import annotations

import cv2
import numpy as np

from swiftshot.ops.compose import decontaminate


def _decontaminate_reference(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The expression ``decontaminate`` had before (main 4c14311): 2-D fancy indexing, the
    fill over the whole small copy, the trust computed on the gathered alpha."""
    a8 = alpha if alpha.dtype == np.uint8 else cv2.convertScaleAbs(alpha, alpha=255.0)
    edge = cv2.findNonZero(cv2.inRange(a8, 3, 247))
    if edge is None:
        return rgb
    edge = edge.reshape(-1, 2)
    ys, xs = edge[:, 1], edge[:, 0]
    h, w = a8.shape
    k = max(1, round(max(h, w) / 400))
    sh, sw = max(1, h // k), max(1, w // k)
    hk, wk = min(h, sh * k), min(w, sw * k)
    small_rgb = cv2.resize(rgb[:hk, :wk], (sw, sh), interpolation=cv2.INTER_AREA).astype(np.float32)
    small_w = cv2.resize((a8[:hk, :wk] >= 248).astype(np.float32), (sw, sh),
                         interpolation=cv2.INTER_AREA)
    num = cv2.GaussianBlur(small_rgb * small_w[..., None], (0, 0), 3.0)
    den = cv2.GaussianBlur(small_w, (0, 0), 3.0)[..., None]
    fill = np.where(den > 1e-3, num / np.maximum(den, 1e-3), small_rgb)
    f = fill[np.minimum(ys * sh // h, sh - 1), np.minimum(xs * sw // w, sw - 1)]
    t = np.clip((a8[ys, xs].astype(np.float32) * (1 / 255.0) - 0.5) * 2.0, 0, 1)[:, None]
    out = rgb.copy()
    out[ys, xs] = np.clip(rgb[ys, xs] * t + f * (1 - t) + 0.5, 0, 255).astype(np.uint8)
    return out


def _product(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    a = np.zeros((h, w), np.float32)
    cv2.ellipse(a, (w // 2, h // 2), (max(1, w // 3), max(1, h // 3)), 0, 0, 360, 1.0, -1)
    a = cv2.GaussianBlur(a, (0, 0), float(rng.uniform(0.5, 6.0)))
    noisy = rng.random((h, w)) < 0.05
    a[noisy] = rng.random(int(noisy.sum())).astype(np.float32)
    return rgb, a


def test_decontaminate_is_the_reference_bit_for_bit():
    rng = np.random.default_rng(18)
    for h, w in ((60, 60), (1, 7), (333, 517), (1201, 803), (2000, 1400)):
        rgb, a = _product(rng, h, w)
        want = _decontaminate_reference(rgb, a)
        assert np.array_equal(decontaminate(rgb, a), want)
        a8 = cv2.convertScaleAbs(a, alpha=255.0)
        assert np.array_equal(decontaminate(rgb, a8), _decontaminate_reference(rgb, a8))
        view, va = rgb[::2, 1:], a8[::2, 1:]  # not contiguous: copied, even in place
        assert np.array_equal(decontaminate(view, va, inplace=True),
                              _decontaminate_reference(view, va))
        mine = rgb.copy()
        out = decontaminate(mine, a, inplace=True)
        assert out is mine and np.array_equal(out, want)
        assert np.array_equal(decontaminate(rgb, a), want)  # the input was not written


def test_decontaminate_without_an_edge_gives_the_input():
    rgb = np.full((20, 20, 3), 7, np.uint8)
    assert decontaminate(rgb, np.ones((20, 20), np.float32)) is rgb


def test_faint_rim_is_as_before():
    from swiftshot.ops.compose import _FAINT_LEVELS, _FAINT_SLACK, _faint_rim, alpha_bbox

    def reference(prod, a8, colour):
        s = max(1, max(a8.shape) // 256)
        a = a8[::s, ::s]
        solid = a > 127
        solid_box = alpha_bbox(solid, 0.5)
        if solid_box is None:
            return False
        px = prod[::s, ::s].astype(np.int16)
        off = np.abs(px - np.asarray(colour, np.int16)).max(2) >= _FAINT_LEVELS
        seen = alpha_bbox(solid & off, 0.5)
        if seen is None:
            return True
        slack = _FAINT_SLACK * max(solid_box[2] - solid_box[0], solid_box[3] - solid_box[1])
        return (seen[0] - solid_box[0] > slack or seen[1] - solid_box[1] > slack
                or solid_box[2] - seen[2] > slack or solid_box[3] - seen[3] > slack)

    rng = np.random.default_rng(23)
    answers = set()
    for trial in range(300):
        h, w = (int(v) for v in rng.integers(4, 700, 2))
        colour = tuple(int(v) for v in rng.integers(200, 256, 3))
        prod = np.clip(np.asarray(colour) + rng.normal(0, rng.choice([3, 15, 40]), (h, w, 3)),
                       0, 255).astype(np.uint8)
        a8 = np.zeros((h, w), np.uint8)
        cv2.ellipse(a8, (w // 2, h // 2), (w // 3 + 1, h // 3 + 1), 0, 0, 360, 255, -1)
        want = reference(prod, a8, colour)
        assert _faint_rim(prod, a8, colour) == want, trial
        answers.add(want)
    assert answers == {True, False}
