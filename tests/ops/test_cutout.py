"""Cutout quality on the synthetic evaluation set, and the segmenters' contracts."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from swiftshot.ops.compose import ComposeParams, Placement, compose, fit_rgba, product_only
from swiftshot.ops.cutout import (
    ClassicalSegmenter,
    FakeSegmenter,
    OnnxSegmenter,
    Segmenter,
    create_segmenter,
    cutout,
)
from swiftshot.testing.products import CASES, base_band, base_band_alpha, iou, make_photo

# Measured on this set at 640×640 (docs/OPS.md has the table) minus a margin, so a change that
# makes any case clearly worse fails here.
FLOORS = {
    "bottle_white_sweep": 0.975, "box_gradient": 0.975, "sneaker_textured": 0.975,
    "mug_handle_white_sweep": 0.975, "white_on_white": 0.94, "bottle_grey_noisy_jpeg": 0.975,
    "dark_box_hard_shadow": 0.975, "mug_gradient_jpeg": 0.975,
}
SIZE = (640, 640)


@pytest.fixture(scope="module")
def scores() -> dict[str, float]:
    seg = ClassicalSegmenter()
    out = {}
    for case in CASES:
        photo = make_photo(case, SIZE)
        out[case.name] = iou(seg.mask(photo.image), photo.coverage)
    return out


def test_every_case_has_a_floor():
    assert set(FLOORS) == {c.name for c in CASES}


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_iou_per_case(scores, name):
    assert scores[name] >= FLOORS[name], f"{name}: IoU {scores[name]:.3f} < {FLOORS[name]}"


def test_mean_iou(scores):
    assert np.mean(list(scores.values())) >= 0.96


def test_other_seeds_and_sizes_hold_up():
    seg = ClassicalSegmenter()
    for case, size, seed in (("box_gradient", (900, 700), 3), ("mug_handle_white_sweep", (500, 800), 7)):
        photo = make_photo(case, size, seed=seed)
        assert iou(seg.mask(photo.image), photo.coverage) >= 0.93, (case, size)


def test_cast_shadow_is_background():
    photo = make_photo("dark_box_hard_shadow", SIZE)
    alpha = ClassicalSegmenter().mask(photo.image)
    # Pixels the synthetic shadow darkened by a lot, away from the product, must stay out.
    arr = np.asarray(photo.image).astype(np.float32).mean(2)
    far = ~np.asarray(Image.fromarray(photo.mask).resize(SIZE), bool)
    import cv2

    far &= cv2.dilate(photo.mask.astype(np.uint8), np.ones((15, 15), np.uint8)) == 0
    shadowed = far & (arr < 200)
    assert shadowed.sum() > 1000  # the case does have a strong shadow
    assert (alpha[shadowed] > 0.5).mean() < 0.05  # measured 0.036: the contact shadow's rim


def test_handle_hole_is_background():
    photo = make_photo("mug_handle_white_sweep", SIZE)
    alpha = ClassicalSegmenter().mask(photo.image)
    h, w = SIZE[1], SIZE[0]
    # The hole's centre is at (0.64, 0.55) of the frame (see testing/products.py).
    cy, cx = int(0.55 * h), int(0.64 * w)
    assert photo.coverage[cy, cx] == 0
    assert alpha[cy - 10:cy + 10, cx - 6:cx + 6].max() < 0.1


def test_alpha_is_soft_at_the_edge_and_binary_inside():
    photo = make_photo("bottle_white_sweep", SIZE)
    alpha = ClassicalSegmenter().mask(photo.image)
    assert alpha.dtype == np.float32 and alpha.shape == (SIZE[1], SIZE[0])
    assert alpha.min() >= 0 and alpha.max() <= 1
    inner = photo.coverage == 1
    import cv2

    inner = cv2.erode(inner.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    assert (alpha[inner] > 0.95).mean() > 0.99
    # On anti-aliased edge pixels the alpha follows the true coverage (measured MAE 0.28; a
    # hard 0/1 mask would score about 0.5 there, a blurred one worse).
    edge = (photo.coverage > 0.05) & (photo.coverage < 0.95)
    assert np.abs(alpha[edge] - photo.coverage[edge]).mean() < 0.35


def test_existing_alpha_is_kept():
    rgba = Image.new("RGBA", (64, 64), (10, 20, 30, 0))
    rgba.paste((200, 10, 10, 255), (16, 16, 48, 48))
    alpha = ClassicalSegmenter().mask(rgba)
    assert alpha[32, 32] == 1.0 and alpha[2, 2] == 0.0


def test_cutout_gives_rgba_with_mask():
    photo = make_photo("box_gradient", (320, 320))
    out = cutout(photo.image, FakeSegmenter())
    assert out.mode == "RGBA" and out.size == (320, 320)
    assert out.getpixel((160, 160))[3] == 255 and out.getpixel((2, 2))[3] == 0


def test_fake_and_classical_are_segmenters():
    assert isinstance(ClassicalSegmenter(), Segmenter)
    assert isinstance(FakeSegmenter(), Segmenter)


def test_create_segmenter_errors(tmp_path):
    with pytest.raises(ValueError, match="known: classical"):
        create_segmenter("nope")
    with pytest.raises(ValueError, match="model_dir"):
        create_segmenter("u2net")
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        create_segmenter("u2net", tmp_path)


def _tiny_onnx(path, mean_weight: float = 1 / 3) -> None:
    """A 1×1 conv averaging the channels: 'foreground' = bright after normalisation."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.full((1, 3, 1, 1), mean_weight, np.float32), "w")
    node = helper.make_node("Conv", ["input", "w"], ["output"])
    graph = helper.make_graph(
        [node], "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 1, "h", "w"])],
        initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


@pytest.mark.parametrize("kind, side", [("u2net", 320), ("isnet-general-use", 1024),
                                        ("birefnet-general", 1024)])
def test_onnx_segmenter_runs_a_model_file(tmp_path, kind, side):
    path = tmp_path / f"{kind}.onnx"
    _tiny_onnx(path)
    seg = OnnxSegmenter(path, kind)
    assert seg.preprocess(Image.new("RGB", (50, 40))).shape == (1, 3, side, side)
    img = Image.new("RGB", (200, 120), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 100, 120))
    mask = seg.mask(img)
    assert mask.shape == (120, 200) and mask.dtype == np.float32
    assert mask[60, 20] > 0.6 and mask[60, 180] < 0.4
    if kind != "birefnet-general":  # min-max normalised: spans 0..1
        assert mask.max() == pytest.approx(1.0, abs=1e-3) and mask.min() == pytest.approx(0, abs=1e-3)
    same = create_segmenter(kind, tmp_path)
    assert np.allclose(same.mask(img), mask)


