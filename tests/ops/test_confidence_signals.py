"""The confidence's signals of a part cut out or a blob of backdrop kept (issue 10, the
re-calibration after OPS_VERSION 14; docs/OPS.md "Confidence, re-fitted")."""

from __future__ import annotations

import numpy as np
import pytest

from swiftshot.ops.cutout import _ambiguous_blob, _mirror_notch

TAN = np.array([200.0, 180.0, 140.0], np.float32)
GREEN = np.array([40.0, 130.0, 70.0], np.float32)
CREAM = np.array([250.0, 244.0, 218.0], np.float32)


def _bottle(seed: int = 0):
    """A green bottle with a cream label on a tan table, shaded like a cylinder (its left
    side darker), on a 240² work copy: (image, backdrop model, mask)."""
    rng = np.random.default_rng(seed)
    h = w = 240
    bg = np.broadcast_to(TAN, (h, w, 3)).astype(np.float32)
    img = bg + rng.normal(0, 2.0, (h, w, 3)).astype(np.float32)
    hard = np.zeros((h, w), np.uint8)
    hard[40:210, 80:160] = 1
    hard[15:40, 108:132] = 1  # the neck
    shade = np.ones((h, w, 1), np.float32)
    shade[:, 80:160, 0] = np.linspace(0.55, 1.0, 80)  # dark on the left, like a cylinder
    img[hard > 0] = (GREEN * shade[hard > 0])
    img[110:150, 80:160] = (CREAM * shade[110:150, 80:160])
    return img, bg, hard


def test_mirror_notch_sees_a_notch_the_other_side_does_not_have():
    img, bg, hard = _bottle()
    assert _mirror_notch(img, bg, hard) < 0.002  # whole: nothing to see
    cut = hard.copy()
    cut[112:148, 80:100] = 0  # the label's shaded left quarter given back (textured 8014)
    frac = _mirror_notch(img, bg, cut)
    assert frac > 0.03, frac
    # The same notch showing the table through it is the product's own shape: its hue is
    # the backdrop's, not the mirrored label's.
    img2 = img.copy()
    img2[112:148, 80:100] = bg[112:148, 80:100]
    assert _mirror_notch(img2, bg, cut) < 0.002


def test_mirror_notch_leaves_a_handle_on_one_side_alone():
    """A mug's handle is product on one side only; the body's other side is not a notch (the
    handle's mirror image lies outside the silhouette's convex hull), nor is the backdrop
    seen through the handle."""
    img, bg, hard = _bottle()
    img[40:210, 80:160] = GREEN
    hard[15:40] = 0
    hard[70:170, 160:200] = 1
    hard[90:150, 160:180] = 0  # the handle's hole, closed by the body
    img[(hard > 0)] = GREEN
    assert _mirror_notch(img, bg, hard) < 0.004


def test_ambiguous_blob_sees_a_thick_blob_not_scattered_grey():
    inside = np.zeros((200, 200), bool)
    inside[40:160, 40:160] = True
    amb = np.zeros_like(inside)
    amb[60:90, 100:130] = True  # a hole holding a shadow: 900 of 14400 px
    frac = _ambiguous_blob(inside, amb)
    assert 0.05 < frac < 0.07, frac
    sheen = np.zeros_like(inside)
    sheen[40:160:3, 40:160:3] = True  # a glossy sheen's scattered grey pixels
    assert _ambiguous_blob(inside, sheen) == 0.0
    assert _ambiguous_blob(inside, amb & ~inside) == 0.0


# -- on the photos the re-fit was for: the true mask, then the same mask with the miss ------

def _work(category: str, seed: int):
    """The work copy's signals inputs of a tuning photo, and its true mask at the work size."""
    import cv2

    from swiftshot.ops.cutout import ClassicalSegmenter
    from swiftshot.testing.products import HELDOUT_SEEDS, _eval_case, make_photo

    assert seed not in HELDOUT_SEEDS
    photo = make_photo(_eval_case(category, seed), (640, 640))
    _, img, bg, sigma, _, ev, hard, band, _ = ClassicalSegmenter()._work_regions(
        np.asarray(photo.image))
    truth = cv2.resize(photo.coverage.astype(np.float32), hard.shape[::-1],
                       interpolation=cv2.INTER_AREA)
    return img, bg, sigma, band, ev, (truth >= 0.5).astype(np.uint8)


