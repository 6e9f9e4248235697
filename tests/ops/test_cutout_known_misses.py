"""Issue 10, fourteenth session (known16): the known shapes' misses on never-seen seeds.

The never-seen range 5160-5199 (burned at the thirteenth session's end, open for diagnosis
since) missed three cases, the same on the old code; each is a kind, not a seed:

- a bottle cropped at the bottom of a steep sweep, its cream label on 30 % of the floor's
  band: of the fits without one side that beat the full fit, the one without the left side
  (bent to the label, judged on its own three sides) won over the one without the bottom
  (judged on all four), and kept the backdrop's upper half (framing 5193: 0.211 at 640²).
  Candidates are now compared on the whole border (``_best_side_fit``).
- a black box on a sweep whose floor darkens under it: the box's ratio to the backdrop
  crosses the 0.25 "black" line part-way down its front face, and the strip under the line
  was cut as its cast shadow (cast shadows 5196: 0.909 at 1500²). A part that continues the
  black face above it without a step is kept (``_face_goes_on``).
- a dim, noisy backdrop saved at a low JPEG quality keeps its noise as blotches; most of the
  border band has no gradient left, the edge threshold (6× the band's median gradient) fell
  under the blotches' edges, and blotches were kept as product (low light 5183: 0.689 at
  640²). A flattened band's unit is taken from its tail (``_unflattened_median``).

- (found on fresh seeds) a dark box on a mid-dark sweep is "shadow-coloured" itself, and its
  hard cast shadow beside it was one part with it, starting high on the box: never a shadow
  candidate (cast shadows 12027: 0.914 at 640², said high). The part is cut at the step
  between the box and the lighter shadow (``_split_dark_faces``).

- (the lead's fresh sweep 10300-10399) a tilted horizon seen in one side strip only (the
  bottle's cast shadow darkens the table at the other) was taken as level, and ran 9 px off
  the model at the other side: a line of product across the frame (two plane 10351: 0.915
  at 640², said high). The step is traced across the frame (``_traced_tilt``), and a pair
  of steps that is not one line (a box's base in one strip) is no horizon (``_pair_traced``,
  framing 10273: 0.822).

Burned or fresh diagnostic seeds only (5160-5199, 10000-19999); never a held-out one.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from swiftshot.ops.cutout import (
    ClassicalSegmenter,
    Evidence,
    Horizon,
    _best_side_fit,
    _pair_traced,
    _split_dark_faces,
    _traced_tilt,
    _unflattened_median,
)
from swiftshot.testing.products import case_iou, iou

SEG = ClassicalSegmenter()


def test_side_fits_are_compared_on_the_whole_border():
    """Two candidates: one explains its own three sides (top, bottom, right: 1.0, 0.06,
    0.98) and not the side it left out; the other explains all but 4 % of the bottom band,
    which it left out, and 80-90 % of the side strips. The second explains more of the
    border and wins, whatever gain each showed on its own sides."""
    n = 100
    sides = np.repeat(np.arange(4), n)  # top, bottom, left, right samples

    def residuals(shares):
        res = np.full(4 * n, 50.0, np.float32)
        for i, share in enumerate(shares):
            res[i * n:i * n + int(share * n)] = 1.0
        return res

    without_left = (residuals([1.0, 0.06, 0.05, 0.98]), "left", 1.7, 2)
    without_bottom = (residuals([1.0, 0.04, 0.81, 0.91]), "bottom", 1.7, 1)
    assert len(sides) == len(without_left[0])
    for found in ([without_left, without_bottom], [without_bottom, without_left]):
        coef, _, side = _best_side_fit(found, 11.0)
        assert (coef, side) == ("bottom", 1)


@pytest.mark.parametrize("category,seed,side,floor", [
    ("framing", 5193, 640, 0.97),       # main: 0.211
    ("cast_shadows", 5196, 1500, 0.97),  # main: 0.909
    ("low_light", 5183, 640, 0.96),      # main: 0.689
    ("low_light", 5183, 800, 0.96),      # main: 0.746
])
def test_never_seen_misses(category, seed, side, floor):
    assert case_iou(category, seed, side) >= floor


def test_a_flattened_band_takes_its_unit_from_the_tail():
    rng = np.random.default_rng(0)
    noise = rng.rayleigh(1.0, 20000)
    assert _unflattened_median(noise) == pytest.approx(float(np.median(noise)))
    # 40 % of the band flattened to (near) nothing, the rest the blotches' edges.
    flat = np.concatenate([rng.rayleigh(0.02, 8000), rng.rayleigh(1.0, 12000)])
    unit = _unflattened_median(flat)
    assert unit == pytest.approx(float(np.percentile(flat, 97)) / 3.5)
    assert unit > float(np.median(flat))


def _dim_jpeg(seed: int, quality: int):
    """A dark green product (120×340 px) on a dim grey (48 levels) with sensor noise of 3
    levels, saved at ``quality``: the noise survives as blotches."""
    rng = np.random.default_rng(seed)
    img = np.full((640, 640, 3), 48.0, np.float32) * np.array([1.0, 1.0, 1.02], np.float32)
    cov = np.zeros((640, 640), np.float32)
    cov[180:520, 260:380] = 1
    img[cov > 0] = (20, 60, 30)
    img += rng.normal(0, 3.0, img.shape)
    buf = io.BytesIO()
    Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8)).save(buf, "JPEG",
                                                                      quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), cov


@pytest.mark.parametrize("seed", [0, 1])
def test_blotches_of_a_dim_jpeg_backdrop_are_not_product(seed):
    image, cov = _dim_jpeg(seed, 55)
    assert iou(SEG.mask(image), cov) >= 0.97  # main: 0.830, 0.887


def _box_and_shadow(shadow_ratio: float):
    """Evidence of a 120² work copy: a dark box (rows 20-100, columns 50-90, 0.27 of the
    backdrop: "shadow-coloured", over the 0.25 line) with its cast shadow on the floor to
    its left (rows 80-100, columns 10-50, at ``shadow_ratio``), all of it one shadow-coloured
    part."""
    h = w = 120
    ratio = np.ones((h, w), np.float32)
    ratio[20:100, 50:90] = 0.27
    ratio[80:100, 10:50] = shadow_ratio
    zeros = np.zeros((h, w), bool)
    ev = Evidence(product=zeros, bg_like=ratio == 1, shadow_like=ratio < 1, ratio=ratio,
                  chroma=np.zeros((h, w), np.float32), tol=np.full((h, w), 0.03, np.float32))
    return ev, (ratio < 1).astype(np.uint8)


def test_a_lighter_shadow_is_split_from_the_dark_box_it_touches():
    ev, shadowy = _box_and_shadow(0.39)
    split = _split_dark_faces(shadowy, ev, floor=64.0, min_area=50.0)
    n, labels = cv2.connectedComponents(split, connectivity=4)
    assert labels[90, 20] != labels[50, 70] and labels[90, 20] > 0
    # A shadow darker than the face it touches (a grey product's) is left whole.
    ev, shadowy = _box_and_shadow(0.2)
    assert _split_dark_faces(shadowy, ev, floor=64.0, min_area=50.0) is shadowy


def test_a_dark_box_s_hard_shadow_is_given_back():
    assert case_iou("cast_shadows", 12027, 640) >= 0.97  # main: 0.914, said high


def test_a_horizon_seen_in_one_strip_is_traced_across_the_frame():
    """A wall (210) over a table (150), the horizon falling from row 110 at the left to row
    100 at the right: seen in the right strip only, at row 100, it is no longer level."""
    h = w = 240
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    line = 110.0 - 10.0 * (xs + 0.5) / w
    t = np.clip(ys - line + 0.5, 0, 1)[..., None]
    img = (np.array([210.0, 205.0, 200.0]) * (1 - t) + np.array([150.0, 130.0, 110.0]) * t)
    img = img.astype(np.float32)
    left, right = _traced_tilt(img, 100.0, img[90, -1], img[120, -1], side=1)
    assert left == pytest.approx(110.0, abs=1.0) and right == pytest.approx(100.0, abs=1.0)
    # A level wall and table stay level.
    flat = np.where(ys[..., None] < 100, 210.0, 150.0).astype(np.float32) * np.ones(3)
    assert _traced_tilt(flat.astype(np.float32), 100.0, flat[90, 0], flat[120, 0], 0) == \
        pytest.approx((100.0, 100.0), abs=1.0)


def test_a_tilted_horizon_beside_a_cast_shadow_is_no_line_of_product():
    assert case_iou("two_plane", 10351, 640) >= 0.97  # main: 0.915, said high


def test_a_pair_of_steps_that_is_not_one_line_is_no_horizon():
    """The wall-to-table step runs level at row 100; the right strip's strongest step is a
    product's base at row 140. Paired, they are no horizon: traced from the left, the step
    reaches the right strip at row 100, not 140. The level pair is one."""
    h = w = 240
    ys = np.mgrid[0:h, 0:w][0].astype(np.float32)
    img = np.where(ys[..., None] < 100, 210.0, 150.0).astype(np.float32) * np.ones(3, np.float32)
    wall, table = img[90, 0], img[120, 0]
    assert not _pair_traced(img, Horizon(100.0, 140.0, 2.0, wall=wall, table=table))
    assert _pair_traced(img, Horizon(100.0, 100.5, 2.0, wall=wall, table=table))


def test_a_box_s_base_paired_with_the_horizon_keeps_no_wedge():
    assert case_iou("framing", 10273, 640) >= 0.97  # main: 0.822
