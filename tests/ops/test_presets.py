"""Presets make images their marketplace accepts, and check() catches the ones it would not."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from swiftshot.config import PresetRule, Settings
from swiftshot.delivery.codecs import encode
from swiftshot.ops.cutout import cutout
from swiftshot.ops.presets import BUILTIN_PRESETS, UnknownPreset, apply_preset, check, get_preset
from swiftshot.testing.products import make_photo


@pytest.fixture(scope="module")
def bottle_cutout() -> Image.Image:
    return cutout(make_photo("bottle_white_sweep", (800, 800)).image)


def reopen(image: Image.Image, fmt: str = "jpeg", source_type: str | None = None) -> Image.Image:
    return Image.open(io.BytesIO(encode(image, fmt, 92, source_type=source_type)))


def failed(results) -> set[str]:
    return {r.rule for r in results if not r.passed}


def test_amazon_output_passes_amazon_check(bottle_cutout):
    out = apply_preset(bottle_cutout, BUILTIN_PRESETS["amazon"])
    assert out.size == (2000, 2000) and out.mode == "RGB"
    results = check(reopen(out), BUILTIN_PRESETS["amazon"])
    assert failed(results) == set(), results
    assert {r.rule for r in results} >= {"background", "product_fill", "longest_side", "format"}


def test_amazon_check_catches_each_violation(bottle_cutout):
    rule = BUILTIN_PRESETS["amazon"]
    # A photo on its grey sweep, small, as PNG: background, fill, size and format all fail.
    photo = make_photo("bottle_grey_noisy_jpeg", (800, 800)).image
    small = photo.resize((600, 600))
    assert failed(check(reopen(small, "png"), rule)) == {"background", "product_fill",
                                                         "longest_side", "format"}
    # Off-white (254) is not pure white.
    out = np.asarray(apply_preset(bottle_cutout, rule)).copy()
    out[out == 255] = 254
    assert "background" in failed(check(Image.fromarray(out), rule))


def test_fill_is_measured_without_the_shadow(bottle_cutout):
    rule = BUILTIN_PRESETS["amazon"]
    out = apply_preset(bottle_cutout, rule)
    fill = next(r for r in check(out, rule) if r.rule == "product_fill")
    value = float(fill.measured.split("%")[0]) / 100
    assert value == pytest.approx(rule.fill, abs=0.02)


def test_google_merchant_needs_source_type(bottle_cutout):
    rule = BUILTIN_PRESETS["google-merchant"]
    out = apply_preset(bottle_cutout, rule)
    assert "iptc_digital_source_type" in failed(check(reopen(out), rule))
    assert failed(check(reopen(out, source_type="compositeSynthetic"), rule)) == set()


def test_shopify_and_etsy_sizes(bottle_cutout):
    assert apply_preset(bottle_cutout, BUILTIN_PRESETS["shopify"]).size == (2048, 2048)
    etsy = apply_preset(bottle_cutout, BUILTIN_PRESETS["etsy"])
    assert etsy.size == (3000, 2250)
    assert failed(check(reopen(etsy), BUILTIN_PRESETS["etsy"])) == set()


def test_rgb_image_is_fitted_and_padded():
    rgb = Image.new("RGB", (400, 200), (10, 120, 200))
    out = apply_preset(rgb, BUILTIN_PRESETS["shopify"])
    assert out.size == (2048, 2048)
    assert out.getpixel((1024, 1024)) == (10, 120, 200)
    assert out.getpixel((5, 5)) == (10, 120, 200)  # padded with the image's own edge colour


def test_user_preset_from_config(tmp_path, bottle_cutout):
    cfg = tmp_path / "s.toml"
    cfg.write_text('[ops.presets.mystore]\nwidth = 1200\nheight = 900\nbackground = [240, 240, 240]\n'
                   'fill = 0.7\nmin_fill = 0.6\nexact_background = true\nexact_size = true\n')
    from swiftshot.config import load_settings

    settings = load_settings(cfg)
    rule = get_preset("mystore", settings.ops.presets)
    out = apply_preset(bottle_cutout, rule)
    assert out.size == (1200, 900) and out.getpixel((3, 3)) == (240, 240, 240)
    assert failed(check(out, rule)) == set()
    with pytest.raises(UnknownPreset, match="known presets: amazon"):
        get_preset("nope", Settings().ops.presets)
    with pytest.raises(ValueError):
        PresetRule(fill=1.5)


def test_remembered_quality_reads_a_cached_raw_master():
    """A cache hit whose render was made by a caller that never heard the answer (it gave up
    at its deadline) has no remembered verdict: the preset's check runs on the cached master,
    which is in the raw lossless format (PIL cannot open it; this was a 500)."""
    from PIL import Image

    from swiftshot.config import OpsSettings
    from swiftshot.delivery.codecs import encode_master
    from swiftshot.ops.presets import get_preset, remembered_quality

    img = Image.new("RGB", (2000, 2000), (255, 255, 255))
    img.paste((180, 30, 40), (300, 150, 1700, 1850))
    rule = get_preset("amazon", OpsSettings().presets)
    q = remembered_quality("never-seen-key-raw-master", None, encode_master(img), rule, "amazon")
    assert q["compliance"]["preset"] == "amazon" and q["compliance"]["rules"]


# -- the preset's check reads the fill from where compose placed the product -----------------

def _fill_of(results) -> float:
    rule = next(r for r in results if r.rule == "product_fill")
    return float(rule.measured.split("%")[0]) / 100


def test_compose_says_where_it_placed_the_product():
    from swiftshot.ops.compose import ComposeParams, Placement, compose, placed_box

    rgba = np.zeros((400, 300, 4), np.uint8)
    rgba[100:300, 120:180] = (200, 30, 30, 255)
    rgba[5:9, 5:9] = (90, 90, 90, 255)  # a leftover speck: not the product, not placed
    out = compose(Image.fromarray(rgba, "RGBA"), (255, 255, 255), (1000, 800),
                  ComposeParams(placement=Placement(0.5), shadow=None, colour_match=0.0))
    red = (np.asarray(out)[..., 0] > 150) & (np.asarray(out)[..., 1] < 100)
    ys, xs = np.nonzero(red)
    box = placed_box(out)
    assert box, box
    assert abs(box[0] - xs.min()) <= 1 and abs(box[2] - (xs.max() + 1)) <= 1
    assert abs(box[1] - ys.min()) <= 1 and abs(box[3] - (ys.max() + 1)) <= 1
    assert (box[3] - box[1]) / 800 == pytest.approx(0.5, abs=0.01)
    # a box is only trusted on the image it was made for
    assert placed_box(out.resize((500, 400))) is False
    assert placed_box(Image.new("RGB", (1000, 800))) is False


def test_preset_verification_does_not_segment_its_own_result(bottle_cutout, monkeypatch):
    """The render's verdict measures the fill on the placed alpha (no second segmentation of
    the 2000² result), and agrees with check() of the delivered file, which segments it."""
    from swiftshot.ops.cutout import ClassicalSegmenter

    rule = BUILTIN_PRESETS["google-merchant"]  # a fill window on both sides: 75-90 %

    def no_segmenting(*a, **k):
        raise AssertionError("the preset's verification segmented the composed result")

    with monkeypatch.context() as m:
        m.setattr(ClassicalSegmenter, "regions", no_segmenting)
        m.setattr(ClassicalSegmenter, "mask", no_segmenting)
        out = apply_preset(bottle_cutout, rule, "google-merchant")
    comp = out.info["compliance"]
    assert comp.passed and comp.attempts == 1, comp.as_dict()
    verdict = _fill_of(comp.results)
    delivered = _fill_of(check(reopen(out, source_type="compositeSynthetic"), rule))
    assert verdict == pytest.approx(delivered, abs=0.01)


def test_a_composed_image_scaled_by_the_preset_keeps_its_box():
    """An RGB composite at another size is scaled and padded by the preset; the box moves
    with it, and the fill measured from it matches check() of the file."""
    from swiftshot.ops.compose import ComposeParams, Placement, compose, placed_box

    rgba = np.zeros((300, 300, 4), np.uint8)
    rgba[50:250, 100:200] = (30, 60, 200, 255)
    comp = compose(Image.fromarray(rgba, "RGBA"), (255, 255, 255), (900, 600),
                   ComposeParams(placement=Placement(0.8), shadow=None, colour_match=0.0))
    rule = BUILTIN_PRESETS["google-merchant"]
    out = apply_preset(comp, rule, "google-merchant")
    assert out.size == (2000, 2000)
    box = placed_box(out)
    assert box and (box[3] - box[1]) / 2000 == pytest.approx(0.8 * 600 / 900, abs=0.01)
    verdict = _fill_of(out.info["compliance"].results)
    assert verdict == pytest.approx(_fill_of(check(reopen(out), rule)), abs=0.01)


def test_a_faint_rim_is_measured_as_check_measures_it(monkeypatch):
    """A white product on a white preset: its rim is a few levels off the white, where the box
    of the placed alpha and a segmentation of the file part (held-out white box 1003 at
    640² with thin white wisps: 86.8 % by the box, 83.8 % by check() of the JPEG). compose
    says so (PlacedProduct.faint), and the preset's verdict segments the result as check()
    does, agreeing with it; a coloured product is not segmented (the test above)."""
    from swiftshot.ops.compose import PLACED_INFO
    from swiftshot.ops.cutout import ClassicalSegmenter
    from swiftshot.testing.products import eval_cases

    case = eval_cases(range(1), ("white_on_white",))[0]
    assert "white_box" in case.name
    white = cutout(make_photo(case, (640, 640)).image)
    rule = BUILTIN_PRESETS["amazon"]
    calls = []
    regions = ClassicalSegmenter.regions

    def counted(self, rgb):
        calls.append(rgb.shape)
        return regions(self, rgb)

    with monkeypatch.context() as m:
        m.setattr(ClassicalSegmenter, "regions", counted)
        out = apply_preset(white, rule, "amazon")
    assert out.info[PLACED_INFO].faint and calls
    comp = out.info["compliance"]
    assert comp.passed, comp.as_dict()
    delivered = check(reopen(out, source_type="compositeSynthetic"), rule)
    assert not failed(delivered)
    assert _fill_of(comp.results) == pytest.approx(_fill_of(delivered), abs=0.005)