# -- the contact shadow under the base --------------------------------------------------------
# A band under the product's base (2 % of its height) is backdrop in every case: a cutout that
# keeps the contact shadow there prints a sliver of the old backdrop under the product in every
# composite, which IoU hardly sees (the band is thin). At 640² the band's mean alpha was
# 0.095–0.69 before the fix (0.69: the black box), 0.008–0.049 after.
BAND_MAX = 0.08


@pytest.fixture(scope="module")
def cutouts() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    seg = ClassicalSegmenter()
    out = {}
    for case in CASES:
        photo = make_photo(case, SIZE)
        rgb = np.asarray(photo.image)
        out[case.name] = (rgb, seg.alpha_u8(rgb), photo.coverage)
    return out


def test_base_band_is_where_the_contact_shadow_falls():
    photo = make_photo("dark_box_hard_shadow", SIZE)
    band = base_band(photo.coverage)
    assert band.sum() > 500 and (photo.coverage[band] == 0).all()
    # Each band pixel lies within a few pixels under the product in its own column (the box's
    # front base and its slanted side face), and the photo is shadowed there.
    ys, xs = np.nonzero(band)
    solid = photo.coverage >= 0.5
    lowest = photo.coverage.shape[0] - 1 - np.argmax(solid[::-1], axis=0)
    assert solid[:, xs].any(0).all()
    assert ((ys > lowest[xs]) & (ys <= lowest[xs] + 12)).all()
    assert np.asarray(photo.image)[band].mean() < 200
    assert base_band_alpha(photo.coverage, photo.coverage) == 0.0
    assert base_band_alpha(np.ones_like(photo.coverage), photo.coverage) == 1.0


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_contact_shadow_under_the_base_is_background(cutouts, name):
    _, a8, coverage = cutouts[name]
    kept = base_band_alpha(a8.astype(np.float32) / 255.0, coverage)
    assert kept <= BAND_MAX, f"{name}: mean alpha {kept:.3f} in the band under the base"


