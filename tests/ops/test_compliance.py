"""Presets pass their own check: every evaluation category × every preset, and the verdict is
reported (not hidden) when a rule cannot be met."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from swiftshot.config import PresetRule
from swiftshot.delivery.codecs import encode
from swiftshot.ops.compose import alpha_bbox
from swiftshot.ops.cutout import cutout
from swiftshot.ops.presets import BUILTIN_PRESETS, Compliance, apply_preset, check
from swiftshot.testing.products import (
    CATEGORIES,
    HELDOUT_SEEDS,
    TUNING_SEEDS,
    eval_cases,
    make_photo,
)

# One case per category from the tuning seeds and one from the held-out seeds (the full
# 100 cases × 4 presets run: python -m swiftshot.testing.products --compliance; docs/OPS.md).
CASES = eval_cases(TUNING_SEEDS[:1]) + eval_cases(HELDOUT_SEEDS[:1])


@pytest.fixture(scope="module")
def cutouts() -> dict[str, Image.Image]:
    return {c.name: cutout(make_photo(c, (480, 480)).image) for c in CASES}


def test_cases_cover_every_category():
    assert {c.category for c in CASES} == set(CATEGORIES)


@pytest.mark.parametrize("preset", sorted(BUILTIN_PRESETS))
def test_every_case_passes_the_presets_own_check(cutouts, preset):
    rule = BUILTIN_PRESETS[preset]
    failures = []
    for name, cut in cutouts.items():
        out = apply_preset(cut, rule, preset)
        assert isinstance(out.info["compliance"], Compliance)
        data = encode(out, rule.format, rule.quality, source_type="compositeSynthetic")
        results = check(Image.open(io.BytesIO(data)), rule)
        bad = [(r.rule, r.measured) for r in results if not r.passed]
        if bad or not out.info["compliance"].passed:
            failures.append((name, bad, out.info["compliance"].failed))
    assert not failures, failures


def _product_with_leftover(side: int = 600) -> Image.Image:
    """A cutout whose product sits in the middle, plus a leftover speck of old backdrop in a
    corner (what a poor cutout leaves)."""
    rgba = np.zeros((side, side, 4), np.uint8)
    rgba[200:420, 250:350] = (200, 40, 40, 255)
    rgba[10:22, 560:575] = (120, 120, 120, 255)
    return Image.fromarray(rgba, "RGBA")


def test_placement_ignores_leftovers_and_centres_the_product():
    rule = BUILTIN_PRESETS["amazon"]
    out = np.asarray(apply_preset(_product_with_leftover(), rule, "amazon"))
    red = (out[..., 0] > 150) & (out[..., 1] < 90)
    box = alpha_bbox(red.astype(np.float32), 0.5)
    assert box is not None
    x0, y0, x1, y1 = box
    assert abs((x0 + x1) / 2 - 1000) <= 12 and abs((y0 + y1) / 2 - 1000) <= 12
    assert (y1 - y0) / 2000 == pytest.approx(0.87, abs=0.02)  # filled by the product alone
    grey = (np.abs(out.astype(int) - 120).sum(2) < 30)
    assert not grey.any()  # the leftover was not placed


def test_border_is_forced_to_the_exact_colour():
    rule = BUILTIN_PRESETS["amazon"]
    # A product wider than the canvas allows at this fill would not touch the border: force a
    # shadow-heavy case by a product spanning the whole cutout.
    out = np.asarray(apply_preset(_product_with_leftover(), rule, "amazon"))
    b = 21
    border = np.concatenate([out[:b].reshape(-1, 3), out[-b:].reshape(-1, 3),
                             out[:, :b].reshape(-1, 3), out[:, -b:].reshape(-1, 3)])
    assert (border == 255).all()


def test_a_rule_that_cannot_be_met_is_reported():
    # A user preset whose fill rule no placement meets (min above max): fail, and said.
    rule = PresetRule(width=800, height=800, background=(255, 255, 255), fill=0.8,
                      min_fill=0.97, max_fill=0.96, format="jpeg", quality=88)
    tiny = np.zeros((400, 400, 4), np.uint8)
    tiny[100:300, 190:210] = (30, 30, 30, 255)
    out = apply_preset(Image.fromarray(tiny, "RGBA"), rule, "tight")
    comp = out.info["compliance"]
    assert comp.as_dict()["preset"] == "tight"
    assert not comp.passed and comp.failed == ["product_fill"]
    assert comp.as_dict()["passed"] is False and comp.attempts >= 2  # it tried to correct


def test_a_composed_photo_on_a_coloured_backdrop_fails_amazon_and_says_so():
    photo = make_photo("box_gradient", (480, 480)).image  # RGB: kept as composed
    out = apply_preset(photo, BUILTIN_PRESETS["amazon"], "amazon")
    comp = out.info["compliance"]
    assert not comp.passed and "background" in comp.failed
