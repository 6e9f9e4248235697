"""Enhance corrects what it should and leaves good photos alone; ghost mannequin."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from swiftshot.ops.enhance import EnhanceParams, auto_levels, enhance, unsharp, white_balance
from swiftshot.ops.mannequin import ghost_mannequin, key_mask
from swiftshot.testing.products import make_mannequin_photo, make_photo


def test_white_balance_removes_a_colour_cast():
    photo = np.asarray(make_photo("box_gradient", (256, 256)).image).astype(np.float32)
    cast = np.clip(photo * np.array([1.15, 1.0, 0.85]), 0, 255).astype(np.uint8)
    fixed = white_balance(cast).astype(np.float32)
    before = cast.reshape(-1, 3).mean(0)
    after = fixed.reshape(-1, 3).mean(0)
    assert np.ptp(after) < 0.5 * np.ptp(before)


def test_levels_stretch_a_flat_dark_photo():
    arr = (np.asarray(make_photo("bottle_white_sweep", (256, 256)).image) * 0.5 + 20).astype(np.uint8)
    out = auto_levels(arr)
    assert out.max() >= 250 and out.min() <= arr.min()
    assert np.median(out) > np.median(arr) + 30
    flat = np.full((32, 32, 3), 128, np.uint8)
    assert (auto_levels(flat) == flat).all()  # nothing to stretch: untouched


def test_unsharp_raises_edge_contrast_only():
    arr = np.zeros((40, 40, 3), np.uint8)
    arr[:, 20:] = 200
    import cv2

    arr = cv2.GaussianBlur(arr, (0, 0), 2.0)
    out = unsharp(arr, 1.0).astype(int)
    a = arr.astype(int)
    assert np.diff(out[20, :, 0]).max() > np.diff(a[20, :, 0]).max() + 2  # steeper edge
    assert (out[20, 23, 0] - out[20, 16, 0]) > (a[20, 23, 0] - a[20, 16, 0]) + 5
    assert (out[:, :8] == a[:, :8]).all() and (out[:, -8:] == a[:, -8:]).all()  # flat: unchanged


def test_enhance_keeps_alpha_and_upscales():
    rgba = Image.new("RGBA", (50, 40), (100, 100, 100, 0))
    rgba.paste((200, 50, 50, 255), (10, 10, 40, 30))
    out = enhance(rgba, EnhanceParams(upscale=2.0))
    assert out.mode == "RGBA" and out.size == (100, 80)
    assert out.getpixel((2, 2))[3] == 0 and out.getpixel((50, 40))[3] == 255


def test_key_mask_finds_the_mannequin():
    m = make_mannequin_photo()
    found = key_mask(np.asarray(m.image), m.key_color)
    inter = (found & m.mannequin).sum()
    assert inter / m.mannequin.sum() > 0.9
    assert (found & m.garment).sum() / m.garment.sum() < 0.01


@pytest.mark.parametrize("by", ["key", "mask"])
def test_ghost_mannequin(by):
    m = make_mannequin_photo()
    kw = {"key_color": m.key_color} if by == "key" else {"mannequin_mask": m.mannequin}
    out = ghost_mannequin(m.image, **kw)
    a = np.asarray(out)[..., 3] / 255
    rgb = np.asarray(out)[..., :3].astype(int)
    assert (a[m.garment] > 0.5).mean() > 0.97          # the garment stays
    h = a.shape[0]
    above = m.mannequin & (np.arange(h)[:, None] < int(0.19 * h))
    assert (a[above] < 0.5).mean() > 0.97               # the neck above the collar is gone
    assert (a[m.opening] > 0.5).mean() > 0.9            # the opening shows the inside
    inside = rgb[m.opening & (a > 0.5)]
    garment_mean = rgb[m.garment].mean(0)
    assert (inside.mean(0) < garment_mean).all()         # ... in shade: darker than the outside
    skin = np.abs(inside - np.array(m.key_color)).sum(1) < 60
    assert skin.mean() < 0.01                            # and no mannequin colour left there


def test_ghost_mannequin_with_inside_photo():
    m = make_mannequin_photo()
    inside = Image.new("RGB", (100, 60), (180, 20, 20))  # the inner back: a red label area
    out = np.asarray(ghost_mannequin(m.image, key_color=m.key_color, inside=inside))
    reds = out[m.opening][:, :3].astype(int)
    assert ((reds[:, 0] > 110) & (reds[:, 0] > 3 * reds[:, 1])).mean() > 0.8
    # in the inside's shade: the deeper rows darker than the collar's
    ys = np.nonzero(m.opening)[0]
    upper = m.opening & (np.arange(out.shape[0])[:, None] < ys.min() + 3)
    lower = m.opening & (np.arange(out.shape[0])[:, None] > ys.max() - 3)
    assert out[upper][:, 0].mean() > out[lower][:, 0].mean() + 10


def test_ghost_mannequin_inside_photo_keeps_its_proportions_and_label_on_top():
    """The inside photo (a wide strip with a square white label at its top centre) is scaled
    with its proportions kept and its top on the opening's top edge: the label shows as a
    square near the top of the opening, not stretched to the opening's box."""
    m = make_mannequin_photo()
    inside = np.full((60, 120, 3), (40, 90, 40), np.uint8)
    inside[4:24, 50:70] = 250                           # 20×20 label, top centre
    out = np.asarray(ghost_mannequin(m.image, key_color=m.key_color,
                                     inside=Image.fromarray(inside)))
    hole = m.opening
    ys, xs = np.nonzero(hole)
    label = hole & (out[..., 3] > 127) & (out[..., :3].astype(int).min(2) > 170)
    ly, lx = np.nonzero(label)
    assert len(ly) > 20
    assert ly.min() - ys.min() < 0.3 * (ys.max() - ys.min())   # near the opening's top
    assert abs(lx.mean() - xs.mean()) < 0.1 * (xs.max() - xs.min())  # centred
    aspect = (lx.max() - lx.min() + 1) / (ly.max() - ly.min() + 1)
    assert 0.75 < aspect < 1.33                                # square stays square


