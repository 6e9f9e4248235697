"""The evaluation set of issue 10: enough cases and categories, exact masks, held-out seeds
apart, and scores that can fail."""

from __future__ import annotations

import numpy as np
import pytest

from swiftshot.testing.products import (
    CATEGORIES,
    HELDOUT_SEEDS,
    TUNING_SEEDS,
    boundary_f,
    case_iou,
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


def test_case_iou_scores_one_case_and_refuses_held_out_and_blind_seeds():
    """The tests' floor on one case (tests/ops/test_cutout_*): a drawn case scores high, and a
    held-out or blind seed is refused before anything is drawn."""
    assert case_iou("holes", 0, 320) > 0.9
    for seed in (HELDOUT_SEEDS[0], 5600, 5699, 5150, 5540):
        with pytest.raises(ValueError, match="held out or blind"):
            case_iou("framing", seed)


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


# -- several sizes in one run, and the confidence's calibration report ----------------------

def test_sizes_option_evaluates_every_size_in_one_run(tmp_path, capsys):
    import json

    import pytest

    from swiftshot.testing.products import main

    out = tmp_path / "eval.json"
    assert main(["--seeds", "0", "--categories", "holes,cast_shadows", "--sizes", "160,224",
                 "--confidence", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "at 160²" in printed and "at 224²" in printed and "said low" in printed
    result = json.loads(out.read_text())
    assert result["sizes"] == [160, 224]
    by_size = result["tuning"]["sizes"]
    assert set(by_size) == {"160", "224"}
    for side, entry in by_size.items():
        assert len(entry["rows"]) == 2
        assert all(r["size"] == [int(side), int(side)] for r in entry["rows"])
        assert all(0 <= r["confidence"] <= 1 and r["level"] for r in entry["rows"])
        assert entry["confidence"]["all"]["n"] == 2
    # The same case at two sizes is two photos (its IoU is measured on each).
    assert by_size["160"]["rows"][0]["iou"] != by_size["224"]["rows"][0]["iou"]
    for bad in (["--sizes", "10"], ["--sizes", "640,x"], ["--size", "640", "--sizes", "800"]):
        with pytest.raises(SystemExit) as err:
            main(["--seeds", "0", "--categories", "holes", *bad])
        assert err.value.code == 2


def test_confidence_report_counts_catches_and_false_alarms():
    from swiftshot.testing.products import confidence_report, confidence_table

    rows = [{"case": f"c{i}", "category": "a" if i < 4 else "b", "iou": iou_, "confidence": c}
            for i, (iou_, c) in enumerate([(0.80, 0.1), (0.90, 0.7), (0.99, 0.95), (0.98, 0.3),
                                           (0.95, 0.6), (0.99, 0.97)])]
    rep = confidence_report(rows, low=0.5)
    a = rep["all"]
    assert (a["bad"], a["bad_caught"], a["good"], a["good_flagged"]) == (2, 1, 3, 1)
    assert a["missed"] == ["c1"] and a["false_alarms"] == ["c3"]
    assert rep["categories"]["b"]["n"] == 2 and rep["categories"]["b"]["bad"] == 0
    assert 0.0 < a["pearson"] < 1.0 and -1.0 <= a["spearman"] <= 1.0
    # Perfectly ordered: both correlations 1.
    ordered = [{"case": str(i), "category": "a", "iou": 0.9 + i / 100, "confidence": i / 10}
               for i in range(5)]
    rep = confidence_report(ordered)
    assert abs(rep["all"]["spearman"] - 1) < 1e-9 and rep["all"]["pearson"] > 0.99
    assert "| **all** | 5 |" in confidence_table(rep)


def test_calibrated_confidence_says_low_on_the_tuning_misses_only():
    """The calibration (docs/OPS.md): white on white at IoU ≥ 0.97 (0.00 before) and clean
    cutouts are not `low`; a brown box on brown wood whose top face's edge is lost is. Tinted
    glass whose dark walls the matte gave back (IoU 0.93, `low` since the calibration) is cut
    right since the tenth pass, and not `low` either."""
    from swiftshot.ops.cutout import ClassicalSegmenter
    from swiftshot.testing.products import confidence_report, evaluate

    cases = (eval_cases((9, 10), ("glossy_transparent",))
             + eval_cases((1, 2, 3), ("white_on_white",)) + eval_cases((0, 1), ("holes",))
             + eval_cases((7010,), ("textured",)))
    rows = evaluate(None, cases, (640, 640), segmenter=ClassicalSegmenter())
    rep = confidence_report(rows)["all"]
    assert rep["bad_caught"] == rep["bad"], rep
    glass = [r for r in rows if r["category"] == "glossy_transparent"]
    assert all(r["iou"] >= 0.97 and r["level"] != "low" for r in glass), glass
    box = next(r for r in rows if r["category"] == "textured")
    assert box["iou"] < 0.96 and box["level"] == "low", box
    assert rep["good"] >= 6 and rep["good_flagged"] == 0, rep
