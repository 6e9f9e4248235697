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
