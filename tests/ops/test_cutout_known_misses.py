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

Burned or fresh diagnostic seeds only (5160-5199, 10000-19999); never a held-out one.
"""

from __future__ import annotations

import numpy as np
import pytest

from swiftshot.ops.cutout import ClassicalSegmenter, _best_side_fit
from swiftshot.testing.products import HELDOUT_SEEDS, _eval_case, iou, make_photo

SEG = ClassicalSegmenter()


def _iou(category: str, seed: int, side: int) -> float:
    assert seed not in HELDOUT_SEEDS and not 5500 <= seed <= 5599
    photo = make_photo(_eval_case(category, seed), (side, side))
    return iou(SEG.mask(photo.image), photo.coverage)


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
])
def test_never_seen_misses(category, seed, side, floor):
    assert _iou(category, seed, side) >= floor