def test_ghost_mannequin_needs_the_mannequin():
    with pytest.raises(ValueError, match="mannequin_mask or key_color"):
        ghost_mannequin(Image.new("RGB", (10, 10)))


@pytest.mark.parametrize("with_inside", [False, True])
def test_ghost_mannequin_neck_has_no_backdrop_notches(with_inside):
    """The corners of the neck opening, where the backdrop shows past the mannequin's neck,
    are filled like the rest of the opening (they were two white notches beside the collar:
    232 backdrop-white pixels between the collar's sides)."""
    m = make_mannequin_photo()
    inside = None
    if with_inside:
        arr = np.full((90, 160, 3), (24, 34, 70), np.uint8)
        arr[6:34, 66:94] = (235, 232, 225)
        inside = Image.fromarray(arr)
    out = ghost_mannequin(m.image, key_color=m.key_color, inside=inside)
    flat = Image.new("RGB", out.size, "white")
    flat.paste(out, (0, 0), out)
    rgb = np.asarray(flat).astype(int)
    # the opening as a seller sees it: between the garment's sides in the opening's rows
    # (the drawn mask holds only the mannequin there, not the backdrop in its corners)
    rows = np.nonzero(m.opening.any(1))[0]
    opening = np.zeros_like(m.opening)
    for y in range(rows[0] + 2, rows[-1] + 1):    # the opening's top edge row is the collar's
        xs = np.nonzero(m.garment[y])[0]
        opening[y, xs.min():xs.max() + 1] = ~m.garment[y, xs.min():xs.max() + 1]
    label = np.zeros_like(opening)
    if with_inside:                               # the inside's label is white by design
        ys, xs = np.nonzero(opening)
        cx = int(xs.mean())
        label[:, cx - 25:cx + 25] = True
    white = (rgb.min(-1) > 200) & opening & ~label
    assert white.sum() <= 25, white.sum()          # before: 232; a 1-px fringe is left (9-17)
