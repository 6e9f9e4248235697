"""``swiftshot.ops.pixels``: Pillow's memory as numpy without ``tobytes`` (the cutout's 2000² RGB
array 5.5 -> 1.1 ms CPU, the compositor's crops without a copy), the same bytes as
``np.asarray``, and a view that keeps the memory alive after the image is gone."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from PIL import Image

from swiftshot.ops import pixels
from swiftshot.ops.compose import ComposeParams, Placement, compose
from swiftshot.ops.cutout import cutout
from swiftshot.testing.products import make_photo


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(3)
    rgb = Image.fromarray(rng.integers(0, 256, (37, 53, 3), np.uint8), "RGB")
    rgba = Image.fromarray(rng.integers(0, 256, (41, 29, 4), np.uint8), "RGBA")
    return [rgb, rgb.copy(), rgba, rgba.copy(), rgb.convert("L"), rgb.convert("RGBA"),
            Image.new("RGB", (1, 1), (9, 8, 7)),
            Image.new("RGB", (2100, 2100), (1, 2, 3))]  # several blocks: the fallback


@pytest.mark.parametrize("i", range(8))
def test_same_bytes_as_asarray(i: int) -> None:
    im = _images()[i]
    want = np.asarray(im)
    got = pixels.array(im)
    assert got.dtype == np.uint8 and got.shape == want.shape
    assert np.array_equal(got, want)
    box = (0, 0, 1, 1) if im.width < 3 else (1, 2, im.width - 1, im.height - 3)
    assert np.array_equal(pixels.array(im, box), np.asarray(im.crop(box)))
    if im.mode == "RGB":
        assert np.array_equal(pixels.rgb_array(im, box), np.asarray(im.crop(box)))
        assert pixels.rgb_array(im).flags.c_contiguous


def test_view_is_read_only_and_outlives_the_image() -> None:
    im = Image.fromarray(np.random.default_rng(1).integers(0, 256, (300, 200, 4), np.uint8),
                         "RGBA").copy()
    v = pixels.view(im)
    assert v is not None and v.shape == (300, 200, 4) and not v.flags.writeable
    want = np.asarray(im).copy()
    del im
    gc.collect()
    junk = [np.full((300, 200, 4), 77, np.uint8) for _ in range(20)]  # reuse freed memory
    assert np.array_equal(v, want)
    del junk


def test_rgb_view_has_four_bytes_a_pixel() -> None:
    im = Image.new("RGB", (5, 4), (10, 20, 30))
    v = pixels.view(im)
    assert v is not None and v.shape == (4, 5, 4)
    assert (v[..., :3] == (10, 20, 30)).all()
    assert pixels.view(Image.new("I;16", (4, 4))) is None  # no 1- or 4-byte layout


def test_cutout_and_compose_never_call_tobytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The studio path's two big copies out of Pillow (the cutout's RGB array, the
    compositor's crop of the cutout and of the shadow's box) go through the view."""
    photo = make_photo("bottle_white_sweep", (400, 400)).image
    cut_before = cutout(photo.copy())
    comp_before = compose(cut_before, Image.new("RGB", (400, 400), (240, 240, 240)), (400, 400),
                          ComposeParams(placement=Placement(0.88)))

    tobytes = Image.Image.tobytes

    def refuse(self, *a, **k):  # np.asarray(image) goes through Image.tobytes
        if self.width * self.height > 10_000:  # a 16² thumbnail of the backdrop is fine
            raise AssertionError(f"Image.tobytes of a {self.size} image on the studio path")
        return tobytes(self, *a, **k)

    monkeypatch.setattr(Image.Image, "tobytes", refuse)
    cut = cutout(photo.copy())
    comp = compose(cut, Image.new("RGB", (400, 400), (240, 240, 240)), (400, 400),
                   ComposeParams(placement=Placement(0.88)))
    monkeypatch.undo()
    assert cut.tobytes() == cut_before.tobytes()
    assert comp.tobytes() == comp_before.tobytes()