# A new backdrop far from every source backdrop's hue: green.
NEW_BG = (40, 160, 60)


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_composite_has_no_old_backdrop_under_the_product(cutouts, name):
    rgb, a8, coverage = cutouts[name]
    rgba = np.dstack([rgb, a8])
    out = np.asarray(compose(Image.fromarray(rgba, "RGBA"), NEW_BG, (800, 800),
                             ComposeParams(shadow=None, colour_match=0))).astype(np.float32)
    # Where the true product lands: its coverage placed exactly as compose places the cutout
    # (by the bounding box of the product's own alpha, without specks).
    box = product_only(Image.fromarray(rgba, "RGBA")).getchannel("A").getbbox()
    assert box is not None
    x0, y0, x1, y1 = box
    cov8 = cv2.convertScaleAbs(coverage, alpha=255.0)
    _, placed8, px, py = fit_rgba(np.dstack([cov8, cov8, cov8, cov8])[y0:y1, x0:x1], (800, 800),
                                  Placement())
    placed = np.zeros((800, 800), np.float32)
    ph, pw = placed8.shape
    placed[max(py, 0):py + ph, max(px, 0):px + pw] = placed8[max(-py, 0):, max(-px, 0):] / 255.0
    band = base_band(placed)
    assert band.sum() > 300
    off = np.abs(out[band] - np.array(NEW_BG, np.float32)).sum(1)
    # Mean over the band of the colour distance (sum of |ΔR|+|ΔG|+|ΔB|) from the new backdrop;
    # the old code (a kept shadow band) measured 17–129 here, the fix 1–8.
    assert off.mean() < 12, f"{name}: band under the product is {off.mean():.0f} off the backdrop"


def _rings(coverage: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(backdrop 2–4 px outside the product's edge, product 2–4 px inside it)."""
    touched = (coverage > 0.02).astype(np.uint8)
    solid = (coverage >= 0.98).astype(np.uint8)

    def disc(r: int) -> np.ndarray:
        return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))

    outer = (cv2.dilate(touched, disc(4)) > 0) & (cv2.dilate(touched, disc(1)) == 0)
    inner = (cv2.erode(solid, disc(1)) > 0) & (cv2.erode(solid, disc(4)) == 0)
    return outer, inner


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_no_halo_around_the_edge(cutouts, name):
    # A ring of backdrop kept around the product is a light or dark fringe on a contrasting new
    # backdrop. Before the fix the ring just outside the edge kept a mean alpha of 0.06–0.29
    # (a strip along the black box from the edge detector's side lobe, bulges of JPEG colour
    # ringing round the red mug); now ≤ 0.022.
    _, a8, coverage = cutouts[name]
    alpha = a8.astype(np.float32) / 255.0
    outer, inner = _rings(coverage)
    assert alpha[outer].mean() <= 0.05, f"{name}: alpha {alpha[outer].mean():.3f} outside the edge"
    if name != "white_on_white":  # its faint top face's rim is soft (docs/OPS.md, weak spots)
        missing = 1.0 - alpha[inner].mean()
        assert missing <= 0.06, f"{name}: {missing:.3f} of the product's rim is transparent"


