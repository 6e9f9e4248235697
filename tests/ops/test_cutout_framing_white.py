"""Issue 10, fourteenth pass (session crop14): framing and white on white.

- A mug cropped at the frame's left edge: its rim's step in the left strip was taken as a
  horizon seen in one strip (the table's edge), the mug as the table, and the table's surface
  kept a slab of sweep beside the mug and inside its handle (framing 5128: 0.674 at 640²).
  The other strip shows the wall going on under that step: no horizon (``_wall_runs_on``).
- A bottle cropped at the bottom of a steep sweep: the fit without the (smooth) left side was
  taken as "a product covers that side" and bent 200 levels off it (framing 9094: 0.205 at
  640²). A side with no edge along it is not covered (``_edge_along``); the label covering
  30 % of the bottom band is (``_PARTIAL_COVER``).
- A white bottle's lit neck and shoulder have no edge on a white sweep and were lost, said
  0.98 (white on white 5106: 0.928 at 640²): the white notch (the mirror notch's candidates,
  counted by brightness, not hue) is doubted.

Burned or diagnostic seeds only (5100-5129 were run once as never-seen at the eleventh
session's end; 9094 is of the 9000 diagnostic range); never a held-out one.
"""

from __future__ import annotations

import numpy as np
import pytest

from swiftshot.ops import cutout
from swiftshot.ops.cutout import (
    ClassicalSegmenter,
    _confidence_from,
    _find_horizon,
    _mirror_notches,
)
from swiftshot.testing.products import _eval_case, case_iou, iou, make_photo

SEG = ClassicalSegmenter()


@pytest.mark.parametrize("category,seed,side,floor", [
    ("framing", 5128, 640, 0.97),   # main: 0.674
    ("framing", 5128, 800, 0.97),   # main: 0.670
    ("framing", 9094, 640, 0.97),   # main: 0.205
    ("framing", 9094, 800, 0.97),   # main: 0.999 (kept)
])
def test_framing_cases(category, seed, side, floor):
    assert case_iou(category, seed, side) >= floor


def test_a_white_bottle_with_its_neck_lost_is_not_said_high(monkeypatch):
    # Since OPS 52 (white19) the lit neck is given back by its own shading
    # (``_shading_goes_up``: 5106 0.928 -> 0.977); without that step the neck is lost as before
    # and the white notch must still doubt it.
    photo = make_photo(_eval_case("white_on_white", 5106), (640, 640))
    rgb = np.asarray(photo.image)
    found = SEG.find(rgb)
    assert iou(SEG.refine(found, rgb) / 255.0, photo.coverage) >= 0.95
    monkeypatch.setattr(cutout, "_shading_goes_up", lambda m, ev, sigma: m)
    found = SEG.find(rgb)
    signals = dict(found.signals or {})
    alpha = SEG.refine(found, rgb, signals)
    assert iou(alpha / 255.0, photo.coverage) < 0.93  # the neck is lost (OPS 51: 0.928)
    conf, why = _confidence_from(signals)
    assert conf < 0.9, conf  # before the white notch: 0.98
    assert any("white part may be missing" in w for w in why)


def _strips(step_left: bool, product_right: bool):
    """A 240² work copy of a pink sweep (lighter at the top): the left strip steps at row
    100 into an orange product below it; the right strip is the sweep (or, with
    ``product_right``, an orange product too, as where a product cropped at that side covers
    the other strip)."""
    h = w = 240
    ys = np.arange(h, dtype=np.float32)[:, None, None]
    top, bottom = np.array([236, 175, 197], np.float32), np.array([216, 160, 180], np.float32)
    img = np.broadcast_to(top + (bottom - top) * ys / h, (h, w, 3)).astype(np.float32).copy()
    orange = np.array([200, 90, 40], np.float32)
    if step_left:
        img[100:, :70] = orange
    if product_right:
        img[60:, 170:] = orange * 0.8
    return img


def test_a_product_cropped_at_one_side_is_no_horizon():
    img = _strips(step_left=True, product_right=False)
    assert not [z for z in _find_horizon(img, 10) if z.one_side]


def test_a_horizon_seen_in_one_strip_is_kept_where_a_product_covers_the_other():
    img = _strips(step_left=True, product_right=True)
    # The left strip steps from the sweep into a table-coloured plane at row 100.
    img[100:, :170] = np.array([150, 112, 80], np.float32)
    assert [z for z in _find_horizon(img, 10) if z.one_side]


WHITE = np.array([246.0, 245.5, 244.0], np.float32)


def _white_bottle(seed: int = 0):
    """A white bottle on a white sweep (240² work copy), its left side shaded: (image,
    backdrop, mask, its neck's right half lost)."""
    rng = np.random.default_rng(seed)
    h = w = 240
    bg = np.broadcast_to(WHITE, (h, w, 3)).astype(np.float32)
    img = bg + rng.normal(0, 0.8, (h, w, 3)).astype(np.float32)
    hard = np.zeros((h, w), np.uint8)
    hard[70:220, 80:160] = 1
    hard[20:70, 104:136] = 1  # neck
    shade = np.ones((h, w), np.float32)
    shade[:, 80:160] = np.linspace(0.88, 0.985, 80)  # shaded left, lit right (still darker)
    m = hard > 0
    img[m] = img[m] * shade[m][:, None]
    lost = hard.copy()
    lost[20:75, 120:136] = 0  # the lit half of the neck, and a bit of shoulder
    return img, bg, hard, lost


def test_the_white_notch_sees_a_lit_neck_lost_on_white():
    img, bg, hard, lost = _white_bottle()
    assert _mirror_notches(img, bg, hard, 0.8)[1] < 0.004  # whole: nothing to see
    hue, white = _mirror_notches(img, bg, lost, 0.8)
    assert white > 0.02, white
    # The hue notch does not see it (every pixel is near grey): what the white notch is for.
    assert hue < white
    # The same notch showing the sweep (a product of that shape) is not one.
    img2 = img.copy()
    img2[20:75, 120:136] = bg[20:75, 120:136]
    assert _mirror_notches(img2, bg, lost, 0.8)[1] < 0.004


def test_the_white_notch_is_doubted_on_white_only():
    sig = {"fit": 1.0, "area": 0.16, "touch": 0.0, "amb": 0.9, "sigma": 0.8, "white": 1.0,
           "bg_inside": 0.08, "unsup": 0.06, "weak_outline": 0.15, "smooth": 0.0,
           "notch": 0.002, "amb_blob": 0.9, "lit_beyond": 0.0, "white_notch": 0.0}
    conf, _ = _confidence_from(sig)
    assert conf >= 0.9
    low, why = _confidence_from({**sig, "white_notch": 0.023})
    assert low < 0.9 and any("white part may be missing" in w for w in why)
    # Not white on white: not weighed (the hue notch is the signal there).
    off = {**sig, "white": 0.0, "amb": 0.0, "amb_blob": 0.0, "bg_inside": 0.0}
    assert _confidence_from({**off, "white_notch": 0.05})[0] == _confidence_from(off)[0]