def _conf(img, bg, sigma, band, ev, hard):
    from swiftshot.ops.cutout import _confidence_from, _confidence_signals

    return _confidence_from(_confidence_signals(img, bg, sigma, band, hard, ev))


def test_a_label_notch_cut_out_of_a_bottle_is_said_low():
    """textured 8014: a cream label's shaded side given back on a wood table (IoU 0.92 at
    confidence 0.99 before the notch term)."""
    img, bg, sigma, band, ev, truth = _work("textured", 8014)
    conf, why = _conf(img, bg, sigma, band, ev, truth)
    assert conf >= 0.9 and not any("notch" in w for w in why), (conf, why)
    x, _, w, _ = cv2_box(truth)
    # The label's rows: cream (bright) on the lit right half of the bottle.
    rows = ((img.mean(2) > 200) & (truth > 0))[:, x + w // 2:].sum(1) > 0.2 * w
    cut = truth.copy()
    cut[np.ix_(rows, np.arange(x, x + w // 4))] = 0  # the label's left quarter given back
    assert 0.03 * truth.sum() < (truth - cut).sum() < 0.12 * truth.sum()
    conf, why = _conf(img, bg, sigma, band, ev, cut)
    assert conf < 0.5 and any("notch" in w for w in why), (conf, why)


def test_a_kept_handle_hole_holding_a_shadow_is_said():
    """framing 27: a cropped mug's handle hole with its shadow in it kept as product (IoU 0.90
    at confidence 0.78, `medium`, before the blob term; 0.70 after)."""
    import cv2

    img, bg, sigma, band, ev, truth = _work("framing", 27)
    whole, why = _conf(img, bg, sigma, band, ev, truth)
    assert not any("blob" in w for w in why), (whole, why)
    filled = truth.copy()
    cnt, _ = cv2.findContours(truth, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(filled, cnt, -1, 1, cv2.FILLED)  # the hole kept
    assert filled.sum() > 1.03 * truth.sum()
    conf, why = _conf(img, bg, sigma, band, ev, filled)
    # Said, and no longer `high`; not `low` (the fit weighs the blob 1.64 only: a glossy
    # product's grey sheen makes such blobs too): a gap, docs/OPS.md.
    assert conf < 0.9 and conf < whole - 0.1 and any("blob" in w for w in why), (conf, why)


def cv2_box(m):
    import cv2

    return cv2.boundingRect(m)


# -- a part left out beyond the outline (issue 10, white12: textured 9422) -------------------

WHITE = np.array([246.0, 244.0, 240.0], np.float32)
BLUE = np.array([40.0, 70.0, 160.0], np.float32)


def _sneaker_on_white(sole: bool = True, seed: int = 0):
    """A blue upper (rows 80-150) over a white sole 7 % darker than the white table (rows
    150-175), the sneaker's shadow under the sole (rows 175-200, 0.82 fading to 1), on a 240²
    work copy: (image, backdrop model, band mask, upper's mask, sole's mask)."""
    rng = np.random.default_rng(seed)
    h = w = 240
    bg = np.broadcast_to(WHITE, (h, w, 3)).astype(np.float32)
    shade = np.ones((h, w), np.float32)
    fall = np.linspace(0.82, 1.0, 25)[:, None]
    shade[175:200, 50:200] = fall
    img = bg * shade[..., None]
    upper = np.zeros((h, w), np.uint8)
    upper[80:150, 60:190] = 1
    img[upper > 0] = BLUE
    sole_m = np.zeros((h, w), np.uint8)
    if sole:
        sole_m[150:175, 55:195] = 1
        img[sole_m > 0] = WHITE * 0.93
    img = img + rng.normal(0, 1.5, img.shape).astype(np.float32)
    band = np.zeros((h, w), bool)
    band[:10], band[-10:], band[:, :10], band[:, -10:] = True, True, True, True
    return img.astype(np.float32), bg, band, upper, sole_m


def _lit(img, bg, band, hard):
    from swiftshot.ops.cutout import ClassicalParams, _evidence, _lit_beyond

    ev = _evidence(img, bg, 1.5, band, ClassicalParams())
    return _lit_beyond(hard, ev)


def test_lit_beyond_sees_a_light_band_left_out_under_the_outline():
    img, bg, band, upper, sole = _sneaker_on_white()
    assert _lit(img, bg, band, upper) > 0.2  # the sole left out: its lower edge is a step down
    assert _lit(img, bg, band, upper | sole) < 0.02  # whole: the shadow's edge steps up


def test_lit_beyond_leaves_a_cast_shadow_beyond_the_outline_alone():
    """A hard cast shadow beside the product steps *up* away from it: not a part left out."""
    img, bg, band, upper, _ = _sneaker_on_white(sole=False)
    rng = np.random.default_rng(1)
    # A hard shadow under the upper, sharp-edged, then the soft one fading out under it.
    img[150:180, 55:195] = WHITE * 0.6 + rng.normal(0, 1.5, (30, 140, 3))
    assert _lit(img, bg, band, upper) < 0.04  # the term's ramp starts at 0.07


def test_a_white_sole_left_out_on_white_linen_is_said_low():
    """textured 9422 (fresh seed, never tuned on): a sneaker's white sole on a white linen
    table under a grey wall is given back as the table's shadow (640², IoU 0.72) and the
    confidence said 0.97 `high` before the lit-band term."""
    score, conf, why = _found("textured", 9422, 640)
    if score < 0.93:  # the sole lost (as on main at 1528e40; test_a_sole_cut_off_is_said_low)
        assert conf < 0.5 and any("light band" in w for w in why), (conf, why)
    # The true mask: nothing beyond it (its confidence is 0.77, `medium`, anyway: the sole
    # looks like the table's shadow, a blob of 29 % of the product; docs/OPS.md).
    img, bg, sigma, band, ev, truth = _work("textured", 9422)
    conf, why = _conf(img, bg, sigma, band, ev, truth)
    assert not any("light band" in w for w in why), (conf, why)


def test_a_dim_sole_lost_in_low_light_is_said_low_at_800():
    """low light 4008 at 800² (the lead's fresh range): a sneaker's light grey sole on a grey
    sweep in low light, lost whole (IoU 0.686); its lower edge is found in pieces, a lit band
    beyond 14 % of the outline, and the term's old ramp (full from 0.2) said 0.86 `medium`.
    Full from 0.13 now (cutouts that are not misses read 0.06 at most)."""
    score, conf, why = _found("low_light", 4008, 800)
    if score < 0.93:  # the sole lost (as on main at b77c70d; since OPS 22 it is given back)
        assert conf < 0.5 and any("light band" in w for w in why), (conf, why)


@pytest.mark.parametrize("category,seed", [("low_light", 4008), ("textured", 9422)])
def test_a_sole_cut_off_is_said_low(category, seed):
    """The lost-sole doubt on a mask that certainly lost it, whatever the cutout does today
    (the two tests above only hold it when the cutout loses the sole, which `_restore_lit_parts`
    now prevents): the true mask less its lowest 12 % of rows — the sole, with the sneaker's own
    shadow stepping down past it — is said low, by the light band; the true mask is not."""
    img, bg, sigma, band, ev, truth = _work(category, seed)
    conf, why = _conf(img, bg, sigma, band, ev, truth)
    assert conf >= 0.9 and not any("light band" in w for w in why), (conf, why)
    rows = np.nonzero(truth.any(1))[0]
    cut = truth.copy()
    cut[rows[-1] - int(0.12 * (rows[-1] - rows[0] + 1)) + 1:] = 0
    conf, why = _conf(img, bg, sigma, band, ev, cut)
    assert conf < 0.5 and any("light band" in w for w in why), (conf, why)


def _found(category: str, seed: int, side: int):
    from swiftshot.ops.cutout import ClassicalSegmenter, _confidence_from
    from swiftshot.testing.products import _eval_case, iou, make_photo

    photo = make_photo(_eval_case(category, seed), (side, side))
    rgb = np.asarray(photo.image)
    seg = ClassicalSegmenter()
    found = seg.find(rgb)
    signals = dict(found.signals)
    alpha = seg.refine(found, rgb, signals)
    conf, why = _confidence_from(signals)
    return iou(alpha / 255.0, photo.coverage), conf, why


def test_a_light_sole_given_back_is_not_counted_as_a_blob_of_shadow():
    """textured 9422 at 800²: the white sole that `_restore_lit_parts` gives back (IoU 0.988)
    looks like the table's shadow by its colour; counted, it read as plain backdrop filled in
    (24 %) and a blob of shadow (25 %): 0.37 `low` on a right cutout. The step down under it
    decided the call, and the doubts leave the restored part out."""
    score, conf, why = _found("textured", 9422, 800)
    if score >= 0.97:  # the sole restored (main at 7f6eb3d)
        assert conf >= 0.9, (conf, why)
        assert not any("blob" in w or "filled in" in w for w in why), why


def test_a_dim_sole_restored_only_in_part_is_still_said_low():
    """low light 9175 at 640²: `_restore_lit_parts` gives back a piece of the sole, the rest is
    lost (IoU 0.77): the notch it leaves is still said, `low`."""
    score, conf, why = _found("low_light", 9175, 640)
    if score < 0.93:
        assert conf < 0.5, (conf, why)


# -- backdrop kept in gaps open to the outside (issue 10, conf15: novel plants) --------------

LEAF = np.array([60.0, 125.0, 55.0], np.float32)


def _fan(seed: int = 0, textured: bool = False):
    """A plant on a 240² work copy: a terracotta pot (rows 150-210), five stems fanning up from
    its rim to five leaves, the tan table between them: (image, backdrop model, band mask,
    true mask, the mask with the gaps between the stems kept, as a 15 px closing keeps them)."""
    import cv2

    rng = np.random.default_rng(seed)
    h = w = 240
    bg = np.broadcast_to(TAN, (h, w, 3)).astype(np.float32)
    img = bg.copy()
    truth = np.zeros((h, w), np.uint8)
    truth[150:210, 85:155] = 1
    img[truth > 0] = (190.0, 100.0, 70.0)
    for end in ((40, 80), (70, 50), (120, 35), (170, 50), (200, 80)):
        stem = np.zeros_like(truth)
        cv2.line(stem, (120, 150), end, 1, 3)
        cv2.ellipse(stem, end, (14, 8), 0, 0, 360, 1, -1)
        truth |= stem
        img[stem > 0] = LEAF
    img = cv2.GaussianBlur(img, (3, 3), 0.8)  # the colour bleeds into the gaps a little
    img[truth == 0] = bg[truth == 0]
    img += rng.normal(0, 1.5, img.shape).astype(np.float32)
    band = np.zeros((h, w), bool)
    band[:10], band[-10:], band[:, :10], band[:, -10:] = True, True, True, True
    kept = cv2.morphologyEx(truth, cv2.MORPH_CLOSE,
                            cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (15, 15)))
    return img.astype(np.float32), bg, band, truth, kept


def _pockets(img, bg, band, hard, sigma=1.5):
    from swiftshot.ops.cutout import ClassicalParams, _backdrop_pockets, _evidence

    ev = _evidence(img, bg, sigma, band, ClassicalParams())
    return _backdrop_pockets(img, hard, ev)


def test_backdrop_pockets_see_the_gaps_between_stems_kept():
    img, bg, band, truth, kept = _fan()
    assert (kept > truth).sum() > 0.05 * truth.sum()
    assert _pockets(img, bg, band, truth) < 0.002  # the true mask: no pocket
    assert _pockets(img, bg, band, kept) > 0.03  # the gaps kept: past the term's full doubt


def test_backdrop_pockets_leave_a_smooth_part_on_a_textured_table_alone():
    """A sole of the table's colour under a blue upper, on a wood-like table (grain 8 levels):
    backdrop-coloured and open to the table along its outline, but smooth where the table is
    not: product (textured 17 and 19, sneakers on linen and wood, 0.27 and 0.16 without the
    texture test)."""
    import cv2

    rng = np.random.default_rng(3)
    h = w = 240
    bg = np.broadcast_to(TAN, (h, w, 3)).astype(np.float32)
    grain = cv2.GaussianBlur(rng.normal(0, 50, (h, w)).astype(np.float32), (0, 0), sigmaX=6, sigmaY=0.7)
    img = bg + grain[..., None]
    hard = np.zeros((h, w), np.uint8)
    hard[80:150, 60:190] = 1
    img[80:150, 60:190] = BLUE
    hard[150:175, 55:195] = 1
    img[150:175, 55:195] = TAN  # the sole: the table's colour, smooth
    img += rng.normal(0, 1.0, img.shape).astype(np.float32)
    band = np.zeros((h, w), bool)
    band[:10], band[-10:], band[:, :10], band[:, -10:] = True, True, True, True
    sigma = float(np.std((img - bg)[band]))
    assert _pockets(img, bg, band, hard, sigma) < 0.002


def _work_novel(category: str, seed: int):
    """``_work`` for a novel shape (``testing.novel``; seeds under 120 only: 120-199 are the
    lead's blind checks)."""
    import cv2

    from swiftshot.ops.cutout import ClassicalSegmenter
    from swiftshot.testing.novel import novel_case
    from swiftshot.testing.products import make_photo

    assert seed < 120
    photo = make_photo(novel_case(category, seed), (640, 640))
    _, img, bg, sigma, _, ev, hard, band, _ = ClassicalSegmenter()._work_regions(
        np.asarray(photo.image))
    truth = cv2.resize(photo.coverage.astype(np.float32), hard.shape[::-1],
                       interpolation=cv2.INTER_AREA)
    return img, bg, sigma, band, ev, (truth >= 0.5).astype(np.uint8)


@pytest.mark.parametrize("category", ["two_plane", "thin_parts"])
def test_a_plant_with_the_gaps_between_its_leaves_kept_is_said_low(category):
    """Novel plants, seed 10 at 640²: the closing (and JPEG's colour bleed) kept the table
    between the stems and leaves (IoU 0.88, said 0.96-0.99 `high` before the pocket term).
    The true mask closed 11 px keeps them as the cutout did: said low, with the note; the true
    mask is not doubted."""
    import cv2

    img, bg, sigma, band, ev, truth = _work_novel(category, 10)
    conf, why = _conf(img, bg, sigma, band, ev, truth)
    assert conf >= 0.9 and not any("gaps" in w for w in why), (conf, why)
    kept = cv2.morphologyEx(truth, cv2.MORPH_CLOSE,
                            cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (11, 11)))
    conf, why = _conf(img, bg, sigma, band, ev, kept)
    assert conf < 0.5 and any("gaps" in w for w in why), (conf, why)


def test_a_white_bottle_with_its_soft_shadow_kept_is_not_said_high():
    """white on white 5516 at 640² (a white bottle on a white sweep): the closing kept a
    wedge of its soft cast shadow beside the base (IoU 0.82), said `high` (0.97): a
    quarter of the outline runs along shadow with no sharp edge (``soft_shadow``); a
    white product's own outline is a sharp step, or a lit face no darker than the sweep."""
    score, conf, why = _found("white_on_white", 5516, 640)
    assert score < 0.93
    assert conf < 0.9 and any("cast shadow" in w for w in why), (conf, why)


def test_a_white_bottle_cut_right_stays_high():
    """white on white 44 at 640², a right cutout (0.97) whose outline runs along shadow
    the most of the tuning set's white products (8 %, under the doubt's start)."""
    score, conf, why = _found("white_on_white", 44, 640)
    assert score > 0.95 and conf >= 0.9, (score, conf, why)


def test_a_mug_with_its_soft_shadow_kept_is_not_said_high():
    """cast shadows 5516 at 640² (a yellow mug on a white sweep): a blob of its soft cast
    shadow kept beside the base (IoU 0.89), said `high` (0.97). The blob looks like shadow
    (``amb_blob`` 0.10) and the sweep runs lighter between it and the rest of the shadow
    (``lit_beyond`` 0.05): both at once are the ``shadow_lit`` doubt.

    Since OPS 47 (shadow18, ``cutout._plain_rows``) that blob is no longer kept: it was the
    shadow given back and taken again as a smooth part. The cutout is right and said high;
    the doubt is held on the signals the miss had, set on a right mug's own (15231)."""
    from swiftshot.ops.cutout import ClassicalSegmenter, _confidence_from
    from swiftshot.testing.products import _eval_case, make_photo

    score, conf, why = _found("cast_shadows", 5516, 640)
    assert score > 0.95 and conf >= 0.9, (score, conf, why)
    rgb = np.asarray(make_photo(_eval_case("cast_shadows", 15231), (640, 640)).image)
    seg = ClassicalSegmenter()
    found = seg.find(rgb)
    signals = dict(found.signals)
    seg.refine(found, rgb, signals)
    conf, why = _confidence_from({**signals, "amb_blob": 0.10, "lit_beyond": 0.05})
    assert conf < 0.9 and any("lit band beyond" in w for w in why), (conf, why)


def test_a_mug_with_a_lit_band_and_no_shadow_kept_stays_high():
    """cast shadows 15231 at 640², a right cutout (0.98) with a lit band beyond its outline
    (``lit_beyond`` 0.05) but no blob of shadow kept: no doubt."""
    score, conf, why = _found("cast_shadows", 15231, 640)
    assert score > 0.95 and conf >= 0.9, (score, conf, why)