def test_cutout_says_how_sure_it_is():
    from swiftshot.ops.cutout import CONFIDENCE_INFO, confidence_header, confidence_label
    from swiftshot.testing.products import TUNING_SEEDS, eval_cases

    clear = cutout(make_photo("box_gradient", SIZE).image)
    assert clear.info[CONFIDENCE_INFO] >= 0.8
    assert confidence_header(clear).endswith("high")
    # White on white is closed from its outline (IoU 0.94-0.99 on the tuning seeds): since the
    # calibration no longer `low` (it was 0.00 on every case, even at IoU 0.99), but said.
    white = next(c for c in eval_cases(TUNING_SEEDS) if c.category == "white_on_white")
    photo = make_photo(white, SIZE)
    out = cutout(photo.image)
    assert iou(np.asarray(out)[..., 3] / 255.0, photo.coverage) >= 0.97
    assert confidence_label(out.info[CONFIDENCE_INFO]) != "low"
    assert any("white on white" in n for n in out.info["cutout_notes"])
    # A tinted glass bottle whose dark walls the matte gave back (IoU 0.93) was 1.00 until the
    # calibration, then low (0.23, "dark pixels the matte gave back"); since the tenth pass
    # the matte keeps pixels darker than any shadow: the cutout is right, and says so.
    glass = eval_cases((10,), ("glossy_transparent",))[0]
    photo = make_photo(glass, SIZE)
    guess = cutout(photo.image)
    assert iou(np.asarray(guess)[..., 3] / 255.0, photo.coverage) >= 0.97
    assert confidence_header(guess).endswith("high")
    assert not any("dark" in n for n in guess.info["cutout_notes"])


def test_confidence_is_low_on_a_busy_photo_and_high_on_a_clean_one():
    # Constructed: a product on a busy backdrop no smooth surface explains (a room) and the
    # same product on a plain one.
    from swiftshot.ops.cutout import CONFIDENCE_INFO, confidence_label

    rng = np.random.default_rng(5)
    busy = (rng.random((40, 40, 3)) * 255).astype(np.uint8)
    busy = cv2.resize(busy, (480, 480), interpolation=cv2.INTER_NEAREST)
    plain = np.full((480, 480, 3), 230, np.uint8)
    for img in (busy, plain):
        cv2.rectangle(img, (170, 120), (310, 380), (40, 70, 160), -1)
    low = cutout(Image.fromarray(busy))
    assert confidence_label(low.info[CONFIDENCE_INFO]) == "low", low.info
    assert low.info["cutout_notes"]
    high = cutout(Image.fromarray(plain))
    assert high.info[CONFIDENCE_INFO] >= 0.9, high.info


def test_auto_uses_an_installed_model_and_falls_back_to_classical(tmp_path):
    from swiftshot.ops.cutout import AutoSegmenter

    photo = make_photo("box_gradient", (320, 320)).image
    # No folder, or an empty one: the classical segmenter, said in the name and the notes.
    for folder in (None, tmp_path):
        auto = create_segmenter("auto", folder)
        assert isinstance(auto, AutoSegmenter) and auto.name == "auto:classical"
        out = cutout(photo, auto)
        assert iou(np.asarray(out)[..., 3] / 255.0, make_photo("box_gradient", (320, 320)).coverage) > 0.97
        assert "no model installed" in out.info["cutout_notes"][0]
    # A model file in the folder: used (its name says which), its mask returned.
    _tiny_onnx(tmp_path / "u2net.onnx")
    auto = create_segmenter("auto", tmp_path)
    assert auto.name == "auto:onnx:u2net"
    img = Image.new("RGB", (200, 120), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 100, 120))
    out = cutout(img, auto)
    a = np.asarray(out)[..., 3]
    assert a[60, 20] > 150 and a[60, 180] < 100
    assert out.info["cutout_notes"] == ("model onnx:u2net",)
    # isnet is preferred over u2net when both are there.
    _tiny_onnx(tmp_path / "isnet-general-use.onnx")
    assert create_segmenter("auto", tmp_path).name == "auto:onnx:isnet-general-use"


