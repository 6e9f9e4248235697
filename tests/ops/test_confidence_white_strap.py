"""Issue 10, sixteenth session (white18): a white watch on a white sweep whose white strap
was lost with its case kept was said `high` at IoU 0.40 (novel white on white). The
``white_above`` doubt: the sweep straight above the case stands off the sweep beside it at
the same rows, the strap going on up out of the cutout.
Novel tuning seeds only (400-899); never the blind (320-399) or held-out ones.
"""

from __future__ import annotations

import numpy as np
import pytest

from swiftshot.ops.cutout import (
    ClassicalSegmenter,
    _confidence_from,
    _goes_on_above,
    confidence_label,
)
from swiftshot.testing.novel import novel_case
from swiftshot.testing.products import iou, make_photo

SEG = ClassicalSegmenter()


def test_goes_on_above_reads_a_band_going_on_up():
    rng = np.random.default_rng(0)
    h = w = 200
    bg = np.full((h, w, 3), 240.0, np.float32)
    img = bg + rng.normal(0, 1.2, (h, w, 3)).astype(np.float32)
    hard = np.zeros((h, w), np.uint8)
    hard[100:150, 80:120] = 1       # a watch's case
    assert _goes_on_above(img, bg, hard) < 0.3
    img[20:100, 90:110] -= 3.0      # its white strap, 3 levels under the sweep, left out
    assert _goes_on_above(img, bg, hard) > 1.5
    img2 = bg + rng.normal(0, 1.2, (h, w, 3)).astype(np.float32)
    img2[60:100, 20:75] -= 30.0     # a cast shadow on one side only: no doubt
    assert _goes_on_above(img2, bg, hard) < 0.3


def _said(case, side: int = 640):
    photo = make_photo(case, (side, side))
    rgb = np.asarray(photo.image)
    found = SEG.find(rgb)
    sig = dict(found.signals or {})
    alpha = SEG.refine(found, rgb, sig).astype(np.float32) / 255.0
    conf, why = _confidence_from(sig)
    return iou(alpha, photo.coverage), confidence_label(conf), why


@pytest.mark.parametrize("seed", [570, 583, 724])  # main 4c14311: all three `high`, IoU 0.40
def test_a_white_watch_without_its_strap_is_said_low(seed):
    case = novel_case("white_on_white", seed)
    assert case.product == "watch"
    score, level, why = _said(case)
    assert score < 0.93  # a miss: what this test is about
    assert level == "low" and any("going on up" in w for w in why), (score, level, why)


def test_a_white_watch_cut_right_stays_high():
    case = novel_case("white_on_white", 726)
    assert case.product == "watch"
    score, level, why = _said(case)
    assert score > 0.95 and level == "high", (score, level, why)
