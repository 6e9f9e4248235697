"""Compose and shadows: where the product lands, what the backdrop keeps, how shadows fall."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from swiftshot.ops.compose import ComposeParams, Placement, alpha_bbox, compose, decontaminate
from swiftshot.ops.shadows import ShadowParams, shadow_map


def product(w: int = 300, h: int = 400, colour=(200, 30, 40)) -> Image.Image:
    """A box-shaped RGBA product in a larger transparent frame."""
    im = Image.new("RGBA", (w + 200, h + 100), (0, 0, 0, 0))
    im.paste((*colour, 255), (100, 50, 100 + w, 50 + h))
    return im


def test_fill_and_position():
    out = compose(product(), (255, 255, 255), (1000, 800),
                  ComposeParams(placement=Placement(0.5, (0.5, 0.5)), shadow=None, colour_match=0))
    arr = np.asarray(out).astype(int)
    red = (arr[..., 0] > 150) & (arr[..., 1] < 100)
    ys, xs = np.nonzero(red)
    # Height limits (400/800 vs 300/1000): the box is 0.5 × 800 = 400 px tall, centred.
    assert ys.max() - ys.min() + 1 == pytest.approx(400, abs=2)
    assert (ys.min() + ys.max()) / 2 == pytest.approx(400, abs=2)
    assert (xs.min() + xs.max()) / 2 == pytest.approx(500, abs=2)


def test_white_stays_exactly_white_away_from_product_and_shadow():
    out = np.asarray(compose(product(), (255, 255, 255), (800, 800)))
    # The default light sends the cast shadow to the left; the other sides stay untouched.
    border = np.concatenate([out[:20].reshape(-1, 3), out[-5:].reshape(-1, 3),
                             out[:, -20:].reshape(-1, 3)])
    assert (border == 255).all()
    assert (out[:, :20] < 255).any()
    bare = np.asarray(compose(product(), (255, 255, 255), (800, 800), ComposeParams(shadow=None)))
    assert (bare[:, :100] == 255).all() and (bare[:, -100:] == 255).all()


def test_shadow_darkens_under_the_product_with_backdrop_chroma():
    bg = (230, 220, 200)
    params = ComposeParams(placement=Placement(0.6), colour_match=0)
    out = np.asarray(compose(product(), bg, (800, 800), params)).astype(int)
    plain = np.asarray(compose(product(), bg, (800, 800),
                               ComposeParams(placement=Placement(0.6), shadow=None,
                                             colour_match=0))).astype(int)
    bottom = 400 + 240  # the box is 480 tall, centred: its base is at y = 640
    below = out[bottom + 2:bottom + 6, 300:500]
    assert (below.mean((0, 1)) < plain[bottom + 2:bottom + 6, 300:500].mean((0, 1)) - 15).all()
    ratio = below.mean((0, 1)) / np.array(bg)
    assert ratio.max() - ratio.min() < 0.05  # darker, same colour: a shadow, not a stain


def test_cast_shadow_goes_where_the_light_sends_it():
    alpha = np.zeros((400, 400), np.float32)
    alpha[100:300, 170:230] = 1
    left = shadow_map(alpha, ShadowParams(contact=0, direction=-45))
    right = shadow_map(alpha, ShadowParams(contact=0, direction=45))
    assert left[:, :170].sum() > 3 * left[:, 230:].sum()
    assert right[:, 230:].sum() > 3 * right[:, :170].sum()
    assert shadow_map(alpha, ShadowParams(contact=0, cast=0)).max() == 0


def test_reflection_appears_below_base():
    params = ComposeParams(placement=Placement(0.5), shadow=None, reflection=0.35, colour_match=0)
    out = np.asarray(compose(product(), (255, 255, 255), (800, 800), params)).astype(int)
    base = 400 + 200
    assert out[base + 5:base + 30, 380:420, 1].mean() < 240  # tinted by the mirrored product
    assert (out[base + 300:, :, :] == 255).all() if base + 300 < 800 else True


def test_decontaminate_replaces_old_backdrop_colour_on_edges():
    rgb = np.zeros((60, 60, 3), np.uint8)
    rgb[:] = (0, 0, 255)          # the old blue backdrop bleeds into the edge pixels
    rgb[10:50, 10:50] = (250, 0, 0)
    alpha = np.zeros((60, 60), np.float32)
    alpha[10:50, 10:50] = 1
    alpha[10:50, 9] = 0.5
    out = decontaminate(rgb, alpha)
    assert out[30, 9, 2] < 60 and out[30, 9, 0] > 180   # red now, not blue
    assert (out[20:40, 20:40] == rgb[20:40, 20:40]).all()  # solid product untouched


def test_uploaded_backdrop_is_covered_not_stretched():
    bd = Image.new("RGB", (400, 100), (10, 200, 10))
    out = compose(product(), bd, (300, 300), ComposeParams(shadow=None))
    assert out.size == (300, 300) and out.getpixel((2, 2)) == (10, 200, 10)


def test_empty_cutout_is_a_clear_error():
    with pytest.raises(ValueError, match="no product"):
        compose(Image.new("RGBA", (50, 50)), (255, 255, 255), (100, 100))


def test_alpha_bbox():
    a = np.zeros((10, 10), np.float32)
    a[2:5, 3:8] = 1
    assert alpha_bbox(a) == (3, 2, 8, 5)
    assert alpha_bbox(np.zeros((4, 4), np.float32)) is None