def test_auto_falls_back_when_the_model_sees_nothing(tmp_path):
    # A model whose output is the same everywhere (min-max gives all 0): no product found
    # by it; the classical cutout is used and the answer says so.
    _tiny_onnx(tmp_path / "u2net.onnx", mean_weight=0.0)
    auto = create_segmenter("auto", tmp_path)
    photo = make_photo("box_gradient", (320, 320))
    out = cutout(photo.image, auto)
    assert iou(np.asarray(out)[..., 3] / 255.0, photo.coverage) > 0.97
    assert "found no product" in out.info["cutout_notes"][0]
    assert out.info["cutout_confidence"] >= 0.8


def test_white_on_white_keeps_its_shaded_and_lit_faces():
    # A white carton's shaded side (a shadow's colour) and its lit top (a few levels over the
    # sweep) were given back as backdrop (IoU 0.62); the closure of its outline keeps them.
    from swiftshot.testing.products import TUNING_SEEDS, eval_cases

    box = next(c for c in eval_cases(TUNING_SEEDS) if c.product == "white_box")
    photo = make_photo(box, SIZE)
    alpha = ClassicalSegmenter().mask(photo.image)
    assert iou(alpha, photo.coverage) >= 0.92
    # The cast shadow beside it stays backdrop.
    shadow_side = (photo.coverage < 0.01) & (cv2.dilate(
        (photo.coverage > 0.5).astype(np.uint8), np.ones((41, 41), np.uint8)) > 0)
    assert (alpha[shadow_side] >= 0.5).mean() < 0.05


def test_a_cropped_box_on_a_dark_table():
    # Extra tuning seed 22: a green box cropped at the frame's left side, standing on a dark
    # table in front of a wall. The box covered nearly half of the table's border, the
    # robust fit started half on it, and the table was "product" (IoU 0.64).
    from swiftshot.testing.products import eval_cases

    case = eval_cases((22,), ("framing",))[0]
    photo = make_photo(case, SIZE)
    assert iou(ClassicalSegmenter().mask(photo.image), photo.coverage) >= 0.97


def test_an_outline_through_the_backdrop_lowers_the_confidence():
    # A piece of a wood table kept with a handbag (tuning seed 4) and a box with a strip of
    # table (seed 1) were cut out at confidence 1.00; the outline there has the table's
    # colour on both sides. Those two are cut out cleanly since the per-plane backdrop
    # (OPS_VERSION 9); a sneaker on wood (seed 22) and on a wood table under a wall (seed 20)
    # still keep a piece of wood at 640² (IoU 0.93), and say so. A clean cutout on a
    # textured backdrop stays high. Since the calibration the outline term lowers seed 20
    # from the ceiling (0.99) to 0.93 only (still `high`: the fitted weight; a gap in
    # docs/OPS.md), seed 22 to `low`.
    from swiftshot.ops.cutout import CONFIDENCE_INFO, confidence_label
    from swiftshot.testing.products import eval_cases

    cases = {c.seed: c for c in eval_cases((0, 20, 22), ("textured",))}
    for seed in (20, 22):
        out = cutout(make_photo(cases[seed], SIZE).image)
        assert out.info[CONFIDENCE_INFO] < 0.95, seed
        assert any("outline" in n for n in out.info["cutout_notes"]), seed
        if seed == 22:
            assert confidence_label(out.info[CONFIDENCE_INFO]) == "low"
    clean = cutout(make_photo(cases[0], SIZE).image)
    assert clean.info[CONFIDENCE_INFO] >= 0.8


def test_unsupported_outline_measures_a_kept_piece_of_backdrop():
    from swiftshot.ops.cutout import _outline_contrast

    def _unsupported_outline(img, hard, sigma):  # the ``unsup`` signal of the confidence
        diff, thr = _outline_contrast(img, hard, sigma)
        return 0.0 if diff is None else float((diff < thr).mean())

    img = np.full((120, 120, 3), 200.0, np.float32)
    img[30:90, 30:90] = (40, 60, 160)
    right = np.zeros((120, 120), np.uint8)
    right[30:90, 30:90] = 1
    assert _unsupported_outline(img, right, 1.0) < 0.05
    wrong = right.copy()
    wrong[30:90, 90:110] = 1  # a strip of backdrop kept on the right
    assert _unsupported_outline(img, wrong, 1.0) > 0.2
