"""The evaluation set of issue 10: enough cases and categories, exact masks, held-out seeds
apart, and scores that can fail."""

from __future__ import annotations

import numpy as np

from swiftshot.testing.products import (
    CATEGORIES,
    HELDOUT_SEEDS,
    TUNING_SEEDS,
    boundary_f,
    eval_cases,
    iou,
    make_photo,
)


def test_at_least_40_cases_in_8_categories_per_split():
    for seeds in (TUNING_SEEDS, HELDOUT_SEEDS):
        cases = eval_cases(seeds)
        assert len(cases) >= 40
        assert len({c.category for c in cases}) >= 8
        assert len({c.name for c in cases}) == len(cases)
    assert not set(TUNING_SEEDS) & set(HELDOUT_SEEDS)


def test_cases_are_drawn_from_their_seed():
    a, b = eval_cases(TUNING_SEEDS[:1]), eval_cases(TUNING_SEEDS[:1])
    assert a == b
    held = eval_cases(HELDOUT_SEEDS[:1])
    assert [c.params for c in a] != [c.params for c in held]
    one = make_photo(a[0], (160, 160))
    assert np.array_equal(np.asarray(one.image), np.asarray(make_photo(a[0], (160, 160)).image))


def test_masks_are_fractional_coverage_of_a_product():
    for case in eval_cases(TUNING_SEEDS[:1]):
        photo = make_photo(case, (200, 200))
        cov = photo.coverage
        assert cov.min() >= 0 and cov.max() <= 1
        assert 0.02 < (cov >= 0.5).mean() < 0.8, case.name
        edge = (cov > 0.02) & (cov < 0.98)
        assert edge.any(), case.name  # anti-aliased, not a hard 0/1 mask


def test_two_plane_scenes_have_a_horizon_behind_the_product():
    case = next(c for c in eval_cases(TUNING_SEEDS) if c.category == "two_plane")
    photo = make_photo(case, (320, 320))
    left = np.asarray(photo.image)[:, :8].astype(np.float32).mean((1, 2))
    # The left border column steps from the wall to the table somewhere: a clear jump.
    jump = np.abs(left[12:] - left[:-12]).max()
    assert jump > 20, jump


def test_cropped_framing_cuts_the_product_at_the_edge():
    cropped = [c for c in eval_cases(TUNING_SEEDS + HELDOUT_SEEDS) if c.category == "framing"
               and c.frame[0] > 1.1]
    assert cropped
    photo = make_photo(cropped[0], (200, 200))
    m = photo.mask
    assert m[-1].any() or m[:, 0].any() or m[:, -1].any()


def test_scores_can_fail():
    photo = make_photo(eval_cases(TUNING_SEEDS[:1])[0], (200, 200))
    truth = photo.coverage
    assert iou(truth, truth) == 1.0 and boundary_f(truth, truth) == 1.0
    shifted = np.roll(truth, 12, axis=1)
    assert iou(shifted, truth) < 0.95
    assert boundary_f(shifted, truth) < 0.5
    assert boundary_f(np.zeros_like(truth), truth) == 0.0


# Per-category floors on the tuning seeds at 640² (docs/OPS.md has the tables; measured
# 4 Dec 2026 minus a margin): a change that makes a category clearly worse fails here. The
# issue's goal (mean >= 0.97, min >= 0.93) is met by all but white_on_white (0.962 / 0.934
# since the silhouette closure; 0.675 / 0.450 before), whose floor holds that level.
# textured raised with the per-region backdrop (OPS_VERSION 9: 0.978 / 0.950 -> 0.994 / 0.987).
# white_on_white raised with the fourth pass (OPS_VERSION 10: 0.965 / 0.935 -> 0.979 / 0.977;
# the goal is met on the tuning seeds and its floor is now the goal's mean).
CATEGORY_FLOORS = {  # category: (mean IoU, min IoU)
    "two_plane": (0.98, 0.97), "holes": (0.99, 0.98), "white_on_white": (0.97, 0.95),
    "glossy_transparent": (0.98, 0.97), "thin_parts": (0.97, 0.95), "textured": (0.98, 0.97),
    "gradient_vignette": (0.98, 0.97), "cast_shadows": (0.975, 0.96), "low_light": (0.98, 0.97),
    "framing": (0.98, 0.96),
}


def test_every_category_holds_its_floor_on_the_tuning_seeds():
    from swiftshot.ops.cutout import ClassicalSegmenter
    from swiftshot.testing.products import by_category, evaluate

    assert set(CATEGORY_FLOORS) == set(CATEGORIES)
    stats = by_category(evaluate(ClassicalSegmenter().mask, eval_cases(TUNING_SEEDS)))
    low = {cat: (round(s["mean_iou"], 3), round(s["min_iou"], 3)) for cat, s in stats.items()
           if s["mean_iou"] < CATEGORY_FLOORS[cat][0] or s["min_iou"] < CATEGORY_FLOORS[cat][1]}
    assert not low, low


def test_heldout_split_is_ten_seeds_a_category_and_refused_as_tuning_seeds():
    """Sixth pass: the held-out split grew from 1000-1004 to 1000-1009 (100 cases); asking
    for any of them as tuning seeds is refused, the new ones too."""
    import pytest

    from swiftshot.testing.products import main

    assert HELDOUT_SEEDS == tuple(range(1000, 1010))
    assert len(eval_cases(HELDOUT_SEEDS)) == 10 * len(CATEGORIES)
    for seeds in ("1007", "1005-1009", "40-1002", "3,1009"):
        with pytest.raises(SystemExit) as err:
            main(["--seeds", seeds, "--categories", "holes"])
        assert err.value.code == 2
